"""app.logs' JSON lines: one line each, whatever the values, as structlog's renderer
wrote them (its JSONRenderer made an encoder per line; ours is made once)."""

from __future__ import annotations

import json
from pathlib import Path

import structlog

from shoal.app import logs


def test_a_json_line_is_structlog_s_and_takes_any_value() -> None:
    event = {"event": "request", "key": "a\nb é \u2028", "status": 200, "ms": 0.17, "none": None}
    line = logs.renderer(True)(None, "info", dict(event))
    assert line == structlog.processors.JSONRenderer()(None, "info", dict(event))
    assert "\n" not in line and line.isascii()
    assert json.loads(line) == event


def test_a_value_json_has_no_form_for_is_its_repr() -> None:
    line = logs.render_json(None, "info", {"event": "moved", "path": Path("/d/k")})
    assert json.loads(line) == {"event": "moved", "path": repr(Path("/d/k"))}

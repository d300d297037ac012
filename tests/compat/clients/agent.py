"""Runs one client adapter in another interpreter (a venv with an older or conflicting
client): `python agent.py MODULE CLASS TARGET_JSON [KWARGS_JSON]`, then one JSON request
per stdin line, {"method": name, "args": [...]}, answered by one JSON line on stdout:
{"result": value} ({"bytes": base64} for bytes) or {"error": text}."""

from __future__ import annotations

import base64
import importlib
import json
import sys
import traceback
from pathlib import Path


def main() -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    module, cls, target = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    kwargs = json.loads(sys.argv[4]) if len(sys.argv) > 4 else {}
    client = getattr(importlib.import_module(module), cls)(target, **kwargs)
    print(json.dumps({"result": sorted(client.unsupported)}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        try:
            result = getattr(client, request["method"])(*request["args"])
            answer = (
                {"bytes": base64.b64encode(result).decode()}
                if isinstance(result, bytes)
                else {"result": result}
            )
        except Exception as exc:
            answer = {"error": f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"}
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()

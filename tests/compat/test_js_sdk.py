"""AWS SDK for JavaScript v3 (@aws-sdk/client-s3, @aws-sdk/lib-storage from npm, run
with the machine's Node.js) at its defaults: CRC32 checksums as aws-chunked trailers and
virtual-hosted-style addressing (`bucket.s3.localhost`, the server's base domain); and
path style against 127.0.0.1."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.compat.agents import CLIENTS, AgentClient, node_env
from tests.compat.conftest import BASE_DOMAIN
from tests.compat.scenario import STEPS, Files, Target, new_bucket_name, run_scenario

#: What the test installs, and the README's "Works with" table names.
PACKAGES = ["@aws-sdk/client-s3@3.1175.0", "@aws-sdk/lib-storage@3.1175.0"]


@pytest.mark.parametrize("style", ["virtual", "path"])
def test_scenario(
    style: str, target: Target, verifier: Any, tmp_path: Path, cleanup_buckets: list[str]
) -> None:
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("Node.js is not installed: apt-get install nodejs npm")
    modules = node_env("node-aws-sdk", PACKAGES) / "node_modules"
    if style == "virtual":
        port = target.endpoint.rsplit(":", 1)[1]
        scheme = target.endpoint.split(":", 1)[0]
        target = dataclasses.replace(target, endpoint=f"{scheme}://{BASE_DOMAIN}:{port}")
    argv = ["node", str(CLIENTS / "agent.mjs"), json.dumps(target.as_dict()), style]
    client = AgentClient(argv, env={"SHOAL_NODE_MODULES": str(modules)})
    bucket = new_bucket_name(f"js-{style}")
    cleanup_buckets.append(bucket)
    try:
        assert client.version() == PACKAGES[0].rsplit("@", 1)[1]
        report = run_scenario(client, verifier, bucket, Files.make(tmp_path))
    finally:
        client.close()
    assert report.ran == list(STEPS)

"""schemathesis against the OpenAPI document of a real `jobforge serve`: no request it makes
(valid or not) may get a 5xx, or a status, content type or body the document does not list.

The run is seeded and bounded (a few examples per operation) so that it takes seconds and
fails the same way each time; GET /events is left out, since its stream never ends."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import httpx

from tests.e2e.serving import SERVE_APP, Servers, create_key

SCHEMATHESIS = str(Path(sys.executable).parent / "schemathesis")
CHECKS = (
    "not_a_server_error,status_code_conformance,content_type_conformance,"
    "response_schema_conformance"
)
METHODS = {"get", "post", "put", "patch", "delete"}


def test_every_response_matches_the_openapi_document(
    sqlite_url: str, tmp_path: Path, servers: Servers
) -> None:
    _, token = create_key(sqlite_url, "acme", "admin")
    server = servers.start(sqlite_url, "--app", SERVE_APP)
    document = httpx.get(server.url + "/openapi.json", timeout=10).json()
    operations = sum(len(set(ops) & METHODS) for ops in document["paths"].values())
    assert {"/jobs", "/workflows", "/runs/{run_id}", "/events", "/metrics"} <= set(
        document["paths"]
    )

    result = subprocess.run(
        [
            SCHEMATHESIS, "run", server.url + "/openapi.json",
            "--header", f"Authorization: Bearer {token}",
            "--checks", CHECKS,
            "--exclude-path", "/events",
            "--max-examples", "15",
            "--seed", "20261122",
            "--request-timeout", "10",
            "--generation-database", "none",
            "--no-color",
        ],
        cwd=tmp_path, capture_output=True, text=True, timeout=150, check=False,
    )  # fmt: skip
    report = result.stdout
    failures = report[report.find("= FAILURES =") :] if "= FAILURES =" in report else report
    assert result.returncode == 0, f"schemathesis found problems:\n{failures[-12000:]}"
    tested = re.search(r"Tested: (\d+)", report)
    assert tested and int(tested.group(1)) == operations - 1, report[-3000:]  # all but /events
    assert "Traceback" not in server.log, server.log[-5000:]

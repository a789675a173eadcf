"""The README's examples run as written."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


def _run_block(index: int, tmp_path: Path) -> list[str]:
    """Run the README's `index`th python block as a script; its output lines."""
    blocks = _python_blocks()
    assert len(blocks) > index, "README lacks that python example"
    script = tmp_path / f"readme_{index}.py"
    script.write_text(blocks[index])
    proc = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().splitlines()


def test_readme_python_quickstart_runs(tmp_path: Path) -> None:
    lines = _run_block(0, tmp_path)
    statuses = {line.split()[1]: line.split()[2] for line in lines}
    assert statuses == {
        "extract": "succeeded",
        "notify": "partial_success",
        "wait_for_stock": "succeeded",
    }


def test_readme_dependencies_example_runs(tmp_path: Path) -> None:
    lines = _run_block(1, tmp_path)
    assert lines[0].startswith("failed {'total': 6,")
    assert "'succeeded': 4, 'failed': 1, 'skipped': 1" in lines[0]
    assert "(summary): skipped — parent step_2 ended failed" in lines[1]
    assert lines[-1] == "skipped succeeded"


def test_readme_groups_example_runs(tmp_path: Path) -> None:
    lines = _run_block(2, tmp_path)
    assert lines[0] == (
        "[('match-scores', 'dependency of feed-build'), ('affinity', 'dependency of feed-build'),"
        " ('feed-build', 'member')]"
    )
    assert lines[1] == "succeeded partial_success 1 succeeded"


def test_readme_durable_workflow_example_runs(tmp_path: Path) -> None:
    lines = _run_block(3, tmp_path)
    assert lines == [
        "waiting event:approved",
        "completed {'order': 'o-1', 'charge': 'c-1', 'by': 'ana'}",
        "compensated [('reserve_inventory', 'compensated'), ('charge_card', 'failed')]",
        "['charge', 'release r-1', 'reserve', 'reserve']",
    ]


def test_readme_workflow_files_parse() -> None:
    from jobforge.workflows.files import parse_workflow

    text = (ROOT / "README.md").read_text()
    (yaml_text,) = re.findall(r"```yaml\n(.*?)```", text, re.S)
    (json_text,) = re.findall(r"```json\n(.*?)```", text, re.S)
    a = parse_workflow(yaml_text, "README.yaml", yaml_syntax=True)
    assert [d.parent for d in a.jobs["load"].depends_on] == ["validate"]
    assert a.jobs["load"].depends_on[0].kind == "conditional"
    b = parse_workflow(json_text, "README.json")
    assert [d.parent for d in b.jobs["b"].depends_on] == ["a"]


def test_example_demo_script(tmp_path: Path) -> None:
    """What `scripts/quickstart.sh` runs after installing: the CLI against the example app."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env["JOBFORGE_DEMO_DIR"] = str(tmp_path / "demo")
    env.pop("JOBFORGE_DATABASE_URL", None)
    proc = subprocess.run(
        ["bash", str(ROOT / "examples" / "demo.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "ZeroDivisionError: division by zero" in proc.stdout
    listing = subprocess.run(
        [sys.executable, "-m", "jobforge", "job", "list", "--json"],
        env={**env, "JOBFORGE_DATABASE_URL": f"sqlite:///{tmp_path / 'demo' / 'jobforge.db'}"},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    jobs = json.loads(listing.stdout)
    by_type: dict[str, list[str]] = {}
    for job in jobs:
        by_type.setdefault(job["type"], []).append(job["status"])
    assert {t: sorted(s) for t, s in by_type.items()} == {
        "extract": ["succeeded"] * 4,
        "flaky_load": ["succeeded"] * 3,
        "send_report": ["partial_success", "skipped", "succeeded", "succeeded"],
        "divide": ["failed"],
        "noop": ["succeeded"],
        "match-scores": ["succeeded"],
        "affinity": ["succeeded"],
        "feed-build": ["succeeded"],
        "feed-publish": ["succeeded"],
        "checkout": ["failed", "succeeded"],
    }
    assert "dependency of feed-build" in proc.stdout  # the group enqueue says why
    assert "morning-feed" in proc.stdout  # the schedules, stored by the worker
    assert "checkout v1  completed" in proc.stdout
    assert "checkout v1  compensated" in proc.stdout and "card 0000 declined" in proc.stdout
    assert "nightly_etl" in proc.stdout and "status: succeeded" in proc.stdout
    assert "condition 'rows > 50' on parent extract_crm's result is false" in proc.stdout
    assert proc.stdout.count("flowchart LR") == 1
    flaky = next(j for j in jobs if j["type"] == "flaky_load" and not j["workflow_id"])
    assert flaky["attempts"] == 2 and flaky["errors"][0]["type"] == "ConnectionError"


def _api_block() -> str:
    text = (ROOT / "README.md").read_text()
    m = re.search(r"<!-- api-example:.*?-->\n```bash\n(.*?)```", text, re.S)
    assert m, "README has no api-example block"
    return m.group(1)


def test_readme_api_example_runs_against_a_live_server(tmp_path: Path) -> None:
    """The curl block of "The HTTP API", with a key made by `jobforge apikey create`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBFORGE_")}
    env["JOBFORGE_DATABASE_URL"] = f"sqlite:///{tmp_path / 'api.db'}"
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    jobforge = [sys.executable, "-m", "jobforge"]
    key = subprocess.run(
        [*jobforge, "apikey", "create", "--tenant", "acme",
         "--permissions", "jobs:read,jobs:write"],
        env=env, capture_output=True, text=True, timeout=30, check=True,
    ).stdout.strip()  # fmt: skip
    server = subprocess.Popen(
        [*jobforge, "serve", "--app", "examples.app:app", "--port", "0"],
        env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        first = server.stdout.readline()
        m = re.search(r"http://127\.0\.0\.1:\d+", first)
        assert m, first
        proc = subprocess.run(
            ["bash", "-c", _api_block()],
            env={**env, "JOBFORGE_URL": m.group(0), "KEY": key},
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
    finally:
        server.terminate()
        server.wait(15)
        if server.stdout is not None:
            server.stdout.close()
    assert proc.returncode == 0, proc.stderr
    created = json.loads(proc.stdout.splitlines()[0])
    assert created["status"] == "queued" and created["job_id"].startswith("job_")
    listed = json.loads(proc.stdout.splitlines()[1])
    assert [j["job_id"] for j in listed["jobs"]] == [created["job_id"]]
    assert listed["jobs"][0]["tenant_id"] == "acme"
    assert "retry: 1000" in proc.stdout  # the event stream answered

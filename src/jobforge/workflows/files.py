"""Workflow definitions in JSON or YAML files, in either of two shapes.

(a) jobs carry their parents:   {"name", "jobs": [{"name", "type", "depends_on": [...]}]}
(b) edges listed on their own:  {"name", "jobs": [{"id", "type"}], "dependencies": [{"from", "to"}]}

Every error names the file, the job and the field.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from jobforge.deps import Dependency, normalize_edge
from jobforge.errors import ValidationError
from jobforge.tasks import JobOptions
from jobforge.workflows.dag import Workflow, WorkflowJob


class WorkflowFileError(ValidationError):
    """Invalid workflow definition."""

    code = "bad_workflow_file"


WORKFLOW_FIELDS = {
    "name", "description", "failure_policy", "timeout", "priority", "retries", "trace_id",
    "correlation_id", "tenant_id", "metadata", "jobs", "dependencies",
}  # fmt: skip
JOB_FIELDS = {
    "name", "id", "type", "queue", "payload", "priority", "retries", "timeout", "delay",
    "optional", "depends_on", "dependency_timeout",
}  # fmt: skip
EDGE_FIELDS = {"from", "to", "type", "condition"}


def load_workflow_file(path: str | Path) -> Workflow:
    """Read and check a workflow file (`.json`, `.yaml` or `.yml`)."""
    return workflow_from_dict(read_definition(path), str(path))


def read_definition(path: str | Path) -> Any:
    """A workflow file's parsed content, unchecked (a schedule stores it for every tick)."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise WorkflowFileError(f"{p}: cannot read: {exc.strerror}") from None
    return _load(text, str(p), yaml_syntax=p.suffix.lower() in (".yaml", ".yml"))


def parse_workflow(text: str, source: str = "<workflow>", yaml_syntax: bool = False) -> Workflow:
    data = _load(text, source, yaml_syntax)
    return workflow_from_dict(data, source)


def _load(text: str, source: str, yaml_syntax: bool) -> Any:
    if yaml_syntax:
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise WorkflowFileError(f"{source}: invalid YAML{where}: {problem}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise WorkflowFileError(
            f"{source}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None


def workflow_from_dict(data: Any, source: str = "<workflow>") -> Workflow:
    """Build a Workflow from a parsed definition (shape a or b)."""
    if not isinstance(data, dict):
        raise WorkflowFileError(f"{source}: a workflow must be an object")
    _no_unknown(data, WORKFLOW_FIELDS, f"{source}: workflow")
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise WorkflowFileError(f"{source}: field 'name' is required (a string)")
    jobs = data.get("jobs")
    if not isinstance(jobs, list) or not jobs:
        raise WorkflowFileError(f"{source}: field 'jobs' must be a non-empty list")
    try:
        wf = Workflow(
            name,
            description=_opt(data, "description", str, source),
            failure_policy=_opt(data, "failure_policy", str, source) or "fail_fast",
            timeout=_opt(data, "timeout", (int, float), source),
            priority=_opt(data, "priority", int, source),
            retries=_opt(data, "retries", int, source),
            trace_id=_opt(data, "trace_id", str, source),
            correlation_id=_opt(data, "correlation_id", str, source),
            tenant_id=_opt(data, "tenant_id", str, source),
            metadata=_opt(data, "metadata", dict, source) or {},
        )
    except WorkflowFileError:
        raise
    except ValidationError as exc:
        raise WorkflowFileError(f"{source}: {exc}") from None
    for i, raw in enumerate(jobs):
        _add_job(wf, raw, i, source)
    for i, raw in enumerate(data.get("dependencies") or []):
        _add_edge(wf, raw, i, source)
    try:
        wf.validate()
    except ValidationError as exc:
        raise WorkflowFileError(f"{source}: {exc}") from None
    return wf


def _add_job(wf: Workflow, raw: Any, index: int, source: str) -> None:
    where = f"{source}: jobs[{index}]"
    if not isinstance(raw, dict):
        raise WorkflowFileError(f"{where}: a job must be an object")
    name = raw.get("name", raw.get("id"))
    if not isinstance(name, str) or not name:
        raise WorkflowFileError(f"{where}: field 'name' (or 'id') is required")
    where = f"{source}: job {name!r}"
    _no_unknown(raw, JOB_FIELDS, where)
    if name in wf.jobs:
        raise WorkflowFileError(f"{where}: duplicate job name")
    payload = raw.get("payload", {})
    if not isinstance(payload, dict):
        raise WorkflowFileError(f"{where}: field 'payload' must be an object")
    depends = raw.get("depends_on", [])
    if not isinstance(depends, list):
        raise WorkflowFileError(f"{where}: field 'depends_on' must be a list")
    options = JobOptions(
        queue=_opt(raw, "queue", str, where),
        priority=_opt(raw, "priority", int, where),
        retries=_opt(raw, "retries", int, where),
        timeout=_opt(raw, "timeout", (int, float), where),
        delay=_opt(raw, "delay", (int, float), where),
        dependency_timeout=_opt(raw, "dependency_timeout", (int, float), where),
    )
    job = WorkflowJob(
        name=name,
        type=_opt(raw, "type", str, where) or name,
        payload=payload,
        depends_on=[_dependency(d, f"{where}: depends_on[{i}]") for i, d in enumerate(depends)],
        options=options,
        optional=bool(_opt(raw, "optional", bool, where)),
    )
    wf.jobs[name] = job


def _dependency(raw: Any, where: str) -> Dependency:
    if isinstance(raw, str):
        return Dependency(raw)
    if isinstance(raw, dict):
        _no_unknown(raw, {"job", "type", "condition"}, where)
        parent = raw.get("job")
        if not isinstance(parent, str):
            raise WorkflowFileError(f"{where}: field 'job' is required (the parent's name)")
        return _edge(parent, raw, where)
    raise WorkflowFileError(f"{where}: expected a job name or an object")


def _edge(parent: str, raw: dict[str, Any], where: str) -> Dependency:
    """An edge whose type and condition are checked here, so the error names its place."""
    kind = _opt(raw, "type", str, where) or "sequential"
    condition = _opt(raw, "condition", str, where)
    try:
        normalize_edge(kind, condition)
    except ValidationError as exc:
        raise WorkflowFileError(f"{where}: {exc}") from None
    return Dependency(parent, kind, condition)


def _add_edge(wf: Workflow, raw: Any, index: int, source: str) -> None:
    where = f"{source}: dependencies[{index}]"
    if not isinstance(raw, dict):
        raise WorkflowFileError(f"{where}: a dependency must be an object")
    _no_unknown(raw, EDGE_FIELDS, where)
    parent, child = raw.get("from"), raw.get("to")
    if not isinstance(parent, str) or not isinstance(child, str):
        raise WorkflowFileError(f"{where}: fields 'from' and 'to' are required (job ids)")
    if child not in wf.jobs:
        raise WorkflowFileError(f"{where}: field 'to': no job {child!r} in this workflow")
    wf.jobs[child].depends_on.append(_edge(parent, raw, f"{where} ({parent} -> {child})"))


def _opt(data: dict[str, Any], key: str, kind: Any, where: str) -> Any:
    value = data.get(key)
    if value is None:
        return None
    # JSON true/false are bools, and bool is an int in Python: keep them apart.
    if isinstance(value, bool) != (kind is bool) or not isinstance(value, kind):
        names = {str: "a string", int: "an integer", bool: "true or false", dict: "an object"}
        expected = names.get(kind, "a number") if not isinstance(kind, tuple) else "a number"
        raise WorkflowFileError(f"{where}: field {key!r} must be {expected}")
    return value


def _no_unknown(data: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise WorkflowFileError(f"{where}: unknown field(s) {', '.join(map(repr, unknown))}")

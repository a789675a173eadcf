"""A graph of jobs as DOT, Mermaid, JSON or SVG, with statuses, durations and edge conditions."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from jobforge.errors import ValidationError
from jobforge.jobs import Job, iso, utcnow
from jobforge.workflows.picture import graph_svg
from jobforge.workflows.records import EdgeRecord

FORMATS = ("dot", "mermaid", "json", "svg")
_COLOURS = {
    "succeeded": "palegreen",
    "partial_success": "khaki",
    "failed": "salmon",
    "running": "lightblue",
    "queued": "white",
    "scheduled": "white",
    "waiting": "lightgrey",
    "skipped": "gainsboro",
    "cancelled": "gainsboro",
}


def duration(job: Job) -> float | None:
    if job.started_at is None:
        return None
    end = job.completed_at or utcnow()
    return round((end - job.started_at).total_seconds(), 3)


def graph_json(jobs: Sequence[Job], edges: Sequence[EdgeRecord]) -> dict[str, Any]:
    return {
        "nodes": [
            {
                "id": j.job_id,
                "name": j.name or j.type,
                "type": j.type,
                "status": j.status.value,
                "dependency_status": j.dependency_status,
                "started_at": iso(j.started_at),
                "completed_at": iso(j.completed_at),
                "duration": duration(j),
            }
            for j in jobs
        ],
        "edges": [
            {
                "id": str(e.id),
                "from": "job_" + e.parent_id.hex,
                "to": "job_" + e.child_id.hex,
                "kind": e.kind,
                "condition": e.condition,
                "status": e.status,
            }
            for e in edges
        ],
    }


def _label(j: Job) -> str:
    d = duration(j)
    extra = f" · {d:.2f}s" if d is not None else ""
    return f"{j.name or j.type}\n{j.type} · {j.status.value}{extra}"


def _dot_str(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def graph_dot(jobs: Sequence[Job], edges: Sequence[EdgeRecord], title: str = "jobs") -> str:
    lines = [
        f"digraph {_dot_str(title)} {{",
        "  rankdir=LR;",
        '  node [shape=box, style="rounded,filled"];',
    ]
    for j in jobs:
        colour = _COLOURS.get(j.status.value, "white")
        lines.append(f"  {_dot_str(j.job_id)} [label={_dot_str(_label(j))}, fillcolor={colour}];")
    for e in edges:
        label = e.kind if e.condition is None else f"{e.kind}: {e.condition}"
        style = "dashed" if e.kind == "parallel" else "solid"
        colour = {"resolved": "darkgreen", "failed": "red", "cancelled": "grey"}.get(
            e.status, "black"
        )
        lines.append(
            f"  {_dot_str('job_' + e.parent_id.hex)} -> {_dot_str('job_' + e.child_id.hex)}"
            f" [label={_dot_str(f'{label} ({e.status})')}, style={style}, color={colour}];"
        )
    lines.append("}")
    return "\n".join(lines) + "\n"


def _mermaid_text(text: str) -> str:
    return text.replace('"', "#quot;").replace("\n", "<br/>").replace("|", "#124;")


def graph_mermaid(jobs: Sequence[Job], edges: Sequence[EdgeRecord]) -> str:
    lines = ["flowchart LR"]
    for j in jobs:
        lines.append(f'  {j.job_id}["{_mermaid_text(_label(j))}"]:::{j.status.value}')
    for e in edges:
        label = e.kind if e.condition is None else f"{e.kind}: {e.condition}"
        arrow = "-.->" if e.kind == "parallel" else "-->"
        text = _mermaid_text(f"{label} ({e.status})")
        lines.append(f'  job_{e.parent_id.hex} {arrow}|"{text}"| job_{e.child_id.hex}')
    for status, colour in _COLOURS.items():
        lines.append(f"  classDef {status} fill:{colour},stroke:#333")
    return "\n".join(lines) + "\n"


def render(fmt: str, jobs: Sequence[Job], edges: Sequence[EdgeRecord], title: str = "jobs") -> str:
    if fmt == "json":
        return json.dumps(graph_json(jobs, edges), indent=2) + "\n"
    if fmt == "dot":
        return graph_dot(jobs, edges, title)
    if fmt == "mermaid":
        return graph_mermaid(jobs, edges)
    if fmt == "svg":
        return graph_svg(jobs, edges, title)
    raise unknown_format(fmt)


def unknown_format(fmt: str) -> ValidationError:
    return ValidationError(f"Unknown graph format {fmt!r} (expected {', '.join(FORMATS)})")

"""A graph of jobs as a picture: a self-contained SVG, laid out in layers, no Graphviz needed.

Each job sits in the column of its longest path from a root (so every edge points right);
within a column, jobs are ordered by the mean position of their neighbours, sweeping left
to right and back, which untangles most crossings. Boxes are coloured by status, as in the
DOT export; a box's or an edge's tooltip (`<title>`) has the details.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from xml.sax.saxutils import escape, quoteattr

from jobforge.errors import ValidationError
from jobforge.jobs import Job
from jobforge.workflows.records import EdgeRecord

MAX_JOBS = 2_000  # beyond this a picture is unreadable: DOT or JSON suit a tool better
BOX_W, BOX_H, GAP_X, GAP_Y, MARGIN = 180, 46, 70, 18, 20
SWEEPS = 4
_FILL = {
    "succeeded": "palegreen",
    "partial_success": "khaki",
    "failed": "salmon",
    "running": "lightblue",
    "waiting": "lightgrey",
    "skipped": "gainsboro",
    "cancelled": "gainsboro",
}
_STROKE = {"resolved": "darkgreen", "failed": "red", "cancelled": "grey"}


def graph_svg(jobs: Sequence[Job], edges: Sequence[EdgeRecord], title: str = "jobs") -> str:
    if len(jobs) > MAX_JOBS:
        raise ValidationError(
            f"Graph too large to draw: {len(jobs):,} jobs (at most {MAX_JOBS:,});"
            " use format dot or json"
        )
    ids = {j.id for j in jobs}
    drawn = [e for e in edges if e.parent_id in ids and e.child_id in ids]
    columns = _order(_columns(jobs, drawn), drawn)
    rows = max((len(c) for c in columns), default=1)
    at = {  # each column centred on the tallest one
        job.id: (
            MARGIN + c * (BOX_W + GAP_X),
            MARGIN + 24 + (rows - len(column)) * (BOX_H + GAP_Y) // 2 + r * (BOX_H + GAP_Y),
        )
        for c, column in enumerate(columns)
        for r, job in enumerate(column)
    }
    width = MARGIN * 2 + max(1, len(columns)) * (BOX_W + GAP_X) - GAP_X
    height = MARGIN * 2 + 24 + rows * (BOX_H + GAP_Y)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}"'
        f' viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        f"<title>{escape(title)}</title>",
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7"'
        ' markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z"/></marker></defs>',
        f'<text x="{MARGIN}" y="{MARGIN + 4}" font-weight="bold">{escape(title)}</text>',
    ]
    out += [_edge(e, at) for e in drawn]
    out += [_box(j, *at[j.id]) for column in columns for j in column]
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _columns(jobs: Sequence[Job], edges: Sequence[EdgeRecord]) -> list[list[Job]]:
    """Jobs by their longest path from a root (a job no drawn edge points to)."""
    children: dict[uuid.UUID, list[uuid.UUID]] = defaultdict(list)
    parents = {j.id: 0 for j in jobs}
    for e in edges:
        children[e.parent_id].append(e.child_id)
        parents[e.child_id] += 1
    depth = dict.fromkeys(parents, 0)
    ready = [i for i, n in parents.items() if n == 0]
    while ready:  # Kahn's order: a workflow's graph has no cycle
        node = ready.pop()
        for child in children[node]:
            depth[child] = max(depth[child], depth[node] + 1)
            parents[child] -= 1
            if parents[child] == 0:
                ready.append(child)
    columns: list[list[Job]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for job in sorted(jobs, key=lambda j: (j.name or j.type, j.job_id)):
        columns[depth[job.id]].append(job)
    return columns


def _order(columns: list[list[Job]], edges: Sequence[EdgeRecord]) -> list[list[Job]]:
    """Reorder each column by the mean row of its neighbours in the column before (then
    after): the barycenter heuristic, a few sweeps."""
    before: dict[uuid.UUID, list[uuid.UUID]] = defaultdict(list)
    after: dict[uuid.UUID, list[uuid.UUID]] = defaultdict(list)
    for e in edges:
        before[e.child_id].append(e.parent_id)
        after[e.parent_id].append(e.child_id)
    row = {j.id: r for column in columns for r, j in enumerate(column)}
    for sweep in range(SWEEPS):
        forward = sweep % 2 == 0
        sequence = columns[1:] if forward else columns[-2::-1]
        for column in sequence:
            near = before if forward else after

            def centre(job: Job, near: dict[uuid.UUID, list[uuid.UUID]] = near) -> float:
                rows = [row[n] for n in near[job.id]]
                return sum(rows) / len(rows) if rows else row[job.id]

            column.sort(key=centre)
            row.update((j.id, r) for r, j in enumerate(column))
    return columns


def _box(job: Job, x: int, y: int) -> str:
    name = job.name or job.type
    status = job.status.value
    tip = f"{name} ({job.job_id})\ntype {job.type}, {status}"
    return (
        f'<g class="job {status}"><title>{escape(tip)}</title>'
        f'<rect x="{x}" y="{y}" width="{BOX_W}" height="{BOX_H}" rx="6"'
        f' fill="{_FILL.get(status, "white")}" stroke="#333"/>'
        f'<text x="{x + 8}" y="{y + 18}" font-weight="bold">{escape(_fit(name, 24))}</text>'
        f'<text x="{x + 8}" y="{y + 36}">{escape(_fit(f"{job.type} · {status}", 28))}</text>'
        "</g>"
    )


def _edge(edge: EdgeRecord, at: dict[uuid.UUID, tuple[int, int]]) -> str:
    (px, py), (cx, cy) = at[edge.parent_id], at[edge.child_id]
    x1, y1, x2, y2 = px + BOX_W, py + BOX_H // 2, cx, cy + BOX_H // 2
    bend = max(GAP_X // 2, (x2 - x1) // 3)
    label = edge.kind if edge.condition is None else f"{edge.kind}: {edge.condition}"
    dash = ' stroke-dasharray="5,4"' if edge.kind == "parallel" else ""
    return (
        f'<g class="edge {edge.status}"><title>{escape(f"{label} ({edge.status})")}</title>'
        f'<path d="M{x1},{y1} C{x1 + bend},{y1} {x2 - bend},{y2} {x2},{y2}" fill="none"'
        f" stroke={quoteattr(_STROKE.get(edge.status, 'black'))}{dash}"
        ' marker-end="url(#arrow)"/></g>'
    )


def _fit(text: str, chars: int) -> str:
    return text if len(text) <= chars else text[: chars - 1] + "…"

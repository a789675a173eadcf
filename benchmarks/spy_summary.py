"""Summarise a py-spy `--format raw` (collapsed stacks) file by thread group and function.

    py-spy record --threads --nonblocking --format raw -o /tmp/spy.txt -- \\
        python benchmarks/profile_worker.py --no-cprofile --backend sqlite
    python benchmarks/spy_summary.py /tmp/spy.txt

Without `--idle`, py-spy drops samples of threads that wait (GIL, sockets, sleeps), so the
shares are of CPU-active samples.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_LOCATION = re.compile(r" \((?P<file>[^()]*):\d+\)$")


def _group(thread: str) -> str:
    name = thread.split(" (", 1)[0].replace("thread ", "").strip()
    return name


def _frame(frame: str) -> str:
    """`func (path/to/file.py:12)` -> `func (file.py)`; line numbers merged."""
    match = _LOCATION.search(frame)
    if not match:
        return frame
    return f"{frame[: match.start()]} ({match.group('file').rsplit('/', 1)[-1]})"


def summarise(path: Path, top: int, focus: list[str]) -> str:
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        thread_frames = [f for f in frames if f.startswith("thread (") or f.startswith("thread ")]
        body = [_frame(f) for f in frames if f not in thread_frames]
        if not body:
            continue
        total += count
        # py-spy names the thread by id; the first frame tells what it runs
        root = body[1] if len(body) > 1 and body[0].startswith("Thread._bootstrap") else body[0]
        threads[root] += count
        own[body[-1]] += count
        for name in set(body):
            inclusive[name] += count
    out = [f"{total} samples"]
    out.append("\nby thread entry point:")
    out += [f"  {100 * n / total:5.1f}%  {name}" for name, n in threads.most_common(8)]
    out.append("\nown time (leaf frames):")
    out += [f"  {100 * n / total:5.1f}%  {name}" for name, n in own.most_common(top)]
    out.append("\ninclusive time:")
    shown = inclusive.most_common(top * 3)
    if focus:
        shown = [(k, v) for k, v in inclusive.items() if any(f in k for f in focus)]
        shown.sort(key=lambda kv: -kv[1])
    out += [f"  {100 * n / total:5.1f}%  {name}" for name, n in shown[: top * 2]]
    return "\n".join(out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("file", type=Path)
    p.add_argument("--top", type=int, default=20)
    p.add_argument("--focus", default="", help="comma-separated substrings for the inclusive list")
    args = p.parse_args()
    focus = [f for f in args.focus.split(",") if f]
    print(summarise(args.file, args.top, focus))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

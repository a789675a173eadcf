"""The app the limit end-to-end tests run in two real worker processes at once
(`--app tests.apps.limits_app:app`).

Each handler appends one `start end pid` line (wall-clock seconds) to the file its payload
names, so the test can tell from outside how many ran at once and how starts were spread.
"""

from __future__ import annotations

import os
import time

from jobforge import Forge, JobContext

app = Forge()  # the database comes from JOBFORGE_DATABASE_URL or --db

# At most RUNNING_CAP `capped` jobs at once across all workers. A worker run with
# `--concurrency 4 --prefetch 0` holds at most 4, so two of them could run 8 without it.
RUNNING_CAP = 5
app.limit(type="capped", max_running=RUNNING_CAP)

# At most RATE_CAP starts of the `metered` queue in any RATE_PER seconds.
RATE_CAP = 6
RATE_PER = 1.0
app.limit(queue="metered", max_started=RATE_CAP, per=RATE_PER)


def _record(path: str, seconds: float) -> int:
    start = time.time()
    time.sleep(seconds)
    end = time.time()
    # One short write to a file opened for appending: lines from both processes never mix.
    with open(path, "a") as f:
        f.write(f"{start:.6f} {end:.6f} {os.getpid()}\n")
    return os.getpid()


@app.job
def capped(ctx: JobContext, path: str, seconds: float) -> int:
    return _record(path, seconds)


@app.job(queue="metered")
def metered(ctx: JobContext, path: str, seconds: float) -> int:
    return _record(path, seconds)


@app.job
def free(ctx: JobContext, path: str, seconds: float) -> int:
    """Under no limit."""
    return _record(path, seconds)

"""An app with a cron schedule that fires every minute (`--app tests.apps.cron_app:app`).

Workers store the schedule when they start; a test makes it due at once by moving its
`next_run_at` back, then checks that the tick enqueued exactly one `tick` job.
"""

from __future__ import annotations

import os

from jobforge import Forge, JobContext

app = Forge()  # the database comes from JOBFORGE_DATABASE_URL or --db

SCHEDULE = "every-minute"


@app.job
def tick(ctx: JobContext) -> int:
    return os.getpid()


app.schedule(SCHEDULE, "* * * * *", job="tick")

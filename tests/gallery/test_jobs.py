"""gallery/jobs.py's bookkeeping, where no HTTP request can time it: a job whose task is
cancelled before its first step."""

from __future__ import annotations

import asyncio
import contextlib

from localhost_ai.gallery.install import FileSpec
from localhost_ai.gallery.jobs import JobRunner


def test_a_job_cancelled_before_its_task_ran_ends_cancelled_not_waiting(tmp_path):
    started = []

    async def work(job) -> None:
        started.append(job.uuid)

    async def run():
        runner = JobRunner(tmp_path, allow_file_uris=False)
        job = runner.track("m on node 1", "m", [FileSpec("m.gguf", "")], work)
        job.task.cancel()  # in the same step as its creation: it never runs
        with contextlib.suppress(asyncio.CancelledError):
            await job.task
        await runner.close()
        return job

    job = asyncio.run(run())
    assert started == []
    assert job.processed and job.cancelled and job.message == "cancelled" and job.finished is not None

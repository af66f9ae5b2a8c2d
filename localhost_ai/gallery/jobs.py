"""Background install jobs that clients poll at /models/jobs/<uuid>."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid as uuid_module
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, TypeVar

import aiohttp

from localhost_ai.errors import APIError, short
from localhost_ai.gallery.download import new_session, remove_partial
from localhost_ai.gallery.install import FileSpec, InstallRequest, Plan, execute, make_plan

log = logging.getLogger(__name__)

T = TypeVar("T")
RATE_WINDOW = 5.0  # seconds of progress a job's speed is measured over


@dataclass
class Job:
    uuid: str
    label: str
    message: str = "waiting"
    progress: float = 0.0
    file_name: str = ""
    file_size: int = 0
    downloaded_size: int = 0
    error: str | None = None
    processed: bool = False
    cancelled: bool = False
    installed_model: str | None = None
    created: float = field(default_factory=time.time)
    finished: float | None = None  # time.monotonic() when it was processed
    task: asyncio.Task | None = field(default=None, repr=False)
    plan: Plan | None = field(default=None, repr=False)
    held: set[Path] = field(default_factory=set, repr=False)  # targets it is downloading, their lock held
    _sizes: dict[str, tuple[int, int | None]] = field(default_factory=dict, repr=False)
    _moved: int = field(default=0, repr=False)  # bytes this job has received (resumed ones not counted)
    _samples: deque[tuple[float, int]] = field(default_factory=deque, repr=False)  # (time, _moved)

    @property
    def cancellable(self) -> bool:
        return not self.processed

    def as_dict(self) -> dict[str, Any]:
        return {
            "uuid": self.uuid,
            "processed": self.processed,
            "message": self.message,
            "progress": round(self.progress, 2),
            "file_name": self.file_name,
            "file_size": self.file_size,
            "downloaded_size": self.downloaded_size,
            "error": self.error,
            "cancelled": self.cancelled,
            "cancellable": self.cancellable,
            "gallery_element_name": self.label,
            "installed_model": self.installed_model,
            **self.rate(),
        }

    def rate(self) -> dict[str, Any]:
        """Bytes across all files, the speed over the last RATE_WINDOW seconds (0 when
        nothing arrived in them), and the time left (None until every file's size is known
        or while nothing moves)."""
        done = sum(d for d, _ in self._sizes.values())
        totals = [t for _, t in self._sizes.values()]
        files = len(self.plan.files) if self.plan else len(totals)
        total = sum(totals) if totals and None not in totals and len(totals) >= files else None  # type: ignore[arg-type]
        speed = None
        if self._samples and not self.processed:
            now = time.monotonic()
            self._forget_samples(now)
            first_time, first_moved = self._samples[0] if self._samples else (now, self._moved)
            speed = (self._moved - first_moved) / (now - first_time) if now > first_time else 0.0
        eta = round(max(0, total - done) / speed, 1) if total is not None and speed else None
        return {"downloaded_bytes": done, "total_bytes": total,
                "bytes_per_second": round(speed) if speed is not None else None, "eta_seconds": eta}

    def _forget_samples(self, now: float) -> None:
        while len(self._samples) > 1 and now - self._samples[0][0] > RATE_WINDOW:
            self._samples.popleft()
        if self._samples and now - self._samples[0][0] > RATE_WINDOW:  # nothing arrived in the window
            self._samples[0] = (now - RATE_WINDOW, self._moved)

    def file_sizes(self) -> dict[str, tuple[int, int | None]]:
        """Each file's (bytes so far, total or None), as the downloads report them."""
        return dict(self._sizes)

    def on_progress(self, spec: FileSpec, done: int, total: int | None) -> None:
        before = self._sizes.get(spec.filename)
        self._sizes[spec.filename] = (done, total)
        # Only bytes that arrived count towards the speed: a file's first report (bytes resumed
        # from a .partial) and a restart from zero (a server that ignored Range) set a new base.
        if before is not None and done > before[0]:
            self._moved += done - before[0]
        now = time.monotonic()
        self._forget_samples(now)
        if not self._samples or now - self._samples[-1][0] >= 0.05:
            self._samples.append((now, self._moved))
        self.file_name, self.downloaded_size, self.file_size = spec.filename, done, total or 0
        self.message = f"downloading {spec.filename}"
        known = [t for _, t in self._sizes.values() if t]
        files = len(self.plan.files) if self.plan else 1
        if total:
            finished = sum(1 for d, t in self._sizes.values() if t and d >= t) - (1 if done >= total else 0)
            self.progress = min(99.9, 100.0 * (finished + done / total) / max(files, 1))
        elif known:
            self.progress = min(99.9, self.progress)


# Finished jobs stay answerable this long, and at most this many of them.
KEEP_FINISHED_SECONDS = 3600.0
KEEP_FINISHED = 256


class JobRunner:
    """Runs install jobs; at most `max_downloads` files are in flight across all of them.
    Finished jobs are kept for their pollers for a bounded time and count."""

    def __init__(self, models_path: Path, allow_file_uris: bool, max_downloads: int = 3,
                 on_installed: Callable[[str], Awaitable[Any]] | None = None, keep_seconds: float = KEEP_FINISHED_SECONDS,
                 keep: int = KEEP_FINISHED, allow_private_urls: bool = False, max_file_size: int | None = None) -> None:
        self.keep_seconds = keep_seconds
        self.keep = keep
        self.models_path = models_path
        self.on_installed = on_installed  # the server refreshes its table, so "completed" means servable
        self.allow_file_uris = allow_file_uris
        self.allow_private_urls = allow_private_urls
        self.max_file_size = max_file_size
        self.jobs: dict[str, Job] = {}
        self._slots = asyncio.Semaphore(max_downloads)
        self._session: aiohttp.ClientSession | None = None
        self._closing = False

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = new_session(self.allow_private_urls)
        return self._session

    def forget_finished(self) -> None:
        """Drop finished jobs older than `keep_seconds`, then the oldest beyond `keep`."""
        now = time.monotonic()
        finished = sorted((j for j in self.jobs.values() if j.finished is not None), key=lambda j: j.finished or 0)
        for position, job in enumerate(finished):
            if now - (job.finished or now) > self.keep_seconds or position < len(finished) - self.keep:
                del self.jobs[job.uuid]

    def submit(self, request: InstallRequest) -> Job:
        self.forget_finished()
        job = Job(uuid=str(uuid_module.uuid4()), label=request.label)
        self.jobs[job.uuid] = job
        job.task = asyncio.create_task(self._run(job, request))
        job.task.add_done_callback(lambda _: _settle(job))
        return job

    async def _run(self, job: Job, request: InstallRequest) -> None:
        try:
            job.message = "resolving"
            async with self._slots:  # document fetches count against --max-downloads too
                job.plan = await make_plan(self.session(), request, self.models_path, self.allow_file_uris)
            job.label = request.entry.id if request.entry else job.plan.name
            await execute(self.session(), job.plan, self.models_path, self.allow_file_uris, job.on_progress, self._slots,
                          job.held, self.max_file_size)
        except asyncio.CancelledError:
            job.cancelled, job.message = True, "cancelled"
            if self._closing:  # shutting down: keep partial files so the next run resumes them
                log.info("job %s (%s): stopped by shutdown; partial files kept", job.uuid, job.label)
            else:
                self._remove_partials(job)
                log.info("job %s (%s): cancelled", job.uuid, job.label)
        except APIError as exc:
            job.error, job.message = exc.message, "error"
            log.warning("job %s (%s) failed: %s", job.uuid, job.label, exc.message)
        except Exception:
            job.error = f"The install failed on the server; its log has the details (job {job.uuid})."
            job.message = "error"
            log.exception("job %s (%s) failed", job.uuid, job.label)
        else:
            job.installed_model = job.plan.name if job.plan else None
            if self.on_installed and job.installed_model:
                await self.on_installed(job.installed_model)
            job.progress, job.message = 100.0, "completed"
        finally:
            job.processed = True
            job.finished = time.monotonic()

    def track(self, label: str, model: str, files: list[FileSpec], work: Callable[[Job], Awaitable[T]]) -> Job:
        """A job whose work runs elsewhere (a Ray node fetching a model's files for its
        replica there): listed, polled and cancelled like an install.  `work(job)` reports
        through job.on_progress; its error or cancel is the job's, and is raised again to
        whoever awaits job.task."""
        self.forget_finished()
        job = Job(uuid=str(uuid_module.uuid4()), label=label, plan=Plan(model, {}, files))
        self.jobs[job.uuid] = job
        job.task = asyncio.create_task(self._tracked(job, model, work))
        job.task.add_done_callback(lambda _: _settle(job))
        return job

    async def _tracked(self, job: Job, model: str, work: Callable[[Job], Awaitable[T]]) -> T:
        job.message = "starting"
        try:
            result = await work(job)
        except asyncio.CancelledError:
            job.cancelled, job.message = True, "cancelled"
            raise
        except Exception as exc:
            job.error, job.message = getattr(exc, "message", None) or short(exc), "error"
            raise
        finally:
            job.processed = True
            job.finished = time.monotonic()
        job.installed_model, job.progress, job.message = model, 100.0, "completed"
        return result

    def _remove_partials(self, job: Job) -> None:
        """Only the partial files this job was writing: one waiting for another job's file
        owns nothing of it (before, cancelling it removed the running job's partial)."""
        for target in list(job.held):
            remove_partial(target)
        job.held.clear()

    async def cancel(self, uuid: str) -> Job | None:
        job = self.jobs.get(uuid)
        if job is None:
            return None
        if job.task is not None and not job.task.done():
            job.task.cancel()
            try:
                await job.task
            except asyncio.CancelledError:
                pass
        return job

    async def wait(self, job: Job) -> Job:
        if job.task is not None:
            await asyncio.shield(job.task)
        return job

    async def close(self) -> None:
        self._closing = True
        for job in self.jobs.values():
            if job.task and not job.task.done():
                job.task.cancel()
        await asyncio.gather(*(j.task for j in self.jobs.values() if j.task), return_exceptions=True)
        if self._session is not None:
            await self._session.close()


def _settle(job: Job) -> None:
    """A job's task cancelled before its first step never ran its own ending: it ends here
    as cancelled, rather than being listed as waiting for ever."""
    if not job.processed:
        job.cancelled, job.message = True, "cancelled"
        job.processed = True
        job.finished = time.monotonic()

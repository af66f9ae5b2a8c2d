"""One replica of a model in a Ray cluster, as the front-end sees it: a local worker
process's calls, pings and loading (`WorkerProcess`) over a Ray actor instead of a socket.
`ray_placement.RayModel` holds a model's replicas; the actor is `ray_replica.Replica`."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Awaitable, Callable

import ray
from ray.exceptions import GetTimeoutError, RayError

from localhost_ai.config import ModelConfig
from localhost_ai.errors import APIError, BackendError, NotReady, short
from localhost_ai.gallery.install import FileSpec
from localhost_ai.runtime.client import WorkerClient
from localhost_ai.runtime.ray_replica import Replica
from localhost_ai.runtime.worker import WorkerProcess, unloaded

log = logging.getLogger(__name__)

_FETCH_STOP_TIMEOUT = 10.0  # how long a node has to stop a fetch and remove its partial file
CALL_OFF_TIMEOUT = 3 * _FETCH_STOP_TIMEOUT  # how long the replicas called off may take to go (theirs stop too)
_STOP_PATIENCE = CALL_OFF_TIMEOUT + 2 * _FETCH_STOP_TIMEOUT + 5  # a user's cancel, at its longest, and a margin


class ReplicaClient(WorkerProcess):
    """One replica: a local worker process's calls, pings and loading over a Ray actor
    instead of a socket (the messages and their handling are the same)."""

    def __init__(self, config: ModelConfig, on_exit: Callable[[WorkerClient], None], actor_options: dict[str, Any],
                 placement_timeout: float, fetch: dict[str, Any], jobs: Callable[[], Any] | None = None,
                 on_fetch_cancelled: Callable[[ReplicaClient], Awaitable[None]] | None = None) -> None:
        """`fetch`: the gallery's download settings, for a node that fetches the model's
        files; `jobs`: the gallery's JobRunner (once the server runs), which lists that fetch;
        `on_fetch_cancelled`: awaited when a user cancels that fetch, before its node stops."""
        super().__init__(config, on_exit)
        self.on_fetch_cancelled = on_fetch_cancelled
        self.actor_options = actor_options
        self.placement_timeout = placement_timeout
        self.fetch = fetch
        self.jobs = jobs
        self.placed_config: dict[str, Any] | None = None  # the config with its paths on the replica's node
        self.actor: Any = None
        self.where: dict[str, Any] = {}
        self.served = 0
        self.engine: dict[str, Any] = {}  # its engine figures, as its last answer to a ping gave them
        # Ray's calls (a message, a kill) leave the event loop: one thread, so they go in order,
        # and a call body Ray copies into its object store holds up no other request.
        self._submitter = ThreadPoolExecutor(1, thread_name_prefix=f"ray-{config.name}"[:15])
        self._submitted_last = False
        self.starting: asyncio.Task | None = None  # the task running start()
        self.called_off = False  # its start was called off: another replica's fetch was cancelled by a user
        self.user_cancelled = False  # a user cancelled its fetch's job
        self._removing = False  # its fetch is being stopped with its partial file removed
        self._stream: Any = None  # the node's place_files stream, while it runs
        self._fetching: asyncio.Future | None = None  # its node's fetch of the model's files, while it runs
        self._fetch_resumable = False  # the fetch ends with the actor killed: its partial file kept, to resume

    def _submit(self, function: Callable[..., Any], *args: Any,
                on_error: Callable[[BaseException], None] | None = None) -> None:
        """`on_error`: called on the event loop if Ray refuses (else it is only logged: the
        replica's stream reports a dead actor)."""
        if self._submitted_last:  # the actor was killed: nothing more goes to it
            return
        loop = asyncio.get_running_loop()

        def run() -> None:
            try:
                function(*args)
            except Exception as exc:
                log.warning("model %s: Ray refused %s: %s", self.name, getattr(function, "__name__", "a call"),
                            short(exc))
                if on_error is not None:
                    loop.call_soon_threadsafe(on_error, exc)
        self._submitter.submit(run)

    def _refused(self, message: dict[str, Any], exc: BaseException) -> None:
        """A message Ray would not take (a body it could not store, say): its call or the
        load fails rather than waiting for ever, its ping fails without counting as a hang."""
        error = BackendError(f"Model '{self.name}': the request could not be sent to its replica on {self._node}: "
                             f"{short(exc)}", code="replica_failed")
        if message.get("op") == "load" and self._loaded is not None and not self._loaded.done():
            self._loaded.set_exception(error)
        call = self.calls.get(message.get("id", "")) if message.get("op") == "call" else None
        if call is not None:
            call.queue.put_nowait(error)
        future = self._pongs.get(message.get("id", "")) if message.get("op") == "ping" else None
        if future is not None and not future.done():
            future.set_exception(error)

    def _kill_actor(self) -> None:
        """Its process goes, whatever state it is in; nothing more is sent to it.  The kill
        runs on the thread that creates the actor, after it: an actor still being created
        when its load is stopped or cancelled is killed as soon as it exists."""
        self._submit(self._kill_now)
        self._submitted_last = True
        self._submitter.shutdown(wait=False)

    def _kill_now(self) -> None:
        if self.actor is not None:
            ray.kill(self.actor)

    @property
    def pid(self) -> int | None:
        return self.where.get("pid")

    @property
    def node_id(self) -> str | None:
        return self.where.get("node_id")

    def memory(self) -> int | None:
        return None

    def describe(self) -> dict[str, Any]:
        return {"node_id": self.node_id, "node_ip": self.where.get("node_ip"), "host": self.where.get("host"),
                "pid": self.pid, "state": self.state, "running": self.running, "pending": self.pending,
                "served": self.served, "concurrency": self.concurrency, "engine": self.engine}

    async def start(self) -> None:
        self.starting = asyncio.current_task()
        level = logging.getLevelName(logging.getLogger().getEffectiveLevel())
        options = self.actor_options

        def create() -> None:  # on the submitter thread: a kill sent meanwhile runs after it
            self.actor = _actor_class().options(**options).remote(level)
        try:
            try:
                await asyncio.get_running_loop().run_in_executor(self._submitter, create)
            except ValueError as exc:  # a resource or label Ray will not take
                raise BackendError(f"Model '{self.name}': Ray refuses its `resources`: {short(exc)}",
                                   code="invalid_resources") from None
            if self.expected_exit:  # stopped while Ray created it
                raise unloaded(self.name)
            # Returns once Ray has placed the actor on a node and started it.
            self.where = await asyncio.wait_for(_awaitable(self.actor.where.remote()), self.placement_timeout)
            placed = await self._place_files()
            if self.expected_exit or self.called_off:  # stopped as its files arrived: it loads nothing
                raise unloaded(self.name)
        except BaseException as exc:  # cancelled too: no actor is left waiting in the cluster
            self._kill_actor()
            self.state = "dead"
            if self.called_off:  # with another replica's cancelled fetch: that is the load's error
                raise asyncio.CancelledError() from None
            if self.expected_exit and not isinstance(exc, asyncio.CancelledError):
                raise unloaded(self.name) from None  # stop() killed it: not a failure of the model
            if isinstance(exc, (asyncio.TimeoutError, GetTimeoutError)):
                raise NotReady(f"Model '{self.name}': no node of the Ray cluster had room for a replica within "
                               f"{self.placement_timeout:g} s (--ray-placement-timeout); the nodes that could hold "
                               f"one are busy with other work.", code="no_node_free") from None
            if isinstance(exc, RayError):
                raise BackendError(f"Model '{self.name}': its replica could not start: {short(exc)}",
                                   code="replica_failed") from None
            raise
        self.placed_config = placed
        log.info("model %s: replica pid %s on node %s (%s); loading %s", self.name, self.pid, self.where.get("node_ip"),
                 (self.node_id or "")[:12], self.config.model_path.name)
        seconds = await self._load([self._read(self.actor.messages.remote())])
        log.info("model %s: replica on node %s loaded in %.2fs", self.name, self.where.get("node_ip"), seconds)

    async def ping(self, timeout: float) -> dict[str, Any]:
        pong = await super().ping(timeout)
        self.engine = pong.get("stats") or self.engine  # for its entry in the model's status
        return pong

    @property
    def _node(self) -> str:
        return f"node {self.where.get('node_ip')} ({(self.node_id or '?')[:12]})"

    async def _place_files(self) -> dict[str, Any]:
        """The config with its paths on the replica's node, once the node has the model's
        files.  A node that must fetch them does so as a gallery job (/models/jobs), which
        its poller sees and may cancel."""
        stream = self._stream = self.actor.place_files.remote(self.config.to_wire(), self.fetch)
        try:
            first = await _next(stream)
            if self.expected_exit or self.called_off:  # stopped meanwhile: no job is made for a fetch
                if "fetching" in first:
                    await _stop_fetch(stream)
                raise unloaded(self.name)
            if "fetching" not in first:
                return self._placed(first)
            return await self._fetch(stream, first["fetching"])
        except asyncio.CancelledError:
            if self.expected_exit and not self.closing and not self._fetch_resumable:  # unloaded: the node may
                await _stop_fetch(stream)  # have begun a fetch whose first report had not come yet
            raise
        finally:
            self._stream = None

    async def _fetch(self, stream: Any, names: list[str]) -> dict[str, Any]:
        log.info("model %s: %s fetches %s", self.name, self._node, ", ".join(names))
        runner = self.jobs() if self.jobs else None
        job = None
        if runner is None:  # no job list (the gallery is not running): fetched all the same
            fetching: asyncio.Future = asyncio.ensure_future(self._follow(stream, None))
        else:
            job = runner.track(f"{self.name} on {self._node}", self.name, [FileSpec(name, "") for name in names],
                               lambda job: self._follow(stream, job))
            fetching = job.task  # type: ignore[assignment]
        self._fetching = fetching
        try:
            return await asyncio.shield(fetching)
        except asyncio.CancelledError:
            cancelling = getattr(asyncio.current_task(), "cancelling", None)  # Python 3.11: this load is cancelled
            if fetching.cancelled() and not (cancelling and cancelling()):  # the fetch was: its job, stop(), call_off()
                await _stop_fetch(stream)  # done already, unless its job was cancelled before its first step
                if self.expected_exit:
                    raise unloaded(self.name) from None
                raise NotReady(f"Model '{self.name}': fetching its files onto {self._node} was cancelled (job "
                               f"{job.uuid if job else '-'}).", code="model_files_cancelled") from None
            # This load is cancelled.  Unloaded, or its fetch being stopped already (a user's
            # cancel), the node stops its download and removes its partial file before the actor
            # goes.  Otherwise (the server shuts down, or a sibling replica failed) the actor is
            # killed mid-download, and the partial file stays for the next fetch to resume, as
            # an install's does.
            removing = (self.expected_exit and not self.closing) or self._removing
            self._fetch_resumable = not removing
            fetching.cancel()
            if removing:
                await _outlast(fetching, _STOP_PATIENCE)
            raise
        finally:
            self._fetching = None

    async def _follow(self, stream: Any, job: Any) -> dict[str, Any]:
        """The node's reports until its answer.  Cancelled (its job, or an unload), the node
        stops the download it was making and removes its partial file, and its stream ends,
        before the replica goes; a user's cancel first calls off the model's other replicas
        that are starting (one waiting for that file would fetch it next)."""
        try:
            while True:
                item = await _next(stream)
                if "progress" not in item:
                    return self._placed(item)
                name, done, total = item["progress"]
                if job is not None:
                    job.on_progress(FileSpec(name, ""), done, total)
        except asyncio.CancelledError:
            if not self._fetch_resumable:
                self._removing = True
                if not (self.expected_exit or self.called_off):  # its job's cancel: a user's
                    self.user_cancelled = True
                    if self.on_fetch_cancelled is not None:
                        await _outlast(asyncio.ensure_future(self.on_fetch_cancelled(self)), CALL_OFF_TIMEOUT + 1)
                await _stop_fetch(stream)
            raise

    def call_off(self) -> None:
        """Its start ends (cancelled), its actor killed: another replica's fetch was
        cancelled by a user while the model first loaded.  Its own fetch, if it has one,
        stops first, its partial file removed."""
        self.called_off = True
        fetching = self._fetching
        if fetching is not None and not fetching.done():
            fetching.cancel()
        else:
            self._kill_actor()

    def _placed(self, answer: dict[str, Any]) -> dict[str, Any]:
        if "error" in answer:
            raise BackendError(f"Model '{self.name}': its files could not be put on {self._node}: {answer['error']}",
                               code="model_files_failed")
        return answer["config"]

    def _config_to_load(self) -> dict[str, Any]:
        return self.placed_config or self.config.to_wire()

    def _send(self, message: dict[str, Any]) -> None:
        if self.actor is None or self.state in ("dead", "starting"):
            raise BackendError(f"Model '{self.name}': its replica is not running.", code="worker_gone")
        self._submit(self.actor.handle.remote, message, on_error=lambda exc: self._refused(message, exc))

    async def _read(self, stream: Any) -> None:  # type: ignore[override]
        failure: BaseException | None = None
        try:
            async for ref in stream:
                for message in await ref:
                    if message.get("type") == "bye":
                        return
                    self._dispatch(message)
        except RayError as exc:
            failure = exc
        except Exception as exc:
            log.error("model %s: bad message from its replica: %s", self.name, exc)
            failure = exc
        finally:
            self._ended(failure)

    def _ended(self, failure: BaseException | None) -> None:
        """The stream ended: the replica said goodbye, or it (or its node) died."""
        self._kill_actor()
        where = f"on {self._node}"
        if self.expected_exit:
            self._gone(unloaded(self.name))
            return
        reason = self.death_reason or (short(failure) if failure else "ended unexpectedly")
        log.error("model %s: replica %s died: %s", self.name, where, reason)
        self._gone(NotReady(f"Model '{self.name}': its replica {where} stopped ({reason}). The model is served from "
                            f"its other replicas, or a new one; try again.", code="replica_died",
                            headers={"Retry-After": "1"}))

    def kill(self, reason: str) -> None:
        if self.actor is not None and self.state != "dead":
            self.death_reason = reason
            self._submit(ray.kill, self.actor)

    async def stop(self, grace: float = 10.0) -> None:
        if self.state == "dead":
            return
        self.expected_exit = True
        if self.state == "starting":  # being created or placed, or its node fetching files: nothing loaded
            # Unloaded, its node stops a fetch and removes the partial file, however short the
            # grace; the server shutting down, the actor is killed and the partial file kept.
            patience = max(grace, _STOP_PATIENCE)
            fetching = self._fetching
            if fetching is not None and not fetching.done():
                if self.closing:
                    self._fetch_resumable = True
                fetching.cancel()  # its job ends cancelled
                await asyncio.wait({fetching}, timeout=patience)
            elif self._stream is not None and self.starting is not None and not self.closing:
                with contextlib.suppress(Exception):  # the node may have begun a fetch
                    ray.cancel(self._stream)
                await asyncio.wait({self.starting}, timeout=patience)
            self._kill_actor()
            self.state = "dead"
            return
        self.state = "stopping"
        with contextlib.suppress(APIError):
            self._send({"op": "shutdown"})
        try:
            await asyncio.wait_for(self.exited.wait(), timeout=grace)
        except asyncio.TimeoutError:
            log.warning("model %s: replica on node %s did not stop in %.0fs; killing it", self.name,
                        self.where.get("node_ip"), grace)
            self._submit(ray.kill, self.actor)
            await self.exited.wait()


@functools.cache
def _actor_class() -> Any:
    return ray.remote(Replica)


async def _stop_fetch(stream: Any) -> None:
    """The node's fetch stopped (its partial file removed) and its stream ended, waited for
    through further cancels (which the caller, handling one, raises after)."""
    with contextlib.suppress(Exception):
        ray.cancel(stream)
    draining = asyncio.ensure_future(_drain(stream))
    await _outlast(draining, _FETCH_STOP_TIMEOUT)
    draining.cancel()


async def _outlast(task: asyncio.Future, timeout: float) -> None:
    """Wait for `task`, up to `timeout`, however often the waiter is cancelled meanwhile: for
    clean-up inside a cancel's handler, which raises the cancel after."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not task.done() and (left := deadline - asyncio.get_running_loop().time()) > 0:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait({task}, timeout=left)


async def _drain(stream: Any) -> None:
    """Until the stream ends (a report already on its way is not its end)."""
    try:
        while True:
            await _next(stream)
    except Exception:  # its end, the task's cancel, or the actor gone
        return


async def _next(stream: Any) -> Any:
    """The next item of an actor's stream (a Ray streaming generator)."""
    return await (await stream.__anext__())


def _awaitable(ref: Any) -> Any:
    async def wait() -> Any:
        return await ref
    return wait()

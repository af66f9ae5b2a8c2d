"""Models served from a Ray cluster (`serve --ray ADDRESS`): a model is one `RayModel`
to the manager, as a local worker process is, and holds `replicas` Ray actors, each a
`Replica` (runtime/ray_replica.py) that runs the same worker code as a local process.

Plain actors rather than Ray Serve deployments: Serve's controller would be a second
manager beside ours (its own replica lifecycle, against our LRU, idle unloading and
reloads on a changed file); it waits without a limit for a replica that fits nowhere;
and it notices a dead replica only at its next health check, while an actor's stream
fails the moment the actor dies.  Our own counts of the calls each replica holds give
least-loaded routing exactly.  Imported only with --ray: nothing else imports ray."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import warnings
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any, AsyncIterator, Callable

import ray

from localhost_ai import metrics
from localhost_ai.config import ModelConfig
from localhost_ai.contract import Request
from localhost_ai.contract.events import Event
from localhost_ai.errors import APIError, BackendError, InvalidRequest, NotReady, short
from localhost_ai.gallery import mirror
from localhost_ai.runtime.client import WorkerClient
from localhost_ai.runtime.ray_replica_client import CALL_OFF_TIMEOUT, ReplicaClient
from localhost_ai.runtime.worker import unloaded
from localhost_ai.settings import Settings

log = logging.getLogger(__name__)

NAMESPACE = "localhost_ai"
_REPLACE_FIRST_DELAY = 1.0
_REPLACE_MAX_DELAY = 30.0
# A replica that failed so is not placed again in the background (it would fail, and fetch,
# again every 30 s): a user's cancel, or the model's definition or files at fault.
_FINAL = {"model_files_cancelled", "model_files_failed", "file_not_owned", "invalid_resources"}


def connect(address: str) -> None:
    """Join the cluster as its driver (blocking: before the server's event loop runs)."""
    if address.startswith("ray://"):
        # Ray Client cannot carry an actor's stream, and each of its calls would block the loop.
        raise SystemExit("localhost-ai: --ray needs the cluster's own address (HOST:6379, or auto on a machine that "
                         "joined it with ray start), not a Ray Client address (ray://)")
    # Ray hides GPUs from a replica that reserves none (num_gpus: 0), and warns that it will
    # stop doing so by default: it is what a model that asked for no GPU should get.
    warnings.filterwarnings("ignore", message=".*RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO.*", category=FutureWarning)
    ray.init(address=address, namespace=NAMESPACE, log_to_driver=True, logging_level=logging.WARNING)
    log.info("connected to the Ray cluster at %s: %d node(s) alive", address,
             sum(1 for node in ray.nodes() if node.get("Alive")))


class Placement:
    """The manager's placement under --ray: each model a RayModel.  `jobs`: how to reach the
    gallery's JobRunner, which lists a node's fetch of a model's files (set by the server)."""

    def __init__(self, settings: Settings) -> None:
        self.placement_timeout = settings.ray_placement_timeout
        self.fetch = {"allow_private_urls": settings.allow_private_urls, "allow_file_uris": settings.allow_file_uris,
                      "max_download_size": settings.max_download_size}
        self.jobs: Callable[[], Any] | None = None

    def __call__(self, config: ModelConfig, on_exit: Callable[[WorkerClient], None]) -> WorkerClient:
        return RayModel(config, on_exit, placement_timeout=self.placement_timeout, fetch=self.fetch, jobs=self.jobs)


def needs(config: ModelConfig) -> tuple[dict[str, float], dict[str, str]]:
    """What one replica asks of a node, in Ray's resource names, and the node labels it needs."""
    asked = config.resources
    amounts = {"CPU": float(asked.get("num_cpus", 1)), "GPU": float(asked.get("num_gpus", 0)),
               "memory": float(asked.get("memory", 0)), **{k: float(v) for k, v in (asked.get("custom") or {}).items()}}
    return {k: v for k, v in amounts.items() if v}, dict(asked.get("node_labels") or {})


def _node_fits(node: dict[str, Any], amounts: dict[str, float], labels: dict[str, str]) -> bool:
    totals = node.get("Resources") or {}
    node_labels = node.get("Labels") or {}
    return (all(totals.get(name, 0) >= amount for name, amount in amounts.items())
            and all(node_labels.get(key) == value for key, value in labels.items()))


def _describe_needs(amounts: dict[str, float], labels: dict[str, str]) -> str:
    parts = [f"{name}={amount:g}" for name, amount in amounts.items()]
    parts += [f"label {key}={value}" for key, value in labels.items()]
    return ", ".join(parts) or "nothing"


async def check_fits(config: ModelConfig) -> None:
    """A clear 503 now, rather than a replica that waits for ever, when no node of the
    cluster (alive now) could ever hold one replica of the model."""
    amounts, labels = needs(config)
    nodes = [node for node in await asyncio.to_thread(ray.nodes) if node.get("Alive")]
    if not any(_node_fits(node, amounts, labels) for node in nodes):
        raise NotReady(f"Model '{config.name}' fits on no node of the Ray cluster: a replica needs "
                       f"{_describe_needs(amounts, labels)} (the model's `resources`), and none of the "
                       f"{len(nodes)} node(s) alive offers all of that.", code="no_node_fits")


# Engine figures that are a replica's settings, not counts: the model's figure is theirs
# when every replica has the same.
_SETTINGS = ("context_per_slot", "prefill_chunk")


def merge_stats(replicas: list[dict[str, Any]]) -> dict[str, Any]:
    """A model's engine figures from its replicas': counts added up, a `max_` figure the
    largest, a setting (_SETTINGS) the replicas' own when they agree (left out otherwise)."""
    merged: dict[str, Any] = {}
    for key in dict.fromkeys(key for stats in replicas for key in stats):
        values = [stats[key] for stats in replicas
                  if isinstance(stats.get(key), (int, float)) and not isinstance(stats.get(key), bool)]
        if not values:
            continue
        if key in _SETTINGS:
            if len(set(values)) == 1:
                merged[key] = values[0]
        elif key.startswith("max_"):
            merged[key] = max(values)
        else:
            merged[key] = sum(values)
    return merged


class RayModel(WorkerClient):
    """A model served by `config.replicas` replicas in the cluster: each call goes to the
    replica holding the fewest calls for its size; a replica that dies fails its own calls
    (a 503 naming the model) and is replaced in the background."""

    def __init__(self, config: ModelConfig, on_exit: Callable[[WorkerClient], None], *,
                 placement_timeout: float = 120.0, fetch: dict[str, Any] | None = None,
                 jobs: Callable[[], Any] | None = None) -> None:
        amounts, labels = needs(config)
        if config.threads is None:  # neither the YAML nor --threads: as many as the replica reserves
            config = replace(config, threads=max(1, round(amounts.get("CPU", 1))))
        super().__init__(config, on_exit)
        self.placement_timeout = placement_timeout
        self.fetch = fetch or {}
        self.jobs = jobs
        self.replicas: list[ReplicaClient] = []
        self._changed = asyncio.Event()
        self._counted_nodes: set[str] = set()
        self._replacer: asyncio.Task | None = None
        self.replacing_failed: str | None = None  # why the replicas it lacks are not being placed
        self._try_now = asyncio.Event()  # the last ready replica went while the replacer waited to try again
        options: dict[str, Any] = {
            "num_cpus": amounts.get("CPU", 0), "num_gpus": amounts.get("GPU", 0),
            "resources": {k: v for k, v in amounts.items() if k not in ("CPU", "GPU", "memory")},
            "max_restarts": 0, "scheduling_strategy": "SPREAD",  # replicas on different nodes where they can be
        }
        if amounts.get("memory"):
            options["memory"] = amounts["memory"]
        if labels:
            options["label_selector"] = labels
        self.actor_options = options

    @property
    def pid(self) -> int | None:
        return None  # on other machines: each replica's is in describe()

    @property
    def pending(self) -> int:
        return sum(replica.pending for replica in self.replicas)

    @property
    def running(self) -> int:
        return sum(replica.running for replica in self.replicas)

    def memory(self) -> int | None:
        return None

    def describe(self) -> dict[str, Any]:
        return {"replicas": [replica.describe() for replica in self.replicas], "replicas_wanted": self.config.replicas,
                "replacing_failed": self.replacing_failed}

    def _count_replicas(self) -> None:
        """`localhost_ai_replicas{model,node}`: the model's ready replicas on each node."""
        nodes: dict[str, int] = {}
        for replica in self._ready() if self.state != "dead" else []:
            node = replica.node_id or "?"
            nodes[node] = nodes.get(node, 0) + 1
        for node in self._counted_nodes - nodes.keys():
            metrics.REPLICAS.remove(self.name, node)
        for node, count in nodes.items():
            metrics.REPLICAS.labels(self.name, node).set(count)
        self._counted_nodes = set(nodes)

    def _ready(self) -> list[ReplicaClient]:
        return [replica for replica in self.replicas if replica.state == "ready"]

    def _update(self) -> None:
        self.concurrency = sum(replica.concurrency for replica in self._ready()) or 1
        self._count_replicas()
        self._changed.set()
        self._changed = asyncio.Event()

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        await self._check()
        if self.expected_exit:  # stopped meanwhile: no replica is made for it
            raise unloaded(self.name)
        self.state = "loading"
        adding = [asyncio.ensure_future(self._add()) for _ in range(self.config.replicas)]
        try:
            try:
                await asyncio.wait(adding, return_when=asyncio.FIRST_EXCEPTION)
            finally:
                for task in adding:  # one failed (a cancelled fetch, say), or the load was: the others stop
                    task.cancel()
                results = await asyncio.gather(*adding, return_exceptions=True)
            failures = sorted((result for result in results if isinstance(result, BaseException)),
                              key=lambda failure: isinstance(failure, asyncio.CancelledError))  # the cause first
            if failures:
                raise failures[0]
            if self.expected_exit:  # stopped as its last replica loaded
                raise unloaded(self.name)
        except BaseException:  # the replicas that loaded go too, however the load ended
            await asyncio.gather(*(replica.stop(grace=2) for replica in list(self.replicas)), return_exceptions=True)
            self.state = "dead"
            self._count_replicas()
            raise
        self.state = "ready"
        self._update()
        self._keep_replicas()  # one that loaded and died while the others loaded

    async def _check(self) -> None:
        """What must hold before a replica is made: a node that fits it, and a fetch that
        would replace only the model's own files."""
        await check_fits(self.config)
        try:
            await asyncio.to_thread(mirror.check_owned, self.config.source.parent, self.name,
                                    list(self.config.installed_from))
        except InvalidRequest as exc:  # the model's definition is at fault, not the request
            raise BackendError(f"Model '{self.name}': {exc.message}", code=exc.code) from None

    async def _add(self) -> ReplicaClient:
        if self.expected_exit:  # stopped before this replica was begun
            raise unloaded(self.name)
        replica = ReplicaClient(self.config, self._replica_gone, self.actor_options, self.placement_timeout, self.fetch,
                                self.jobs, on_fetch_cancelled=self._call_off_others)
        self.replicas.append(replica)
        try:
            await replica.start()
        except BaseException:
            if replica in self.replicas:
                self.replicas.remove(replica)
            raise
        self._update()
        return replica

    async def _call_off_others(self, cancelled: ReplicaClient) -> None:
        """A user cancelled one replica's fetch while the model first loads: the other
        replicas starting are called off, and gone, before that fetch stops (one waiting on
        its node for the same file would otherwise fetch it next)."""
        if self.state != "loading":
            return
        others = [replica for replica in self.replicas if replica is not cancelled and replica.state == "starting"
                  and not replica.user_cancelled]  # a fetch cancelled too stops on its own: no waiting for each other
        for replica in others:
            replica.call_off()
        starting = {replica.starting for replica in others if replica.starting is not None}
        if starting:
            await asyncio.wait(starting, timeout=CALL_OFF_TIMEOUT)

    def _replica_gone(self, replica: WorkerClient) -> None:
        if replica in self.replicas:
            self.replicas.remove(replica)  # type: ignore[arg-type]
        self._update()
        if not replica.expected_exit and self.state in ("loading", "ready"):
            metrics.WORKER_DEATHS.labels(self.name).inc()
            if not self._ready():  # its requests wait: a replacer waiting to try again tries now
                self._try_now.set()
            self._keep_replicas()

    def _keep_replicas(self) -> None:
        """One task at a time places the replicas the model lacks (a replica that dies while
        it loads does not start a second, which would skip the waiting and place too many)."""
        if self.state == "ready" and len(self.replicas) < self.config.replicas and (
                self._replacer is None or self._replacer.done()):
            self._replacer = asyncio.create_task(self._replace())

    async def _replace(self) -> None:
        """New replicas for those that died, tried again (waiting longer each time) while the
        model's others serve; with none left and none placeable, the model is gone, and its
        next request places it afresh (and hears why it cannot be)."""
        delay = _REPLACE_FIRST_DELAY
        while self.state == "ready" and len(self.replicas) < self.config.replicas:
            try:
                await self._check()
                if self.state != "ready":  # stopped or killed meanwhile: nothing to place for
                    return
                await self._add()
                self.replacing_failed = None
                metrics.WORKER_RESTARTS.labels(self.name).inc()
                log.info("model %s: a new replica serves it (%d of %d)", self.name, len(self._ready()),
                         self.config.replicas)
                delay = _REPLACE_FIRST_DELAY
                continue
            except Exception as exc:  # a Ray error too: the loop must end in a replica or the model's end
                reason = exc.message if isinstance(exc, APIError) else short(exc)
                if self.state != "ready":
                    return
                if isinstance(exc, APIError) and exc.code in _FINAL:  # trying again would fail (and fetch) again
                    log.error("model %s: no new replica (%s); it is served by %d of %d until one is lost or it is "
                              "loaded again", self.name, reason, len(self._ready()), self.config.replicas)
                    self.replacing_failed = reason
                    if not self._ready():
                        self._die()
                    return
                if not self._ready():
                    log.error("model %s: no replica left and none can be placed (%s)", self.name, reason)
                    self._die()
                    return
                log.warning("model %s: no new replica yet (%s); trying again in %.0f s", self.name, reason, delay)
            self._try_now.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._try_now.wait(), delay)
            delay = min(delay * 2, _REPLACE_MAX_DELAY)

    def _die(self, reason: str = "its model was stopped") -> None:
        if self.state == "dead":
            return
        self.state = "dead"
        if self._replacer is not None and self._replacer is not asyncio.current_task():
            self._replacer.cancel()  # its replica, mid-way, is killed as it is cancelled
        for replica in list(self.replicas):
            replica.kill(reason)
        self._count_replicas()
        self._changed.set()
        self.exited.set()
        self.on_exit(self)

    def kill(self, reason: str) -> None:
        self._die(reason)

    async def stop(self, grace: float = 10.0) -> None:
        if self.state == "dead":
            return
        self.expected_exit = True
        self.state = "stopping"
        for replica in self.replicas:  # first: one being placed by the replacer stops as unloaded
            replica.expected_exit, replica.closing = True, self.closing
        if self._replacer is not None:
            self._replacer.cancel()
        await asyncio.gather(*(replica.stop(grace) for replica in list(self.replicas)), return_exceptions=True)
        self._die()

    # -- calls -------------------------------------------------------------------------

    async def _pick(self) -> ReplicaClient:
        """The ready replica with the fewest calls for its size; while none is ready (one is
        being replaced), wait for one."""
        while True:
            ready = self._ready()
            if ready:
                return min(ready, key=lambda r: (r.pending / max(1, r.concurrency), r.pending, r.served))
            if self.state != "ready":
                if self.expected_exit:
                    raise unloaded(self.name)
                why = f" ({self.replacing_failed})" if self.replacing_failed else ""
                raise NotReady(f"Model '{self.name}' has no replica serving it{why}; the next request places it again.",
                               code="replica_died", headers={"Retry-After": "1"})
            self._keep_replicas()  # a replica is being placed, whatever happened before
            await self._changed.wait()

    def processes(self) -> list[WorkerClient]:
        return list(self._ready())  # a hung replica is killed alone, and replaced

    async def ping(self, timeout: float) -> dict[str, Any]:
        """The replicas' answers together (a replica that does not answer is left out: the
        watchdog pings each one itself)."""
        replicas = self._ready()
        pongs = await asyncio.gather(*(replica.ping(timeout) for replica in replicas), return_exceptions=True)
        answered = [pong for pong in pongs if isinstance(pong, dict)]
        if replicas and not answered:
            raise asyncio.TimeoutError()
        return {"running": sum(pong.get("running", 0) for pong in answered),
                "stalled_for": max((pong.get("stalled_for", 0.0) for pong in answered), default=0.0),
                "stats": merge_stats([pong.get("stats") or {} for pong in answered])}

    @asynccontextmanager
    async def call(self, request: Request) -> AsyncIterator[AsyncIterator[Event]]:
        replica = await self._pick()
        replica.served += 1
        self.last_used = time.monotonic()
        try:
            async with replica.call(request) as events:
                yield events
        finally:
            self.last_used = time.monotonic()

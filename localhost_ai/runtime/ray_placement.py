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
import functools
import logging
import time
import warnings
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any, AsyncIterator, Callable

import ray
from ray.exceptions import GetTimeoutError, RayError

from localhost_ai import metrics
from localhost_ai.config import ModelConfig
from localhost_ai.contract import Request
from localhost_ai.contract.events import Event
from localhost_ai.errors import APIError, BackendError, NotReady
from localhost_ai.runtime.client import WorkerClient
from localhost_ai.runtime.ray_replica import Replica
from localhost_ai.runtime.worker import WorkerProcess
from localhost_ai.settings import Settings

log = logging.getLogger(__name__)

NAMESPACE = "localhost_ai"
_REPLACE_FIRST_DELAY = 1.0
_REPLACE_MAX_DELAY = 30.0


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


def placement(settings: Settings) -> Callable[[ModelConfig, Callable[[WorkerClient], None]], WorkerClient]:
    """The manager's placement: each model a RayModel."""
    fetch = {"allow_private_urls": settings.allow_private_urls, "allow_file_uris": settings.allow_file_uris,
             "max_download_size": settings.max_download_size}
    return lambda config, on_exit: RayModel(config, on_exit, placement_timeout=settings.ray_placement_timeout,
                                            fetch=fetch)


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


class ReplicaClient(WorkerProcess):
    """One replica: a local worker process's calls, pings and loading over a Ray actor
    instead of a socket (the messages and their handling are the same)."""

    def __init__(self, config: ModelConfig, on_exit: Callable[[WorkerClient], None], actor_options: dict[str, Any],
                 placement_timeout: float, fetch: dict[str, Any]) -> None:
        super().__init__(config, on_exit)
        self.actor_options = actor_options
        self.placement_timeout = placement_timeout
        self.fetch = fetch
        self.placed_config: dict[str, Any] | None = None  # the config with its paths on the replica's node
        self.actor: Any = None
        self.where: dict[str, Any] = {}
        self.served = 0

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
                "served": self.served, "concurrency": self.concurrency}

    async def start(self) -> None:
        level = logging.getLevelName(logging.getLogger().getEffectiveLevel())
        try:
            self.actor = _actor_class().options(**self.actor_options).remote(level)
        except ValueError as exc:  # a resource or label Ray will not take
            self.state = "dead"
            raise BackendError(f"Model '{self.name}': Ray refuses its `resources`: {_short(exc)}",
                               code="invalid_resources") from None
        try:
            # Returns once Ray has placed the actor on a node and started it.
            self.where = await asyncio.wait_for(_awaitable(self.actor.where.remote()), self.placement_timeout)
            placed = await _awaitable(self.actor.place_files.remote(self.config.to_wire(), self.fetch))
            if "error" in placed:
                raise BackendError(f"Model '{self.name}': its files could not be put on node "
                                   f"{self.where.get('node_ip')} ({(self.node_id or '?')[:12]}): {placed['error']}",
                                   code="model_files_failed")
        except BaseException as exc:  # cancelled too: no actor is left waiting in the cluster
            ray.kill(self.actor)
            self.state = "dead"
            if isinstance(exc, (asyncio.TimeoutError, GetTimeoutError)):
                raise NotReady(f"Model '{self.name}': no node of the Ray cluster had room for a replica within "
                               f"{self.placement_timeout:g} s (--ray-placement-timeout); the nodes that could hold "
                               f"one are busy with other work.", code="no_node_free") from None
            if isinstance(exc, RayError):
                raise BackendError(f"Model '{self.name}': its replica could not start: {_short(exc)}",
                                   code="replica_failed") from None
            raise
        self.placed_config = placed
        log.info("model %s: replica pid %s on node %s (%s); loading %s", self.name, self.pid, self.where.get("node_ip"),
                 (self.node_id or "")[:12], self.config.model_path.name)
        seconds = await self._load([self._read(self.actor.messages.remote())])
        log.info("model %s: replica on node %s loaded in %.2fs", self.name, self.where.get("node_ip"), seconds)

    def _config_to_load(self) -> dict[str, Any]:
        return self.placed_config or self.config.to_wire()

    def _send(self, message: dict[str, Any]) -> None:
        if self.actor is None or self.state in ("dead", "starting"):
            raise BackendError(f"Model '{self.name}': its replica is not running.", code="worker_gone")
        self.actor.handle.remote(message)

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
        with contextlib.suppress(Exception):
            ray.kill(self.actor)  # its process, whatever state it is in
        where = f"on node {self.where.get('node_ip')} ({(self.node_id or '?')[:12]})"
        if self.expected_exit:
            error: APIError = BackendError(f"Model '{self.name}' was unloaded while this request waited.",
                                           code="model_unloaded")
        else:
            reason = self.death_reason or (_short(failure) if failure else "ended unexpectedly")
            log.error("model %s: replica %s died: %s", self.name, where, reason)
            error = NotReady(f"Model '{self.name}': its replica {where} stopped ({reason}). The model is served from "
                             f"its other replicas, or a new one; try again.", code="replica_died",
                             headers={"Retry-After": "1"})
        self._gone(error)

    def kill(self, reason: str) -> None:
        if self.actor is not None and self.state != "dead":
            self.death_reason = reason
            ray.kill(self.actor)

    async def stop(self, grace: float = 10.0) -> None:
        if self.actor is None or self.state == "dead":
            return
        if self.state == "starting":  # still waiting for a node: nothing loaded to free
            ray.kill(self.actor)
            self.state = "dead"
            return
        self.expected_exit = True
        self.state = "stopping"
        with contextlib.suppress(APIError):
            self._send({"op": "shutdown"})
        try:
            await asyncio.wait_for(self.exited.wait(), timeout=grace)
        except asyncio.TimeoutError:
            log.warning("model %s: replica on node %s did not stop in %.0fs; killing it", self.name,
                        self.where.get("node_ip"), grace)
            ray.kill(self.actor)
            await self.exited.wait()


@functools.cache
def _actor_class() -> Any:
    return ray.remote(Replica)


def _awaitable(ref: Any) -> Any:
    async def wait() -> Any:
        return await ref
    return wait()


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


class RayModel(WorkerClient):
    """A model served by `config.replicas` replicas in the cluster: each call goes to the
    replica holding the fewest calls for its size; a replica that dies fails its own calls
    (a 503 naming the model) and is replaced in the background."""

    def __init__(self, config: ModelConfig, on_exit: Callable[[WorkerClient], None], *,
                 placement_timeout: float = 120.0, fetch: dict[str, Any] | None = None) -> None:
        amounts, labels = needs(config)
        if config.threads is None:  # neither the YAML nor --threads: as many as the replica reserves
            config = replace(config, threads=max(1, round(amounts.get("CPU", 1))))
        super().__init__(config, on_exit)
        self.placement_timeout = placement_timeout
        self.fetch = fetch or {}
        self.replicas: list[ReplicaClient] = []
        self._changed = asyncio.Event()
        self._counted_nodes: set[str] = set()
        self._replacer: asyncio.Task | None = None
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
        return {"replicas": [replica.describe() for replica in self.replicas], "replicas_wanted": self.config.replicas}

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
        await check_fits(self.config)
        self.state = "loading"
        results = await asyncio.gather(*(self._add() for _ in range(self.config.replicas)), return_exceptions=True)
        failures = [result for result in results if isinstance(result, BaseException)]
        if failures:
            await asyncio.gather(*(replica.stop(grace=2) for replica in list(self.replicas)), return_exceptions=True)
            self.state = "dead"
            self._count_replicas()
            raise failures[0]
        self.state = "ready"
        self._update()
        self._keep_replicas()  # one that loaded and died while the others loaded

    async def _add(self) -> ReplicaClient:
        replica = ReplicaClient(self.config, self._replica_gone, self.actor_options, self.placement_timeout, self.fetch)
        self.replicas.append(replica)
        try:
            await replica.start()
        except BaseException:
            if replica in self.replicas:
                self.replicas.remove(replica)
            raise
        self._update()
        return replica

    def _replica_gone(self, replica: WorkerClient) -> None:
        if replica in self.replicas:
            self.replicas.remove(replica)  # type: ignore[arg-type]
        self._update()
        if not replica.expected_exit and self.state in ("loading", "ready"):
            metrics.WORKER_DEATHS.labels(self.name).inc()
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
                await check_fits(self.config)
                if self.state != "ready":  # stopped or killed meanwhile: nothing to place for
                    return
                await self._add()
                metrics.WORKER_RESTARTS.labels(self.name).inc()
                log.info("model %s: a new replica serves it (%d of %d)", self.name, len(self._ready()),
                         self.config.replicas)
                delay = _REPLACE_FIRST_DELAY
                continue
            except Exception as exc:  # a Ray error too: the loop must end in a replica or the model's end
                reason = exc.message if isinstance(exc, APIError) else _short(exc)
                if self.state != "ready":
                    return
                if not self._ready():
                    log.error("model %s: no replica left and none can be placed (%s)", self.name, reason)
                    self._die()
                    return
                log.warning("model %s: no new replica yet (%s); trying again in %.0f s", self.name, reason, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, _REPLACE_MAX_DELAY)

    def _die(self) -> None:
        if self.state == "dead":
            return
        self.state = "dead"
        if self._replacer is not None and self._replacer is not asyncio.current_task():
            self._replacer.cancel()  # its replica, mid-way, is killed as it is cancelled
        for replica in list(self.replicas):
            replica.kill("its model was stopped")
        self._count_replicas()
        self._changed.set()
        self.exited.set()
        self.on_exit(self)

    def kill(self, reason: str) -> None:
        for replica in list(self.replicas):
            replica.kill(reason)
        self._die()

    async def stop(self, grace: float = 10.0) -> None:
        if self.state == "dead":
            return
        self.expected_exit = True
        self.state = "stopping"
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
                raise NotReady(f"Model '{self.name}' has no replica serving it; the next request places it again.",
                               code="replica_died", headers={"Retry-After": "1"})
            self._keep_replicas()  # a replica is being placed, whatever happened before
            await self._changed.wait()

    async def ping(self, timeout: float) -> dict[str, Any]:
        replicas = self._ready()
        pongs = await asyncio.gather(*(replica.ping(timeout) for replica in replicas), return_exceptions=True)
        answered = [pong for pong in pongs if isinstance(pong, dict)]
        if replicas and not answered:
            raise asyncio.TimeoutError()
        stats: dict[str, Any] = {}
        for pong in answered:
            for key, value in (pong.get("stats") or {}).items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    stats[key] = stats.get(key, 0) + value
        return {"running": sum(pong.get("running", 0) for pong in answered),
                "stalled_for": max((pong.get("stalled_for", 0.0) for pong in answered), default=0.0),
                "stats": stats}

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

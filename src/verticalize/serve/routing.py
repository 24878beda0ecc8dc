"""Which model version answers a request (S7): a champion, an optional challenger that gets a
weighted share of users (sticky per user id), and hot reload of a newly promoted version.

A reload loads the new version beside the old one, swaps it in with one assignment (the
event loop is single-threaded, so a request sees either the old slot or the new one), and
retires the old slot only after every request that picked it has finished: nothing queued
or running is dropped.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import random
from collections.abc import Callable

import torch

from verticalize.config import ServeConfig
from verticalize.serve.batching import DynamicBatcher
from verticalize.serve.engines import Engine, load_engine, model_info
from verticalize.serve.targets import Resolved, resolve_target

log = logging.getLogger("verticalize.serve")
ROLES = ("champion", "challenger")


class ModelSlot:
    """One served version: its engine, its batcher and a count of requests using it."""

    def __init__(
        self, engine: Engine, resolved: Resolved, role: str, settings: ServeConfig, metrics=None
    ):
        self.engine, self.resolved, self.role = engine, resolved, role
        self.metrics = metrics
        self.batcher = DynamicBatcher(
            engine.run_batch,
            settings.max_batch_size,
            settings.max_wait_ms,
            settings.max_queue,
            on_batch=self._observe_batch,
            on_depth=self._observe_depth,
            name=engine.version,
            max_batch_tokens=settings.max_batch_tokens,
            length_buckets=(
                engine.length_buckets()
                if settings.length_buckets is None
                else settings.length_buckets
            ),
            # the worker thread runs on the engine's intra-op thread count
            initializer=(
                functools.partial(torch.set_num_threads, engine.threads) if engine.threads else None
            ),
        )
        self.in_flight = 0
        self._idle: asyncio.Event | None = None

    @property
    def version(self) -> str:
        return self.engine.version

    def _observe_batch(self, key, size: int) -> None:
        if self.metrics is not None:
            self.metrics.observe_batch(self.version, self.engine.task, size)

    def _observe_depth(self, depth: int) -> None:
        if self.metrics is not None:
            self.metrics.set_queue_depth(self.version, depth)

    def publish(self) -> None:
        """Tell /metrics this version is served, in which role, with which test scores."""
        if self.metrics is not None:
            main, acc = self.engine.test_metric()
            self.metrics.set_model(self.version, self.engine.task, self.role, main, acc)

    def acquire(self) -> ModelSlot:
        self.in_flight += 1
        return self

    def release(self) -> None:
        self.in_flight -= 1
        if self.in_flight == 0 and self._idle is not None:
            self._idle.set()

    async def retire(self) -> None:
        """Wait for the requests that picked this slot, drain the batcher, free the model."""
        self._idle = asyncio.Event()
        if self.in_flight > 0:
            await self._idle.wait()
        await self.batcher.close()
        self.engine.close()
        log.info("retired model version %s (%s)", self.version, self.role)


def user_bucket(user: str) -> float:
    """A stable number in [0, 1) for a user id: the same user always lands on one side."""
    return (
        int.from_bytes(hashlib.sha256(user.encode("utf-8", "surrogatepass")).digest()[:8]) / 2**64
    )


class Router:
    """Champion plus an optional challenger that gets `weight` of the users."""

    def __init__(
        self, champion: ModelSlot, challenger: ModelSlot | None = None, weight: float = 0.0
    ):
        self.champion, self.challenger, self.weight = champion, challenger, weight

    def slots(self) -> list[ModelSlot]:
        return [s for s in (self.champion, self.challenger) if s is not None]

    def slot(self, role: str) -> ModelSlot | None:
        return self.champion if role == "champion" else self.challenger

    def pick(self, user: str | None = None, model: str | None = None) -> ModelSlot:
        """The slot for a request: the version named in `model` if one is served under that
        name, else the challenger for a `weight` share of users (sticky when `user` is given,
        random otherwise), else the champion. The caller must `release()` it."""
        for s in self.slots():
            if model and model == s.version:
                return s.acquire()
        if self.challenger is None or self.weight <= 0:
            return self.champion.acquire()
        share = user_bucket(user) if user else random.random()
        return (self.challenger if share < self.weight else self.champion).acquire()

    def swap(self, role: str, new: ModelSlot) -> ModelSlot | None:
        """Put `new` in `role` at once; returns the slot it replaced."""
        old = self.slot(role)
        if role == "champion":
            self.champion = new
        else:
            self.challenger = new
        return old


Loader = Callable[[Resolved, str], ModelSlot]


class Reloader:
    """Hot reload: on request (POST /admin/reload) or when the registry alias a slot was
    resolved from points at another version (polled every `interval_s`)."""

    def __init__(
        self, router: Router, load_slot: Loader, tracking_uri: str | None, interval_s: float
    ):
        self.router, self.load_slot = router, load_slot
        self.tracking_uri, self.interval_s = tracking_uri, interval_s
        self._lock = asyncio.Lock()
        self._retiring: set[asyncio.Task] = set()

    async def reload(
        self, role: str = "champion", target: str | None = None, force: bool = False
    ) -> dict:
        """Load `target` (default: what `role` was started from, resolved again) and swap it
        in if its version differs (or `force`). Returns {"role", "from", "to", "changed"}."""
        async with self._lock:  # one reload at a time; a second waits and sees the result
            current = self.router.slot(role)
            if target is None and current is None:
                raise LookupError(f"no {role} is served, so there is nothing to reload")
            resolved = await asyncio.to_thread(
                resolve_target, target or current.resolved.target, self.tracking_uri
            )
            if current is not None and not force and not _changed(current, resolved):
                return {
                    "role": role,
                    "from": current.version,
                    "to": current.version,
                    "changed": False,
                }
            new = await asyncio.to_thread(self.load_slot, resolved, role)
            new.batcher.start()
            old = self.router.swap(role, new)
            new.publish()
            log.info("%s now serves %s (was %s)", role, new.version, old and old.version)
            if old is not None:
                task = asyncio.get_running_loop().create_task(self._retire(old))
                self._retiring.add(task)
                task.add_done_callback(self._retiring.discard)
            return {"role": role, "from": old and old.version, "to": new.version, "changed": True}

    async def _retire(self, old: ModelSlot) -> None:
        await old.retire()
        served = {s.version for s in self.router.slots()}
        if old.metrics is not None and old.version not in served:
            old.metrics.remove_model(old.version)

    async def poll(self) -> None:
        """Every interval, reload slots whose registry alias moved (runs until cancelled)."""
        from verticalize import registry

        while True:
            await asyncio.sleep(self.interval_s)
            for slot in self.router.slots():
                r = slot.resolved
                if not r.registry_alias:
                    continue
                try:
                    now = await asyncio.to_thread(
                        registry.alias_version, r.registry_name, r.registry_alias, self.tracking_uri
                    )
                    if now is not None and f"{r.registry_name}/{now}" != r.registry_version:
                        await self.reload(slot.role)
                except Exception as e:  # a registry hiccup must not stop serving
                    log.warning("reload check of %s failed: %s", r.target, e)

    async def wait_retired(self) -> None:
        """Wait until every replaced slot has drained (for shutdown and tests)."""
        while self._retiring:
            await asyncio.gather(*list(self._retiring), return_exceptions=True)


def _changed(slot: ModelSlot, resolved: Resolved) -> bool:
    if (
        resolved.folder != slot.resolved.folder
        or resolved.registry_version != slot.resolved.registry_version
    ):
        return True
    return str(model_info(resolved.folder).get("version") or slot.version) != slot.version


def make_loader(settings: ServeConfig, metrics=None) -> Loader:
    """A function that loads a resolved target into a slot (runs in a worker thread)."""

    def load(resolved: Resolved, role: str) -> ModelSlot:
        engine = load_engine(
            resolved.folder,
            resolved.task,
            settings.runtime,
            resolved.registry_version,
            settings.threads,
        )
        engine.warm_up()  # a hot-reloaded version answers its first request at full speed
        return ModelSlot(engine, resolved, role, settings, metrics)

    return load

"""A dependency graph of API calls run at the graph's own parallelism: the deploy floors' engine.

Each step starts as soon as the steps it depends on are done (one thread per step, so nothing
waits for a free worker); tear-down runs the graph backwards, each step once every step that
depended on it is gone. A step records what it made as soon as the API returns it (before any
wait), so a failure anywhere still leaves a complete list to delete.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

Delete = Callable[[Any], None]


class Made:
    """What each step made (its handle: an id, an object), filled in as the API answers."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._handles: dict[str, Any] = {}

    def bind(self, key: str) -> Callable[[Any], None]:
        def record(handle: Any) -> None:
            with self._lock:
                self._handles[key] = handle

        return record

    def __getitem__(self, key: str) -> Any:
        with self._lock:
            return self._handles[key]

    def get(self, key: str) -> Any:
        with self._lock:
            return self._handles.get(key)

    def keys(self) -> list[str]:
        with self._lock:
            return list(self._handles)


@dataclass(frozen=True)
class Step:
    key: str
    # The Pulumi type token of the resource this step stands for; "" for a look-up (a data
    # source or a name the provider resolves), which is read but neither counted nor deleted.
    kind: str
    deps: tuple[str, ...]
    create: Callable[[Made, Callable[[Any], None]], None]
    delete: Delete | None = None


@dataclass
class Graph:
    steps: dict[str, Step] = field(default_factory=dict)

    def add(self, step: Step) -> None:
        if step.key in self.steps:
            raise ValueError(f"step {step.key} twice")
        missing = [d for d in step.deps if d not in self.steps]
        if missing:
            raise ValueError(f"step {step.key} depends on unknown {missing}")
        self.steps[step.key] = step

    def kinds(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for step in self.steps.values():
            if step.kind:
                counts[step.kind] = counts.get(step.kind, 0) + 1
        return counts


def _run(
    order: Mapping[str, tuple[str, ...]], work: Callable[[str], None]
) -> dict[str, BaseException]:
    """Run `work(key)` for every key once all of `order[key]` are done; the failures by key.
    A key whose prerequisite failed is not run (it fails with that reason)."""
    failures: dict[str, BaseException] = {}
    lock = threading.Lock()
    futures: dict[str, Future[None]] = {}
    with ThreadPoolExecutor(max_workers=max(1, len(order))) as pool:

        def job(key: str) -> None:
            for before in order[key]:
                try:
                    futures[before].result()
                except BaseException as err:
                    with lock:
                        failures.setdefault(key, RuntimeError(f"{before} failed: {err}"))
                    raise
            try:
                work(key)
            except BaseException as err:
                with lock:
                    failures[key] = err
                raise

        # Submitted in an order where every prerequisite's future exists before its users run.
        for key in _topological(order):
            futures[key] = pool.submit(job, key)
        for future in futures.values():
            future.exception()
    return failures


def _topological(order: Mapping[str, tuple[str, ...]]) -> list[str]:
    done: list[str] = []
    seen: set[str] = set()

    def visit(key: str) -> None:
        if key in seen:
            return
        seen.add(key)
        for before in order[key]:
            visit(before)
        done.append(key)

    for key in order:
        visit(key)
    return done


def create(graph: Graph, made: Made) -> tuple[float, dict[str, BaseException]]:
    """Every step, each once its dependencies exist: (seconds, failures)."""
    started = time.monotonic()
    failures = _run(
        {key: step.deps for key, step in graph.steps.items()},
        lambda key: graph.steps[key].create(made, made.bind(key)),
    )
    return time.monotonic() - started, failures


def destroy(graph: Graph, made: Made) -> tuple[float, dict[str, BaseException]]:
    """Delete what `made` holds, each once whatever depended on it is gone; steps that made
    nothing are skipped. A failed deletion does not stop the others that do not depend on it."""
    users: dict[str, list[str]] = {key: [] for key in graph.steps}
    for key, step in graph.steps.items():
        for dep in step.deps:
            users[dep].append(key)
    started = time.monotonic()

    def delete(key: str) -> None:
        step = graph.steps[key]
        handle = made.get(key)
        if step.delete is not None and handle is not None:
            step.delete(handle)

    failures = _run({key: tuple(users[key]) for key in graph.steps}, delete)
    return time.monotonic() - started, failures


def each(graph: Graph, made: Made, work: Callable[[Step, Any], None]) -> float:
    """`work(step, handle)` for every resource step at once (no order): a read of each."""
    started = time.monotonic()
    keys = [k for k, s in graph.steps.items() if s.kind and made.get(k) is not None]
    with ThreadPoolExecutor(max_workers=max(1, len(keys))) as pool:
        for future in [pool.submit(work, graph.steps[k], made[k]) for k in keys]:
            future.result()
    return time.monotonic() - started

"""Batch work fanned out on Ray: a local Ray started here (`auto`) or a cluster joined by its
address, rows split into blocks, each block run by one of a fixed set of workers that opened
their state once (a model, a dataset) with torch's threads pinned, results gathered as blocks
finish or in order. Ray is imported only here, and only when one of these is called: it is an
optional extra (`pip install .[ray]`).

    with connect(RayTarget(address="auto", workers=2)) as workers:
        with WorkerPool(partial(open_scorer, spec), workers) as pool:
            for index, out in pool.run(score_block, split(user_rows, 256)):   # as they finish
                journal(out)
            ranked = pool.map(score_block, split(user_rows, 256))             # in block order

`open_state` and `work` must be picklable (module-level functions, or `functools.partial` of
them over picklable values): Ray ships them to the workers. A worker is a Ray actor holding
one CPU, so `workers` actors fill a local Ray started with as many CPUs; `per_worker` blocks run
at once in each (threads of one process: the cap per worker for I/O-bound work such as a hosted
LLM; 1 for CPU-bound work).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from ipaddress import ip_address
from types import FrameType, ModuleType
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

LOCAL = "auto"
T = TypeVar("T")
S = TypeVar("S")
B = TypeVar("B")
R = TypeVar("R")


class RayUnavailable(RuntimeError):
    """Ray is not installed, or the cluster at the address could not be joined."""


class WorkerFailed(RuntimeError):
    """A worker could not open its state or died (the message carries its traceback)."""


class RayTarget(BaseModel):
    """Where the work runs: `auto` starts a local Ray on this machine with `workers` CPUs
    (default: all of them); an address (host:port of a cluster's head, or ray://...) joins a
    cluster, whose CPUs bound the workers (default: all of them)."""

    model_config = ConfigDict(frozen=True)

    address: str = Field(LOCAL, min_length=1)
    workers: int | None = Field(None, ge=1, description="Workers (actors of one CPU each); a local Ray gets this many CPUs")
    threads: int = Field(1, ge=1, description="torch threads per worker: one keeps ties ordered as in one process")

    @property
    def local(self) -> bool:
        return self.address == LOCAL

    @field_validator("address")
    @classmethod
    def _address(cls, address: str) -> str:
        host, _, port = address.removeprefix("ray://").rpartition(":")
        if address != LOCAL and not (host and port.isdigit()):
            raise ValueError(f"a Ray address is auto, HOST:PORT or ray://HOST:PORT, not {address!r}")
        return address

    @property
    def host_port(self) -> tuple[str, int]:
        """The head's host and port (of a cluster's address)."""
        host, _, port = self.address.removeprefix("ray://").rpartition(":")
        return host.strip("[]"), int(port)

    @property
    def loopback(self) -> bool:
        """A local Ray, or a cluster whose head is on this machine's loopback."""
        if self.local:
            return True
        host = self.host_port[0]
        try:
            return host == "localhost" or ip_address(host).is_loopback
        except ValueError:
            return False


def check_reachable(target: RayTarget, timeout_s: float = 5.0) -> None:
    """Fail at once where nothing listens at a cluster's address (Ray itself would retry for
    minutes); a local target passes."""
    if target.local:
        return
    try:
        socket.create_connection(target.host_port, timeout=timeout_s).close()
    except OSError as err:
        raise RayUnavailable(f"no Ray cluster answers at {target.address}: {err}") from err


def import_ray(loopback: bool) -> ModuleType:
    """Ray, with its usage statistics off (nothing leaves the machine); for a Ray on this
    machine, bound to loopback, which Ray reads when it is first imported (Ray otherwise binds
    to the host's outward address even when alone)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if loopback:
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    try:
        import ray
    except ImportError as err:
        raise RayUnavailable("Ray is not installed: pip install 'toolrec[ray]'") from err
    return ray


@contextmanager
def connect(target: RayTarget) -> Iterator[int]:
    """Ray started or joined for the duration, and stopped or left at the end (a Ray already
    initialised in this process is reused and left running). Yields the number of workers. A
    SIGTERM inside leaves cleanly, so a killed run does not leave a local Ray behind."""
    ray = import_ray(target.loopback)
    owned = not ray.is_initialized()
    if owned:
        check_reachable(target)
        quiet: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING}
        try:
            if target.local:
                ray.init(num_cpus=target.workers or os.cpu_count() or 1, include_dashboard=False, **quiet)
            else:
                ray.init(address=target.address, **quiet)
        except (ConnectionError, ValueError, RuntimeError) as err:
            raise RayUnavailable(f"could not start or join Ray at {target.address!r}: {err}") from err
    workers = target.workers or max(int(ray.cluster_resources().get("CPU", 1)), 1)
    previous = _exit_on_sigterm() if owned else None
    try:
        yield workers
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if owned:
            ray.shutdown()


def _exit_on_sigterm() -> Any:
    """SIGTERM raises SystemExit, so that `finally` stops Ray (Python's default just dies)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def leave(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    return signal.signal(signal.SIGTERM, leave)


def split(rows: Sequence[T], size: int) -> list[Sequence[T]]:
    """`rows` in consecutive blocks of `size` (the last may be shorter), each a slice of `rows`
    (a list stays a list, a NumPy array an array)."""
    if size < 1:
        raise ValueError(f"block size must be at least 1, not {size}")
    return [rows[start : start + size] for start in range(0, len(rows), size)]


class _Worker:
    """A Ray actor's body: the state opened once, blocks run against it."""

    def __init__(self, open_state: Callable[[], Any], threads: int) -> None:
        import torch

        torch.set_num_threads(threads)
        self.state = open_state()

    def run(self, work: Callable[[Any, Any], Any], block: Any) -> Any:
        return work(self.state, block)


class WorkerPool(Generic[S]):
    """`workers` Ray actors, each holding the state `open_state()` built once, each running
    up to `per_worker` blocks at a time. Use inside `connect`; closing kills the actors."""

    def __init__(self, open_state: Callable[[], S], workers: int, *, per_worker: int = 1, threads: int = 1) -> None:
        if workers < 1 or per_worker < 1:
            raise ValueError("workers and per_worker must be at least 1")
        self.ray = import_ray(loopback=False)  # already imported by connect
        if not self.ray.is_initialized():
            raise RayUnavailable("a WorkerPool runs inside connect(...), which starts or joins Ray")
        actor = self.ray.remote(num_cpus=1, max_concurrency=per_worker)(_Worker)
        self.per_worker = per_worker
        self.actors = [actor.remote(open_state, threads) for _ in range(workers)]

    def __enter__(self) -> WorkerPool[S]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for actor in self.actors:
            self.ray.kill(actor)
        self.actors = []

    def run(self, work: Callable[[S, B], R], blocks: Sequence[B]) -> Iterator[tuple[int, R]]:
        """(index, result) of every block, as blocks finish; at most `per_worker` in flight
        on each worker, the next block going to the least busy one."""
        exceptions = self.ray.exceptions
        busy = dict.fromkeys(range(len(self.actors)), 0)
        flying: dict[Any, tuple[int, int]] = {}  # ref -> (block index, actor index)
        upcoming = iter(enumerate(blocks))
        done = False
        while True:
            while not done and min(busy.values()) < self.per_worker:
                nxt = next(upcoming, None)
                if nxt is None:
                    done = True
                    break
                which = min(busy, key=lambda a: busy[a])
                busy[which] += 1
                flying[self.actors[which].run.remote(work, nxt[1])] = (nxt[0], which)
            if not flying:
                return
            ready, _ = self.ray.wait(list(flying), num_returns=1)
            index, which = flying.pop(ready[0])
            busy[which] -= 1
            try:
                result = self.ray.get(ready[0])
            except exceptions.RayActorError as err:  # its state failed to open, or it died
                raise WorkerFailed(str(err)) from None
            yield index, result

    def map(self, work: Callable[[S, B], R], blocks: Sequence[B]) -> list[R]:
        """Every block's result, in the order of `blocks`."""
        out: dict[int, R] = dict(self.run(work, blocks))
        return [out[i] for i in range(len(blocks))]

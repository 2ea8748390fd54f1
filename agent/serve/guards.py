"""The server's guards and its error shape: OpenAI-style JSON errors, a request-body limit, a
per-client token bucket, and a bound on agent runs at once (with a queue and a time limit)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

T = TypeVar("T")


class APIError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        kind: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.code, self.param, self.headers = status, message, kind, code, param, headers or {}


def error_body(message: str, kind: str = "invalid_request_error", code: str | None = None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def error_response(error: APIError) -> JSONResponse:
    return JSONResponse(error_body(error.message, error.kind, error.code, error.param), status_code=error.status, headers=error.headers)


class BodyLimit:
    """Refuses request bodies over `limit` bytes with 413: at once when Content-Length says so,
    else while the body is read (chunked uploads)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        too_big = JSONResponse(error_body(f"the request body is larger than {self.limit} bytes", code="body_too_large"), status_code=413)
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            await too_big(scope, receive, send)
            return
        received = 0
        started = responded = False

        async def limited() -> Message:
            nonlocal received, responded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    if not started and not responded:
                        responded = True
                        await too_big(scope, receive, send)
                    # the app sees the client gone; whatever it answers is dropped below
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if responded:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited, guarded_send)
        except Exception:
            if not responded:
                raise


class RateLimiter:
    """A token bucket per client: `burst` tokens, refilled at `per_minute` a minute."""

    def __init__(self, per_minute: float, burst: int) -> None:
        self.rate, self.burst = per_minute / 60.0, float(burst)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, client: str) -> float:
        """0 when allowed, else the seconds until a token is free."""
        now = time.monotonic()
        with self._lock:
            tokens, then = self._buckets.get(client, (self.burst, now))
            tokens = min(self.burst, tokens + (now - then) * self.rate)
            if tokens >= 1.0:
                self._buckets[client] = (tokens - 1.0, now)
                return 0.0
            self._buckets[client] = (tokens, now)
            if len(self._buckets) > 10_000:  # forget idle clients
                self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < 600}
            return (1.0 - tokens) / self.rate


class RunLimiter:
    """At most `concurrency` agent runs at once, in worker threads; at most `queue` requests
    waiting for one (503 beyond); `timeout` seconds per run (504). A run that times out keeps its
    slot until its thread finishes, so the bound holds."""

    def __init__(self, concurrency: int, queue: int, timeout: float) -> None:
        self.semaphore = asyncio.Semaphore(concurrency)
        self.queue, self.timeout = queue, timeout
        self.waiting = 0
        self.executor = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="toolrec-agent")

    async def acquire(self) -> None:
        if self.semaphore.locked() and self.waiting >= self.queue:
            raise APIError(
                503, "the server is busy; try again shortly", kind="server_error", code="overloaded", headers={"Retry-After": "1"}
            )
        self.waiting += 1
        try:
            await self.semaphore.acquire()
        finally:
            self.waiting -= 1

    async def run_acquired(self, fn: Callable[[], T]) -> T:
        """Run `fn` in a worker thread on a slot already acquired; the slot is released when the
        thread finishes."""
        loop = asyncio.get_running_loop()
        try:
            future = loop.run_in_executor(self.executor, fn)
        except BaseException:
            self.semaphore.release()
            raise
        future.add_done_callback(lambda _: loop.call_soon_threadsafe(self.semaphore.release))
        try:
            return await asyncio.wait_for(asyncio.shield(future), self.timeout)
        except TimeoutError as exc:
            raise APIError(504, f"the recommendation took longer than {self.timeout:g} s", kind="server_error", code="timeout") from exc

    async def run(self, fn: Callable[[], T]) -> T:
        await self.acquire()
        return await self.run_acquired(fn)

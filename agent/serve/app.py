"""The HTTP face of the recommender (FastAPI): chat front-ends and other programs plug in here.

    app = create_app(ServerSettings(api_key="k"), agent_factory)
    uvicorn.run(app, host="127.0.0.1", port=8000)

- `POST /v1/chat/completions`: OpenAI-compatible, streaming (SSE chunks) or not. The session is
  the `user` field or the `X-Session-Id` header; a new session may be bound to a known dataset
  user with the `X-Toolrec-User` header or a `toolrec_user_id` body field, otherwise it starts
  cold (the person names titles they like). The reply's `toolrec` field carries the items.
- `POST /v1/chat/stream`: one turn as typed server-sent events, what the web page uses: a `step`
  event as each step of the agent finishes, then the reply's `text`, one `item` event per item,
  and `done` with the standing preferences as removable chips (or `error`).
- `GET /v1/sessions/{id}/preferences`, `POST /v1/sessions/{id}/preferences/remove`: the standing
  preferences as chips, and a typed removal of one (the page's chip click; no message is read).
- `POST /v1/recommend`: a `RecommendRequest` (plus k) in, a `Recommendation` out.
- `GET /v1/models`, `GET /healthz`, `GET|DELETE /v1/sessions/{id}`, the OpenAPI schema at
  `/openapi.json` (and `/docs`), and a small chat page at `/`.

Guards: a bearer key when one is configured (compared in constant time), a request-body limit
(413) enforced while reading, a message-length limit, a per-client token bucket (429 with
Retry-After), a bounded number of agent runs at once with a bounded queue (503 beyond it) and a
time limit per run (504). Agent runs happen in worker threads; errors come back as OpenAI-style
JSON, `{"error": {"message", "type", "param", "code"}}`, and the server keeps serving. Run slots
and token buckets are the process's: with several workers (`agent.serve.workers`) each has its
own, while sessions and the lock that keeps one session's turns apart are the session store's.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import Depends, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from agent.chat import Conversation, ConversationConfig, ConversationError, ConversationState, SessionConflict, TurnResult, UnknownUser
from agent.chat.store import SessionBusy, is_postgres_url
from agent.recommend import AgentFactory
from agent.request import RecommendError, RecommendRequest
from agent.serve.guards import APIError, BodyLimit, RateLimiter, RunLimiter, error_body, error_response
from agent.serve.openai import (
    ChatCompletion,
    ChatCompletionRequest,
    ChatTurnBody,
    Health,
    ModelCard,
    ModelList,
    RecommendBody,
    chunk,
    completion,
    pieces,
    sse,
)
from agent.serve.preferences import NotAPreference, Preferences, Removal, chips, removed
from agent.serve.progress import Step, observed, watching
from agent.state import Recommendation

log = logging.getLogger(__name__)


class ServerSettings(BaseSettings):
    """Every field can be set from the environment: TOOLREC_SERVE_API_KEY, TOOLREC_SERVE_PORT ..."""

    model_config = SettingsConfigDict(env_prefix="TOOLREC_SERVE_")

    host: str = "127.0.0.1"
    port: int = 8000
    api_key: SecretStr | None = Field(None, description="Bearer key required on /v1/*; none: open (loopback use)")
    model_name: str = "toolrec"
    sessions_db: Path | None = Field(None, description="SQLite file for conversation sessions; none: in memory")
    sessions_url: str | None = Field(
        None, description="postgresql:// URL: sessions in Postgres, shared by several workers or hosts (instead of sessions_db)"
    )
    max_body_bytes: int = Field(64 * 1024, ge=1024)
    max_message_chars: int = Field(2000, ge=1)
    max_messages: int = Field(100, ge=1)
    rate_per_minute: float = Field(120.0, gt=0, description="Sustained requests per minute per client")
    rate_burst: int = Field(30, ge=1, description="Requests a client may make at once")
    max_concurrency: int = Field(4, ge=1, description="Agent runs at once")
    max_queue: int = Field(64, ge=0, description="Requests waiting for a run slot before 503")
    request_timeout_s: float = Field(120.0, gt=0)

    @field_validator("sessions_url")
    @classmethod
    def _postgres(cls, url: str | None) -> str | None:
        if url is not None and not is_postgres_url(url):
            raise ValueError("sessions_url must be a postgresql:// URL (a SQLite file goes in sessions_db)")
        return url


# --- the app -----------------------------------------------------------------------------------

WEB = "web"


def _web_file(name: str) -> str:
    return resources.files("agent.serve").joinpath(WEB, name).read_text(encoding="utf-8")


def create_app(
    settings: ServerSettings | None = None, agent_factory: AgentFactory | None = None, *, conversation: Conversation | None = None
) -> FastAPI:
    """The app over `agent_factory` (called per turn: a test hands each turn a fresh scripted
    agent; a deployment shares one). `conversation` overrides the session store."""
    settings = settings or ServerSettings()
    if conversation is None:
        if agent_factory is None:
            raise ValueError("create_app needs an agent_factory or a conversation")
        conversation = Conversation.open(
            agent_factory,
            db=settings.sessions_url or settings.sessions_db,
            config=ConversationConfig(max_message_chars=settings.max_message_chars),
            connections=settings.max_concurrency + 2,  # the turns, and a removal or a reset meanwhile
            lock_timeout_s=settings.request_timeout_s,
        )
    factory = agent_factory or conversation.agent_factory
    conversation.agent_factory = observed(conversation.agent_factory)  # the stream reports the agent's steps
    toolbox = conversation.toolbox
    limiter_box: dict[str, RunLimiter] = {}
    rate = RateLimiter(settings.rate_per_minute, settings.rate_burst)
    created = int(time.time())
    key = settings.api_key.get_secret_value() if settings.api_key else None
    llm_name = getattr(factory().llm, "name", "?")

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        limiter_box["run"] = RunLimiter(settings.max_concurrency, settings.max_queue, settings.request_timeout_s)
        yield
        limiter_box["run"].executor.shutdown(wait=False, cancel_futures=True)

    def limiter() -> RunLimiter:
        if "run" not in limiter_box:  # used without the lifespan (a bare TestClient)
            limiter_box["run"] = RunLimiter(settings.max_concurrency, settings.max_queue, settings.request_timeout_s)
        return limiter_box["run"]

    app = FastAPI(
        title="toolrec",
        version="0.1.0",
        description="An agentic, tool-using LLM recommender: OpenAI-compatible chat, a recommend endpoint, sessions.",
        lifespan=lifespan,
    )
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.state.conversation = conversation
    app.state.settings = settings

    # --- error handlers ---

    @app.exception_handler(APIError)
    async def _api_error(_: Request, exc: APIError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(SessionBusy)
    async def _busy(_: Request, exc: SessionBusy) -> JSONResponse:
        return error_response(busy(exc))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error: %s", exc)
        return error_response(APIError(500, "internal error; the server keeps serving", kind="server_error", code="internal_error"))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = exc.errors()
        if any(p.get("type") == "json_invalid" for p in problems):
            return error_response(APIError(400, "the request body is not valid JSON", code="json_invalid"))
        first = problems[0] if problems else {}
        param = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
        message = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ())[1:]) or 'body'}: {e.get('msg')}" for e in problems[:5])
        return error_response(APIError(422, message or "invalid request", code="invalid_request", param=param))

    # --- dependencies ---

    def client_of(request: Request, authorization: str | None) -> str:
        if authorization:
            return "key:" + authorization[-16:]
        return "ip:" + (request.client.host if request.client else "unknown")

    async def guard(request: Request, authorization: str | None = Header(None)) -> None:
        if key is not None:
            scheme, _, given = (authorization or "").partition(" ")
            if scheme.lower() != "bearer" or not secrets.compare_digest(given.strip().encode(), key.encode()):
                raise APIError(
                    401,
                    "a valid API key is required: Authorization: Bearer <key>",
                    code="invalid_api_key",
                    headers={"WWW-Authenticate": "Bearer"},
                )
        wait = rate.take(client_of(request, authorization))
        if wait > 0:
            raise APIError(
                429,
                f"rate limit reached; retry in {wait:.1f} s",
                kind="rate_limit_error",
                code="rate_limited",
                headers={"Retry-After": str(max(1, int(wait + 0.999)))},
            )

    # --- routes ---

    @app.get("/healthz", response_model=Health, tags=["meta"])
    def healthz() -> Health:
        return Health(
            dataset=toolbox.dataset.name,
            items=toolbox.num_items,
            users=len(toolbox.dataset.user_ids),
            llm=llm_name,
            sessions=conversation.store.kind,
        )

    @app.get("/v1/models", response_model=ModelList, dependencies=[Depends(guard)], tags=["openai"])
    def models() -> ModelList:
        return ModelList(data=[ModelCard(id=settings.model_name, created=created)])

    @app.post("/v1/recommend", response_model=Recommendation, dependencies=[Depends(guard)], tags=["recommend"])
    async def recommend(body: RecommendBody) -> Recommendation:
        if body.user_id is not None and body.user_id not in toolbox.dataset.user_index:
            raise APIError(404, f"unknown user {body.user_id!r}", code="unknown_user", param="user_id")

        def run() -> Recommendation:
            agent = factory().with_k(body.k)
            request = RecommendRequest.model_validate(body.model_dump(include=set(RecommendRequest.model_fields)))
            return agent.recommend(request)

        try:
            result = await limiter().run(run)
        except RecommendError as exc:
            raise APIError(422, str(exc), code="cannot_recommend") from exc
        return result if body.include_trace else result.model_copy(update={"trace": []})

    @app.get("/v1/sessions/{session_id}", response_model=ConversationState, dependencies=[Depends(guard)], tags=["sessions"])
    def get_session(session_id: str) -> ConversationState:
        state = conversation.state(session_id)
        if state is None:
            raise APIError(404, f"no session {session_id!r}", code="unknown_session")
        return state

    def preferences_of(session: ConversationState) -> Preferences:
        return Preferences(constraints=session.constraints, chips=chips(session.constraints, toolbox.spoken_title))

    @app.get("/v1/sessions/{session_id}/preferences", response_model=Preferences, dependencies=[Depends(guard)], tags=["sessions"])
    def get_preferences(session_id: str) -> Preferences:
        return preferences_of(get_session(session_id))

    @app.post("/v1/sessions/{session_id}/preferences/remove", response_model=Preferences, dependencies=[Depends(guard)], tags=["sessions"])
    def remove_preference(session_id: str, removal: Removal) -> Preferences:
        """Drop one standing preference (a chip's removal): the next turn runs without it."""
        get_session(session_id)  # 404 for a session that does not exist

        def drop(session: ConversationState) -> None:
            session.constraints = removed(session.constraints, removal)

        try:
            return preferences_of(conversation.update(session_id, drop))
        except NotAPreference as exc:
            raise APIError(404, str(exc), code="unknown_preference", param="kind") from exc

    @app.delete("/v1/sessions/{session_id}", status_code=204, dependencies=[Depends(guard)], tags=["sessions"])
    def delete_session(session_id: str) -> Response:
        conversation.reset(session_id)
        return Response(status_code=204)

    @app.post(
        "/v1/chat/completions",
        response_model=ChatCompletion,
        dependencies=[Depends(guard)],
        tags=["openai"],
        responses={200: {"content": {"text/event-stream": {}}, "description": "A ChatCompletion, or SSE chunks when stream is true"}},
    )
    async def chat_completions(
        body: ChatCompletionRequest,
        x_session_id: str | None = Header(None, max_length=200),
        x_toolrec_user: str | None = Header(None, max_length=100),
    ) -> Any:
        if len(body.messages) > settings.max_messages:
            raise APIError(
                413,
                f"too many messages ({len(body.messages)}; at most {settings.max_messages})",
                code="too_many_messages",
                param="messages",
            )
        users = [m for m in body.messages if m.role == "user"]
        if not users:
            raise APIError(400, "no user message: the last message must come from the user", code="no_user_message", param="messages")
        message = users[-1].text().strip()
        if not message:
            raise APIError(
                400,
                "the user message is empty: say what you would like, or name a few titles you like",
                code="empty_message",
                param="messages",
            )
        if len(message) > settings.max_message_chars:
            raise APIError(
                413,
                f"the user message is too long ({len(message)} characters; at most {settings.max_message_chars})",
                code="message_too_long",
                param="messages",
            )
        user_id = x_toolrec_user or body.toolrec_user_id
        session_id = x_session_id or body.user
        ephemeral = session_id is None
        if session_id is None:
            session_id = f"anon-{uuid.uuid4().hex}"
        if user_id is not None and user_id not in toolbox.dataset.user_index:
            raise APIError(404, f"unknown user {user_id!r}", code="unknown_user", param="toolrec_user_id")
        current = conversation.state(session_id)
        if current is not None and current.belongs_to_other(user_id):
            raise APIError(409, f"session {session_id!r} belongs to another user; start another session", code="session_conflict")
        earlier = [m.text() for m in users[:-1]] if ephemeral else []

        def run() -> TurnResult:
            try:
                if earlier:  # no session: what the earlier messages asked for still counts
                    conversation.prime(session_id, earlier, user_id=user_id)
                return conversation.turn(session_id, message, user_id=user_id)
            finally:
                if ephemeral:
                    conversation.reset(session_id)

        completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        headers = {"X-Session-Id": session_id}
        if not body.stream:
            result = await _turn(limiter(), run)
            return JSONResponse(completion(completion_id, settings.model_name, message, result).model_dump(mode="json"), headers=headers)

        run_limiter = limiter()
        await run_limiter.acquire()  # 503 before the stream starts, not inside it

        async def events() -> AsyncIterator[str]:
            yield sse(chunk(completion_id, settings.model_name, {"role": "assistant", "content": ""}))
            try:
                result = await _turn(run_limiter, run, acquired=True)
            except APIError as exc:
                yield sse(error_body(exc.message, exc.kind, exc.code, exc.param))
                yield "data: [DONE]\n\n"
                return
            except Exception as exc:  # the stream has begun: report in-band
                log.exception("unexpected error in a stream: %s", exc)
                yield sse(error_body("internal error; the server keeps serving", "server_error", "internal_error"))
                yield "data: [DONE]\n\n"
                return
            for line in pieces(result.reply):
                yield sse(chunk(completion_id, settings.model_name, {"content": line}))
            final = chunk(completion_id, settings.model_name, {}, finish="stop")
            final["toolrec"] = result.model_dump(mode="json")
            yield sse(final)
            yield "data: [DONE]\n\n"

        return StreamingResponse(
            events(), media_type="text/event-stream", headers={**headers, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        )

    @app.post(
        "/v1/chat/stream",
        dependencies=[Depends(guard)],
        tags=["chat"],
        responses={200: {"content": {"text/event-stream": {}}, "description": "step, text, item, done (or error) events"}},
    )
    async def chat_stream(body: ChatTurnBody) -> StreamingResponse:
        if len(body.message) > settings.max_message_chars:
            raise APIError(
                413,
                f"the message is too long ({len(body.message)} characters; at most {settings.max_message_chars})",
                code="message_too_long",
                param="message",
            )
        if body.user_id is not None and body.user_id not in toolbox.dataset.user_index:
            raise APIError(404, f"unknown user {body.user_id!r}", code="unknown_user", param="user_id")
        loop = asyncio.get_running_loop()
        steps: asyncio.Queue[Step] = asyncio.Queue()

        def report(step: Step) -> None:
            loop.call_soon_threadsafe(steps.put_nowait, step)

        def run() -> TurnResult:
            with watching(report):
                return conversation.turn(body.session_id, body.message, user_id=body.user_id)

        run_limiter = limiter()
        await run_limiter.acquire()  # 503 before the stream starts, not inside it

        async def events() -> AsyncIterator[str]:
            turn = asyncio.ensure_future(_turn(run_limiter, run, acquired=True))
            while not turn.done() or not steps.empty():
                waiter = asyncio.ensure_future(steps.get())
                await asyncio.wait({turn, waiter}, return_when=asyncio.FIRST_COMPLETED)
                if waiter.done():
                    yield event("step", waiter.result().model_dump())
                else:
                    waiter.cancel()
            try:
                result = turn.result()
            except APIError as exc:
                yield event("error", error_body(exc.message, exc.kind, exc.code, exc.param))
                return
            except Exception as exc:  # the stream has begun: report in-band
                log.exception("unexpected error in a stream: %s", exc)
                yield event("error", error_body("internal error; the server keeps serving", "server_error", "internal_error"))
                return
            # the reply's words, then its list item by item; a turn without items says why in its reply
            text = result.reply if not result.items else "\n".join(result.said)
            if text:
                yield event("text", {"text": text})
            for item in result.items:
                yield event("item", item.model_dump(mode="json"))
            session = conversation.state(body.session_id)
            done = result.model_dump(mode="json", exclude={"reply", "items"})
            if session is not None:
                done["preferences"] = preferences_of(session).model_dump(mode="json")
            yield event("done", done)

        return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> HTMLResponse:
        return HTMLResponse(_web_file("index.html"))

    @app.get("/app.js", include_in_schema=False)
    def app_js() -> Response:
        return Response(_web_file("app.js"), media_type="text/javascript")

    return app


async def _turn(limiter: RunLimiter, run: Callable[[], TurnResult], acquired: bool = False) -> TurnResult:
    try:
        return await (limiter.run_acquired(run) if acquired else limiter.run(run))
    except SessionBusy as exc:
        raise busy(exc) from exc
    except UnknownUser as exc:
        raise APIError(404, str(exc), code="unknown_user") from exc
    except SessionConflict as exc:
        raise APIError(409, str(exc), code="session_conflict") from exc
    except ConversationError as exc:
        raise APIError(400, str(exc), code="invalid_message") from exc
    except ValidationError as exc:
        raise APIError(422, str(exc), code="invalid_request") from exc


def busy(exc: SessionBusy) -> APIError:
    return APIError(503, str(exc), kind="server_error", code="session_busy", headers={"Retry-After": "1"})


def event(name: str, payload: dict[str, Any]) -> str:
    """One server-sent event with a name, so a client dispatches on the name, not the payload."""
    return f"event: {name}\ndata: {json.dumps(payload, ensure_ascii=False)}\n\n"


def serve(app: FastAPI, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info") -> None:
    uvicorn.run(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=5)


@contextmanager
def running(app: FastAPI, host: str = "127.0.0.1", startup_timeout: float = 30.0) -> Iterator[str]:
    """Serve `app` with uvicorn on a free loopback port in a background thread; yields the base
    URL and stops the server on exit (tests, benchmarks)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="toolrec-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the server did not start")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()

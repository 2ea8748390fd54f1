"""A Model Context Protocol server: desktop assistants and other agents use the recommender's
tools and the whole agent through MCP (the `mcp` SDK's MCPServer, formerly FastMCP).

    server = build_mcp_server(toolbox, agent_factory)
    server.run("stdio")                                   # or
    server.run("streamable-http", host="127.0.0.1", port=8765)

One MCP tool per registry tool, with the registry's own pydantic input schema (and the
catalogue's genres, attribute types and years named in it, as the agent's LLM sees them), run
through `call_tool`, so arguments are validated by the same models and errors come back as the
same typed `ToolError` JSON (with `isError` set). Plus `recommend`: the agent end to end, a
top-k list with a reason per item.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError as MCPToolError
from mcp.server.mcpserver.tools.base import Tool
from mcp.server.mcpserver.utilities.func_metadata import ArgModelBase, FuncMetadata
from mcp_types import ToolAnnotations
from pydantic import BaseModel, ConfigDict, Field, model_validator

from agent.chat import Conversation, ConversationError, ConversationState, SessionConstraints
from agent.recommend import AgentFactory
from agent.request import RecommendError, RecommendRequest
from agent.state import Recommendation
from tools.constraints import Filters
from tools.registry import TOOLS, call_tool, input_schema, openai_tools
from tools.schemas import UnknownValue
from tools.toolbox import Toolbox


class _RawArguments(ArgModelBase):
    """Hands the arguments through unchanged: the registry's own input model validates them
    in `call_tool`, so MCP callers get the same typed errors as the agent's LLM."""

    model_config = ConfigDict(extra="allow", arbitrary_types_allowed=True)

    def model_dump_one_level(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class RecommendInput(BaseModel):
    """Who the list is for and what they ask for."""

    model_config = ConfigDict(extra="forbid")
    user_id: str | None = Field(None, description="A known user's id")
    history: list[str] | None = Field(
        None, max_length=2000, description="Instead of user_id: items the person liked, ids or titles, oldest first"
    )
    request: str | None = Field(None, max_length=2000, description='What the person asks for, in words ("something funny from the 80s")')
    k: int | None = Field(None, ge=1, le=100, description="How many items (default: the server's)")
    exclude: list[str] = Field(default_factory=list, max_length=2000, description="Item ids never to recommend")
    genres: list[str] | None = Field(None, description="Only items with at least one of these genres")
    exclude_genres: list[str] | None = Field(None, description="No items with any of these genres")
    year_from: int | None = Field(None, description="Earliest release year")
    year_to: int | None = Field(None, description="Latest release year")

    @model_validator(mode="after")
    def _one_subject(self) -> RecommendInput:
        if self.user_id is not None and self.history is not None:
            raise ValueError("give exactly one of user_id and history (or neither, with a request: the catalogue's best under it)")
        if self.user_id is None and self.history is None and not self.request:
            raise ValueError("give exactly one of user_id and history, or a request alone")
        return self


def _error(message: str) -> MCPToolError:
    return MCPToolError(message)


def registry_tool(toolbox: Toolbox, name: str, schema: dict[str, Any]) -> Tool:
    spec = TOOLS[name]

    def run(**arguments: Any) -> str:
        result = call_tool(toolbox, name, arguments)
        if result.error is not None:
            raise _error(result.to_message())
        return result.to_message()

    return Tool(
        fn=run,
        name=name,
        title=name.replace("_", " "),
        description=spec.description,
        parameters=schema,
        fn_metadata=FuncMetadata(arg_model=_RawArguments),
        is_async=False,
        annotations=ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False),
    )


def wish(toolbox: Toolbox, agent_factory: AgentFactory, args: RecommendInput) -> dict[str, Any]:
    """A request in words, read as the conversation reads a first message (moods, years, titles,
    what the catalogue cannot say), in a session of its own that starts from the given user,
    history, exclusions and constraints; with no history, the catalogue's best under the wish."""
    liked = [toolbox.dataset.item(int(d)).id for d in toolbox.resolve_items(args.history, "history")] if args.history else []
    conversation = Conversation(lambda: agent_factory().with_k(args.k), toolbox)
    session = f"mcp-{uuid.uuid4().hex}"

    def start(state: ConversationState) -> None:
        state.user_id, state.liked, state.rejected = args.user_id, liked, list(args.exclude)
        state.constraints = SessionConstraints(
            genres=args.genres or [], exclude_genres=args.exclude_genres or [], year_from=args.year_from, year_to=args.year_to
        )

    conversation.update(session, start)
    result = conversation.turn(session, args.request or "", user_id=args.user_id)
    rec = conversation.last_recommendation(session)
    return {"items": items_of(rec) if rec else [], "said": result.said, "unread": result.unread, "error": result.error}


def items_of(rec: Recommendation) -> list[dict[str, Any]]:
    return [
        {"id": i.id, "title": i.title, "year": i.year, "attributes": i.attributes, "score": i.score, "reason": i.reason} for i in rec.items
    ]


def recommend_tool(toolbox: Toolbox, agent_factory: AgentFactory) -> Tool:
    def run(**arguments: Any) -> str:
        try:
            args = RecommendInput.model_validate(arguments)
        except ValueError as exc:
            raise _error(json.dumps({"error": {"code": "invalid_arguments", "message": str(exc)}})) from exc
        if args.request:
            try:
                return json.dumps(wish(toolbox, agent_factory, args), ensure_ascii=False)
            except (ConversationError, UnknownValue) as exc:
                raise _error(json.dumps({"error": {"code": "cannot_recommend", "message": str(exc)}})) from exc
        agent = agent_factory().with_k(args.k)
        constraints = Filters(genres=args.genres, exclude_genres=args.exclude_genres, year_from=args.year_from, year_to=args.year_to)
        request = RecommendRequest(
            user_id=args.user_id,
            history=args.history,
            request=args.request,
            exclude=args.exclude,
            constraints=constraints if constraints.model_dump(exclude_none=True) else None,
        )
        try:
            rec = agent.recommend(request)
        except RecommendError as exc:
            raise _error(json.dumps({"error": {"code": "cannot_recommend", "message": str(exc)}})) from exc
        return json.dumps(
            {"items": items_of(rec), "backfilled": rec.backfilled, "rounds": rec.rounds, "seconds": rec.seconds}, ensure_ascii=False
        )

    return Tool(
        fn=run,
        name="recommend",
        title="recommend",
        description="Recommend k items for a user (user_id, or history: items they liked) with the tool-using agent: "
        "a surrogate-user LLM probes retrieval tools under the given constraints; every item comes from a tool and has a reason. "
        "A request in words is read as the chat reads it (moods, years, titles named, what the catalogue cannot say, in `said`); "
        "with a request alone, the catalogue's best under it.",
        parameters=input_schema(RecommendInput),
        fn_metadata=FuncMetadata(arg_model=_RawArguments),
        is_async=False,
        annotations=ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=False, open_world_hint=False),
    )


def build_mcp_server(toolbox: Toolbox, agent_factory: AgentFactory, *, name: str = "toolrec") -> MCPServer:
    schemas = {spec["function"]["name"]: spec["function"]["parameters"] for spec in openai_tools(toolbox)}
    tools = [registry_tool(toolbox, tool, schemas[tool]) for tool in TOOLS]
    tools.append(recommend_tool(toolbox, agent_factory))
    return MCPServer(
        name=name,
        instructions=f"Recommender over {toolbox.dataset.name} ({toolbox.num_items} items). Use `recommend` for a finished list; "
        "lookup finds item ids by title; retrieve / semantic_search / similar_items / rank are the agent's own tools.",
        tools=tools,
        log_level="WARNING",
    )

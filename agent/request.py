"""What a caller asks the agent for: a request (whose list, what was asked, what is excluded or
imposed, calls to make up front), and the error raised when it cannot be served."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from tools.constraints import Filters

# How the menu's intents are weighed: llm (one option-scoring call), uniform (equal weights, the
# ablation), prior (the prior learned on validation users, RUN/intent_prior.json); neither of the
# last two calls an LLM.
MenuChoice = Literal["llm", "uniform", "prior"]
# Arguments that name whose history is read: the agent sets them, never the LLM.
AGENT_OWNED = ("user_id", "history")
# Arguments that are bookkeeping rather than choices, left out wherever a call is shown.
UNSHOWN = (*AGENT_OWNED, "exclude_ids")


class RecommendError(ValueError):
    """The request cannot be served (unknown user, empty history, ...); says why."""


def shown_arguments(arguments: dict[str, Any]) -> dict[str, Any]:
    """A tool call's arguments as shown to a person (the subject and exclusions left out)."""
    return {k: v for k, v in arguments.items() if k not in UNSHOWN}


class PlannedCall(BaseModel):
    """A tool call the caller (not the LLM) asks the agent to make up front, e.g. a conversation's
    "more like the second one" -> similar_items. It runs like an LLM-chosen probe: with the
    request's subject, exclusions and constraints imposed, and only if the tool is allowed."""

    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class RecommendRequest(BaseModel):
    """Who the list is for: a known user, or a raw history (ids or titles, oldest first)."""

    user_id: str | None = None
    history: list[str] | None = None
    request: str | None = Field(None, description="What the person asked for, in words (conversation)")
    exclude: list[str] = Field(default_factory=list, description="Item ids never to recommend (already shown, rejected)")
    constraints: Filters | None = Field(
        None,
        description="Hard constraints imposed on every retrieval tool call the agent makes (they narrow the LLM's arguments, never "
        "widen them)",
    )
    probes: list[PlannedCall] = Field(
        default_factory=list,
        description="Tool calls made up front for what the person asked by name; what they find leads the list (AgentConfig.lead_taste)",
    )

    own_share: float = Field(
        0.0,
        ge=0.0,
        le=0.5,
        description="Share of the list kept for the person's own top picks under the constraints, after the first of what their asks "
        "found (a wish that admits most of the catalogue: talking never does worse than not talking)",
    )

    menu_choice: MenuChoice | None = Field(
        None, description="How this request's intent menu is weighed (AgentConfig.menu_choice); None: as the agent is configured"
    )

    @model_validator(mode="after")
    def _one_subject(self) -> RecommendRequest:
        if (self.user_id is None) == (self.history is None):
            raise ValueError("give exactly one of user_id and history")
        return self

    def subject(self) -> dict[str, Any]:
        """The arguments that name the user in a tool call; the agent sets them, never the LLM."""
        return {"user_id": self.user_id} if self.user_id is not None else {"history": self.history}

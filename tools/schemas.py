"""What every tool shares at its boundary: the item records tools return with their scores and
provenance, the typed errors a caller (an LLM, a person, another agent) can act on, and lenient
field types for arguments an LLM writes (a bare string where a list is expected, a number
where an id string is expected).

Items are named by their dataset id (`Item.id`, the id in the source files) at this boundary;
dense integer ids never leave `tools`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

ErrorCode = Literal["unknown_tool", "invalid_arguments", "unknown_value", "no_match", "out_of_range", "unavailable"]

# An error lists at most this many valid values (a catalogue's users or items would swamp a
# prompt); its message says how many there are.
MAX_VALID = 50
MAX_K = 100


class ToolError(BaseModel):
    """Why a call failed, in terms the caller can fix: which argument, and what it may be."""

    code: ErrorCode
    message: str
    field: str | None = Field(None, description="The argument at fault")
    valid: list[str] | None = Field(None, description="Values the argument may take (or the closest ones)")
    minimum: float | None = None
    maximum: float | None = None


class ToolFailure(Exception):
    """The project's own error type for a tool call that cannot be served: it carries the
    `ToolError` that `call_tool` hands back in place of a stack trace."""

    code: ErrorCode = "invalid_arguments"

    def __init__(
        self,
        message: str,
        field: str | None = None,
        valid: list[str] | None = None,
        minimum: float | None = None,
        maximum: float | None = None,
    ) -> None:
        super().__init__(message)
        if valid is not None and len(valid) > MAX_VALID:
            message = f"{message} (showing {MAX_VALID} of {len(valid)} valid values)"
            valid = valid[:MAX_VALID]
        self.error = ToolError(code=self.code, message=message, field=field, valid=valid, minimum=minimum, maximum=maximum)


class InvalidArguments(ToolFailure):
    code = "invalid_arguments"


class UnknownValue(ToolFailure):
    """An attribute type, attribute value, variant, user or item the toolbox does not know."""

    code = "unknown_value"


class NoMatch(ToolFailure):
    """Constraints (or a search) that leave no item; `field` names the one that emptied it."""

    code = "no_match"


class OutOfRange(ToolFailure):
    code = "out_of_range"


class Unavailable(ToolFailure):
    """A resource the call needs cannot be had (e.g. no sentence encoder for text queries)."""

    code = "unavailable"


# --- lenient argument types ------------------------------------------------------------------


def _scalar_to_str(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return str(int(value)) if float(value).is_integer() else str(value)
    return value


def _as_str_list(value: Any) -> Any:
    """A lone value becomes a one-element list; numbers become strings (ids like 50)."""
    if value is None:
        return None
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        value = [value]
    if isinstance(value, list | tuple):
        return [_scalar_to_str(v) for v in value]
    return value


Id = Annotated[str, BeforeValidator(_scalar_to_str)]
StrList = Annotated[list[str], BeforeValidator(_as_str_list)]


class ToolInput(BaseModel):
    """Base of every tool's input: unknown argument names are refused (with the valid ones)
    rather than silently ignored."""

    model_config = ConfigDict(extra="forbid")


# --- what tools return ----------------------------------------------------------------------


class Provenance(BaseModel):
    tool: str
    variant: str | None = Field(None, description="Backbone variant or vector space that scored the item")
    criterion: str | None = Field(None, description="What rank ordered by")
    constraints: dict[str, Any] = Field(default_factory=dict, description="The constraints applied, as resolved")


class ScoredItem(BaseModel):
    id: str
    title: str
    year: int | None = None
    attributes: dict[str, list[str]] = Field(default_factory=dict)
    scores: dict[str, float] = Field(default_factory=dict)
    provenance: list[Provenance] = Field(default_factory=list)


class ItemsOutput(BaseModel):
    """A ranked list, best first."""

    items: list[ScoredItem]
    matched: int = Field(description="How many catalogue items satisfied the constraints before the top-k cut")
    notes: list[str] = Field(default_factory=list, description="Adjustments worth knowing (fewer matches than k, dropped ids)")

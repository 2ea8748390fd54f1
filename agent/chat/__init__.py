"""The conversation: records (`records`), the rule reader (`rules`), the session store and the
turn graph (`session`)."""

from agent.chat.records import (
    ConversationConfig,
    ConversationError,
    ConversationState,
    SessionConflict,
    SessionConstraints,
    ShownItem,
    Turn,
    TurnIntent,
    TurnResult,
    UnknownUser,
)
from agent.chat.rules import RuleReader
from agent.chat.session import Conversation

__all__ = [
    "Conversation", "ConversationConfig", "ConversationError", "ConversationState", "RuleReader",
    "SessionConflict", "SessionConstraints", "ShownItem", "Turn", "TurnIntent", "TurnResult", "UnknownUser",
]  # fmt: skip

"""The conversation: records (`records`), the rule reader (`rules`), what a message changes
(`steering`), and the session store with the turn graph (`session`)."""

from agent.chat import records
from agent.chat.records import *  # noqa: F403 (the records are the package's vocabulary)
from agent.chat.rules import RuleReader
from agent.chat.session import Conversation

__all__ = ["Conversation", "RuleReader", *records.__all__]

"""LLM clients behind one interface: an OpenAI-compatible endpoint, an embedded local model,
a scripted model for tests, and an on-disk reply cache that wraps any of them."""

from agent.llm.base import LLM, ChatMessage, LLMError, LLMReply, LLMTimeout, NoLLM, ToolCall, uses_llm

__all__ = ["LLM", "ChatMessage", "LLMError", "LLMReply", "LLMTimeout", "NoLLM", "ToolCall", "uses_llm"]

"""What an LLM reranker answers and how its answer is read, the same for the agent's `llm`
assembly and the evaluation's LLM-rerank baseline."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, Field


class RerankReply(BaseModel):
    items: list[int | str] = Field(min_length=1, description="Candidate numbers (or ids), best first")


def picked(reply: RerankReply, shown: Sequence[str]) -> list[str]:
    """The shown candidates the reply names, in its order: a number n (or its digits as text)
    is the n-th shown candidate, any other text counts only as a shown candidate's id; numbers out
    of range, unknown ids and repeats are dropped."""
    known = set(shown)
    out: list[str] = []
    for p in reply.items:
        text = str(p).strip()
        if text.isdigit() and 1 <= int(text) <= len(shown):
            choice = shown[int(text) - 1]
        elif text in known:
            choice = text
        else:
            continue
        if choice not in out:
            out.append(choice)
    return out

"""An on-disk reply cache around any LLM, so that evaluation reruns make no LLM call.
Option scorings are cached the same way when the wrapped backend can score."""

import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agent.llm.base import LLM, ChatMessage, LLMError, LLMReply
from agent.llm.scoring import OptionScorer, OptionScores


def cache_key(
    model: str,
    messages: Sequence[ChatMessage],
    tools: list[dict[str, Any]] | None,
    max_tokens: int,
    temperature: float,
    seed: int,
    json_schema: dict[str, Any] | None = None,
) -> str:
    # The timeout is left out: it bounds how long a reply may take, not what it says.
    payload: dict[str, Any] = {
        "model": model,
        "messages": [m.model_dump(mode="json") for m in messages],
        "tools": tools,
        "max_tokens": max_tokens,
        "temperature": temperature,
        "seed": seed,
    }
    # Only when set, so that the keys of replies cached before schemas existed still match.
    if json_schema is not None:
        payload["json_schema"] = json_schema
    return _digest(payload)


def scoring_key(model: str, messages: Sequence[ChatMessage], options: Sequence[str], orderings: int) -> str:
    payload = {
        "kind": "score_options",
        "model": model,
        "messages": [m.model_dump(mode="json") for m in messages],
        "options": list(options),
        "orderings": orderings,
    }
    return _digest(payload)


def _digest(payload: dict[str, Any]) -> str:
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class CachedLLM:
    """Wraps `inner`; a hit returns the stored reply with cached=True and calls nothing.
    Only replies are stored, never errors, so a timeout is retried on the next run."""

    def __init__(self, inner: LLM, cache_dir: Path) -> None:
        self.inner = inner
        self.name = inner.name
        self.cache_dir = cache_dir
        self.hits = 0
        self.misses = 0

    def _path(self, key: str) -> Path:
        return self.cache_dir / key[:2] / f"{key}.json"

    def chat(
        self,
        messages: Sequence[ChatMessage],
        *,
        tools: list[dict[str, Any]] | None = None,
        max_tokens: int = 256,
        temperature: float = 0.0,
        seed: int = 0,
        timeout: float | None = None,
        json_schema: dict[str, Any] | None = None,
    ) -> LLMReply:
        key = cache_key(self.name, messages, tools, max_tokens, temperature, seed, json_schema)
        path = self._path(key)
        if path.is_file():
            self.hits += 1
            reply = LLMReply.model_validate_json(path.read_text(encoding="utf-8"))
            return reply.model_copy(update={"cached": True})
        self.misses += 1
        reply = self.inner.chat(
            messages,
            tools=tools,
            max_tokens=max_tokens,
            temperature=temperature,
            seed=seed,
            timeout=timeout,
            json_schema=json_schema,
        )
        self._store(path, reply)
        return reply

    def score_options(
        self,
        messages: Sequence[ChatMessage],
        options: Sequence[str],
        *,
        orderings: int = 2,
        timeout: float | None = None,
    ) -> OptionScores:
        if not isinstance(self.inner, OptionScorer):
            raise LLMError(f"{self.name} cannot score options")
        path = self._path(scoring_key(self.name, messages, options, orderings))
        if path.is_file():
            self.hits += 1
            return OptionScores.model_validate_json(path.read_text(encoding="utf-8")).model_copy(update={"cached": True})
        self.misses += 1
        scores = self.inner.score_options(messages, options, orderings=orderings, timeout=timeout)
        self._store(path, scores)
        return scores

    def _store(self, path: Path, reply: LLMReply | OptionScores) -> None:
        # temp file + os.replace: a crash mid-write never leaves a truncated entry behind,
        # and concurrent writers of the same key each replace the file whole.
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(reply.model_dump_json(indent=1))
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

"""Per-user results, appended to `RUN_DIR/users.jsonl` as they finish.

Every line is one (method, user) outcome, written with flush + fsync, so a kill loses at most
the line being written. On resume the file is read back, a torn last line is cut off (the
file is truncated to its last complete line before anything is appended), and (method, user)
pairs already done under the method's current fingerprint are skipped: no duplicate, no loss.
Lines written under another fingerprint (the method's definition changed) are ignored.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

USERS_FILE = "users.jsonl"


class UserResult(BaseModel):
    """One method's outcome for one user. `rank` is the 0-based rank of the held-out item
    (None: not in the list, or no valid list); an invalid or failed output has valid=False and
    scores zero on every metric."""

    method: str
    fp: str = Field(description="Fingerprint of the method definition it was computed under")
    user: str
    rank: int | None
    valid: bool = True
    error: str | None = None
    items: list[str] | None = Field(None, description="The list, for list-producing methods")
    llm_calls: int = 0
    cached_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    llm_seconds: float = 0.0
    call_seconds: list[float] = Field(default_factory=list, description="Each LLM call's own latency (as first measured)")
    seconds: float = Field(0.0, description="Time to produce this user's output, cached LLM calls counted at their first-measured latency")
    fallback: bool = Field(False, description="An LLM answer was unusable and a deterministic fallback was taken")
    backfilled: int = Field(0, description="Items completed from the backbone's ranking")
    diagnostics: dict[str, Any] = Field(default_factory=dict)
    session: int = 0
    t: float = Field(0.0, description="Unix time the line was written")


class ResultStore:
    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / USERS_FILE
        self.torn = 0  # torn or corrupt lines found when reading
        self.records: list[UserResult] = []
        self._load()

    def _load(self) -> None:
        lines, self.torn = complete_lines(self.path)
        for line in lines:
            try:
                self.records.append(UserResult.model_validate_json(line))
            except ValueError:
                self.torn += 1

    def done(self, method: str, fp: str) -> dict[str, UserResult]:
        """user -> its result for this method under this fingerprint (the first line wins)."""
        out: dict[str, UserResult] = {}
        for record in self.records:
            if record.method == method and record.fp == fp and record.user not in out:
                out[record.user] = record
        return out

    def drop(self, method: str, fp: str, users: Iterable[str]) -> None:
        """Forget results (in memory) so they are computed again; used for --retry-errors.
        Later lines for the same pair then win, because earlier ones are no longer read."""
        gone = set(users)
        self.records = [r for r in self.records if not (r.method == method and r.fp == fp and r.user in gone)]
        self._rewrite()

    def _rewrite(self) -> None:
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            for record in self.records:
                f.write(record.model_dump_json(exclude_defaults=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def append(self, records: Iterable[UserResult]) -> None:
        batch = list(records)
        append_lines(self.path, [record.model_dump_json() for record in batch])
        self.records.extend(batch)


def complete_lines(path: Path) -> tuple[list[bytes], int]:
    """The non-blank complete lines of a journal, and 1 if a last line cut short by a kill was
    found: it is dropped, and the file cut so that the next appended line starts clean."""
    if not path.exists():
        return [], 0
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    torn = int(end < len(data))
    if torn:
        with open(path, "r+b") as f:
            f.truncate(end)
            f.flush()
            os.fsync(f.fileno())
    return [line for line in data[:end].splitlines() if line.strip()], torn


def append_lines(path: Path, lines: list[str]) -> None:
    """Append whole lines to a journal with flush + fsync: a kill loses at most the one being written."""
    if not lines:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        for line in lines:
            f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every complete JSON line of a file (a torn last line is skipped)."""
    out = []
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out

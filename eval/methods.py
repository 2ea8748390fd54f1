"""What each kind of method does for the sampled users, and how its output is scored.

Ranking methods (popularity and trained backbones) score the full catalogue with the user's
history masked; the held-out item's rank among all the rest is the figure (`target_ranks`).
List-producing methods (LLM reranking, the agent) return a top-k list with k the protocol's
largest cut-off; the list is checked (exactly k items, no duplicates, all in the catalogue,
none from the history) and the target's position in it is the figure (`list_ranks`). A list
that fails the check, or a user whose call failed (LLMError, RecommendError), has no rank:
it scores zero on every metric and is counted as invalid, never dropped.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agent.api import Agent, RecommendError, RecommendRequest, RerankReply, TraceCode, TraceEvent, picked
from agent.llm.base import LLM, ChatMessage, LLMError
from agent.llm.parsing import Attempt, ask_structured
from agent.prompts import domain_of, render
from eval.config import AgentMethod, BackboneMethod, EvalConfig, LLMRerankMethod, PopularityMethod
from eval.metrics import MISSING, list_ranks, target_ranks
from eval.store import UserResult
from tools.data.fetch import load_dataset
from tools.data.sequences import SequenceDataset, build_sequences
from tools.models.base import Recommender
from tools.models.checkpoint import load_model, read_meta, run_dataset
from tools.models.scoring import score_histories
from tools.retrieval import top_k
from tools.settings import PathSettings
from tools.titles import item_line
from tools.toolbox import Toolbox, variant_name

# Failures of one user's recommendation that are not bugs: recorded, scored zero, counted.
USER_ERRORS: tuple[type[Exception], ...] = (LLMError, RecommendError)


def sample_users(dataset: SequenceDataset, config: EvalConfig) -> list[str]:
    """Explicit user ids, or a seeded sample. The sample is a prefix of one seeded permutation,
    so a larger `users` extends a smaller run's sample instead of drawing a new one."""
    if config.user_ids is not None:
        unknown = [u for u in config.user_ids if u not in dataset.user_index]
        if unknown:
            raise ValueError(f"unknown user ids {unknown[:5]} in {dataset.name}")
        return list(dict.fromkeys(config.user_ids))
    order = np.random.default_rng(config.seed).permutation(len(dataset.user_ids))
    if config.users is not None:
        order = order[: config.users]
    return [dataset.user_ids[i] for i in order]


class Context:
    """The dataset, the users, their histories and targets, and the loaded models, shared by
    every method of a run (one load per run folder)."""

    def __init__(self, config: EvalConfig, data_dir: Path | None = None) -> None:
        self.config = config
        self.data_dir = data_dir or config.data_dir or PathSettings().data_dir
        runs = [m.run for m in config.methods if not isinstance(m, PopularityMethod)]
        runs += [p for m in config.methods if isinstance(m, AgentMethod) for p in m.variants.values()]
        min_cores = {read_meta(run).min_core for run in runs} or {0}
        if len(min_cores) > 1:
            raise ValueError(f"the runs were trained on differently filtered data (min_core {sorted(min_cores)})")
        self.dataset = self._dataset(runs, min_cores.pop())
        self.users = sample_users(self.dataset, config)
        self.histories: dict[str, np.ndarray] = {u: self.dataset.history(u, config.split) for u in self.users}
        self.targets: dict[str, int] = {u: self.dataset.target(u, config.split) for u in self.users}
        self._models: dict[Path, Recommender] = {}
        self._toolboxes: dict[tuple[Path, tuple[tuple[str, Path], ...]], Toolbox] = {}

    def _dataset(self, runs: list[Path], min_core: int) -> SequenceDataset:
        """The first run's prepared data where it is the config's dataset (no raw file parsed),
        else the dataset built from the raw files (each model then checks it is theirs)."""
        if runs and read_meta(runs[0]).dataset == Path(str(self.config.dataset)).name:
            return run_dataset(runs[0], self.data_dir)
        return build_sequences(load_dataset(self.config.dataset, self.data_dir), min_core=min_core)

    def model(self, run: Path) -> Recommender:
        key = run.resolve()
        if key not in self._models:
            self._models[key] = load_model(run, self.dataset)  # refuses a model of other data
        return self._models[key]

    def toolbox(self, run: Path, variants: dict[str, Path] | None = None) -> Toolbox:
        """A toolbox over the shared dataset whose histories stop before the split's target."""
        named = tuple(sorted((variants or {}).items()))
        key = (run.resolve(), tuple((n, p.resolve()) for n, p in named))
        if key not in self._toolboxes:
            models = {variant_name(read_meta(run)): self.model(run)}
            for name, path in named:
                if name in models:
                    raise ValueError(f"two variants named {name!r}")
                models[name] = self.model(path)
            self._toolboxes[key] = Toolbox(self.dataset, models, run_dir=run, split=self.config.split)
        return self._toolboxes[key]

    def item_id(self, dense: int) -> str:
        return self.dataset.item(dense).id

    def check_list(self, user: str, items: Sequence[str]) -> str | None:
        """Why a list is not a valid top-k for this user, or None."""
        k = self.config.k
        problems = []
        if len(items) != k:
            problems.append(f"{len(items)} items instead of {k}")
        if len(set(items)) != len(items):
            problems.append("duplicates")
        unknown = [i for i in items if i not in self.dataset.item_index]
        if unknown:
            problems.append(f"unknown ids {unknown[:3]}")
        seen = {self.item_id(int(d)) for d in self.histories[user]}
        repeated = [i for i in items if i in seen]
        if repeated:
            problems.append(f"history items {repeated[:3]}")
        return "; ".join(problems) or None

    def backbone_top(self, toolbox: Toolbox, user: str, n: int) -> list[int]:
        """The toolbox's default backbone's top-n dense ids for the user, history masked."""
        history = self.histories[user]
        scores = toolbox.score(None, history).astype(np.float64)
        scores[0] = -np.inf
        scores[history] = -np.inf
        return [int(d) for d in top_k(scores, np.isfinite(scores), n)]


def _rank(value: int) -> int | None:
    return None if value == MISSING else int(value)


# --- ranking methods ---------------------------------------------------------------------


def rank_method(
    ctx: Context, method: PopularityMethod | BackboneMethod, fp: str, users: Sequence[str], batch_size: int = 256
) -> list[UserResult]:
    """Full-catalogue ranks for `users`, in batches; every user gets a line."""
    out: list[UserResult] = []
    counts = ctx.dataset.popularity().astype(np.float64) if isinstance(method, PopularityMethod) else None
    for start in range(0, len(users), batch_size):
        chunk = list(users[start : start + batch_size])
        began = time.perf_counter()
        histories = [ctx.histories[u] for u in chunk]
        if counts is not None:
            scores = np.tile(counts, (len(chunk), 1))
            scores[:, 0] = -np.inf
            for row, history in enumerate(histories):
                scores[row, history] = -np.inf
        else:
            assert isinstance(method, BackboneMethod)
            scores = score_histories(ctx.model(method.run), histories, batch_size=batch_size)
        ranks = target_ranks(scores, np.array([ctx.targets[u] for u in chunk], dtype=np.int64))
        each = (time.perf_counter() - began) / len(chunk)
        out += [
            UserResult(method=method.name, fp=fp, user=u, rank=_rank(r), seconds=round(each, 6)) for u, r in zip(chunk, ranks, strict=True)
        ]
    return out


# --- list methods ------------------------------------------------------------------------


def _llm_fields(events: Sequence[tuple[float, bool, int, int]], wall: float) -> dict[str, Any]:
    """Cost fields from (seconds, cached, prompt_tokens, completion_tokens) per LLM call. A
    cached call took no time now; it is counted at the latency it had when first made, so a
    rerun reports the same cost as the run that paid for it."""
    cached_seconds = sum(s for s, cached, _, _ in events if cached)
    return {
        "llm_calls": len(events),
        "cached_calls": sum(1 for _, cached, _, _ in events if cached),
        "prompt_tokens": sum(p for _, _, p, _ in events),
        "completion_tokens": sum(c for _, _, _, c in events),
        "llm_seconds": round(sum(s for s, _, _, _ in events), 4),
        "call_seconds": [round(s, 4) for s, _, _, _ in events],
        "seconds": round(wall + cached_seconds, 4),
    }


def _attempt_events(attempts: Sequence[Attempt], timeout: float | None) -> list[tuple[float, bool, int, int]]:
    """A call that timed out has no reply: it counts as a call that took the whole budget."""
    return [
        (a.reply.seconds, a.reply.cached, a.reply.prompt_tokens, a.reply.completion_tokens)
        if a.reply is not None
        else (timeout or 0.0, False, 0, 0)
        for a in attempts
    ]


def _trace_events(trace: Sequence[TraceEvent], timeout: float | None) -> list[tuple[float, bool, int, int]]:
    return [
        (e.seconds, e.cached, e.prompt_tokens, e.completion_tokens) if e.reply is not None else (timeout or 0.0, False, 0, 0)
        for e in trace
        if e.kind == "llm"
    ]


def _scored(ctx: Context, method: str, fp: str, user: str, items: list[str], **fields: Any) -> UserResult:
    problem = ctx.check_list(user, items)
    if problem is not None:
        return UserResult(method=method, fp=fp, user=user, rank=None, valid=False, error=f"invalid list: {problem}", items=items, **fields)
    dense = [ctx.dataset.item_index[i] for i in items]
    rank = list_ranks([dense], np.array([ctx.targets[user]]))[0]
    return UserResult(method=method, fp=fp, user=user, rank=_rank(rank), items=items, **fields)


def _failed(method: str, fp: str, user: str, error: BaseException, wall: float) -> UserResult:
    return UserResult(
        method=method, fp=fp, user=user, rank=None, valid=False, error=f"{type(error).__name__}: {error}", seconds=round(wall, 4)
    )


class LLMRerank:
    """Chat-REC / LLMRank style: the backbone's top-N, as titles with their genres, after the
    user's recent history; the LLM answers an order of candidate numbers (JSON). Numbers
    outside 1..N and repeats are dropped; the candidates it left out follow in backbone order,
    then the backbone's next items up to k. An unusable reply keeps the backbone order (and
    counts as a fallback)."""

    def __init__(self, ctx: Context, method: LLMRerankMethod, fp: str, llm: LLM) -> None:
        self.ctx, self.method, self.fp, self.llm = ctx, method, fp, llm
        self.toolbox = ctx.toolbox(method.run)
        self.domain = domain_of(ctx.dataset.name)
        self.primary = self.toolbox.primary_attribute
        self.timeout = ctx.config.timeout(method)

    def line(self, dense: int) -> str:
        item = self.ctx.dataset.item(dense)
        return item_line(item.title, item.year, item.attributes.get(self.primary, ()) if self.primary else ())

    def prompt(self, user: str, shown: list[int]) -> str:
        recent = [int(d) for d in self.ctx.histories[user][::-1][: self.method.history]]
        return render(
            self.domain,
            self.method.prompt,
            history="\n".join(f"- {self.line(d)}" for d in recent),
            candidates="\n".join(f"{n}. {self.line(d)}" for n, d in enumerate(shown, start=1)),
            n=len(shown),
            k=min(self.ctx.config.k, len(shown)),
        )

    def __call__(self, user: str) -> UserResult:
        m, k = self.method, self.ctx.config.k
        began = time.perf_counter()
        try:
            backbone = self.ctx.backbone_top(self.toolbox, user, max(m.top_n, k))
            shown = backbone[: m.top_n]
            result = ask_structured(
                self.llm,
                [ChatMessage(role="user", content=self.prompt(user, shown))],
                RerankReply,
                retries=m.retries,
                max_tokens=m.max_tokens,
                temperature=m.temperature,
                seed=m.seed,
                timeout=self.timeout,
            )
        except USER_ERRORS as err:
            return _failed(m.name, self.fp, user, err, time.perf_counter() - began)
        shown_ids = [self.ctx.item_id(d) for d in shown]
        chosen = picked(result.value, shown_ids) if result.value is not None else []
        first = set(chosen)
        items = [*chosen, *(i for i in (self.ctx.item_id(d) for d in backbone) if i not in first)][:k]
        fields = _llm_fields(_attempt_events(result.attempts, self.timeout), time.perf_counter() - began)
        diagnostics = {
            "picked": len(chosen),
            "identity": bool(chosen) and chosen == shown_ids[: len(chosen)],
            "first_valid": result.first_valid,
            "errors": [a.error for a in result.attempts if a.error][:2],
        }
        return _scored(
            self.ctx,
            m.name,
            self.fp,
            user,
            items,
            fallback=not result.ok,
            backfilled=max(0, min(k, len(shown)) - len(chosen)),
            diagnostics=diagnostics,
            **fields,
        )


class AgentRunner:
    """The agent for one user through `Agent.recommend`, on a toolbox whose histories stop
    before the target; diagnostics say what its LLM did (tools called, errors, fallbacks) and
    how far its list moved from the backbone's (items in its top-10 not in the backbone's)."""

    def __init__(self, ctx: Context, method: AgentMethod, fp: str, llm: LLM) -> None:
        self.ctx, self.method, self.fp = ctx, method, fp
        self.toolbox = ctx.toolbox(method.run, method.variants)
        config = method.agent_config(ctx.config.k, ctx.config.llm_timeout_s)
        if {"semantic_search", "similar_items"} & set(config.tools) and config.max_rounds > 0:
            _ = self.toolbox.indexes  # load once, before any concurrent user touches it
        self.agent = Agent(llm, self.toolbox, config)

    def __call__(self, user: str) -> UserResult:
        began = time.perf_counter()
        try:
            rec = self.agent.recommend(RecommendRequest(user_id=user))
        except USER_ERRORS as err:
            return _failed(self.method.name, self.fp, user, err, time.perf_counter() - began)
        wall = time.perf_counter() - began
        items = [item.id for item in rec.items]
        acts = [e for e in rec.trace if e.node == "act" and e.kind == "tool"]
        plans = [e for e in rec.trace if e.node == "plan" and e.kind == "llm" and e.valid_first_try is not None]
        backbone10 = {self.ctx.item_id(d) for d in self.ctx.backbone_top(self.toolbox, user, 10)}
        fallbacks: list[TraceCode] = [e.code for e in rec.trace if e.kind == "fallback" and e.code is not None]
        # a repeated tool call ends the search by design; only an unusable reply is a fallback
        unusable = [f for f in fallbacks if not is_repeat(f)]
        diagnostics = {
            "rounds": rec.rounds,
            "tools": [e.tool for e in acts],
            "tool_errors": sum(1 for e in acts if e.code == "tool_error"),
            "plans_valid_first": sum(1 for e in plans if e.valid_first_try),
            "plans": len(plans),
            "fallbacks": fallbacks,
            "new_in_top10": len(set(items[:10]) - backbone10),
        }
        return _scored(
            self.ctx,
            self.method.name,
            self.fp,
            user,
            items,
            fallback=bool(unusable),
            backfilled=rec.backfilled,
            diagnostics=diagnostics,
            **_llm_fields(_trace_events(rec.trace, self.agent.config.llm_timeout_s), wall),
        )


def is_repeat(fallback: str) -> bool:
    """Whether a fallback's trace code says the LLM repeated a tool call: the search converged,
    nothing failed."""
    return fallback == "repeated_call"


def set_threads() -> None:
    """One torch thread: batch-1 forwards are fastest so, and the embedded LLM needs the cores."""
    torch.set_num_threads(1)

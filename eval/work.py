"""Computing a method for some users on one opened `Context`: what the in-process run does
and what each Ray worker does (eval.ray_run), so that both give the same lines.

Ranking methods score in batches of RANK_BATCH users (a Ray block of a ranking method is one
such batch, so both see the same batches); list methods run user by user, `concurrency` at a
time. Each method's runner is built once, on first use, and only a method that uses the LLM
gets it (the others get NoLLM, which they never call).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed

from agent.llm.base import LLM, NoLLM
from eval.config import AgentMethod, BackboneMethod, LLMRerankMethod, Method, PopularityMethod
from eval.methods import AgentRunner, Context, LLMRerank, rank_method
from eval.store import UserResult

RANK_BATCH = 256
Save = Callable[[Sequence[UserResult]], None]


def ranks(method: Method) -> bool:
    """Whether `method` ranks the catalogue in batches (popularity, a backbone) rather than
    producing one list per user."""
    return isinstance(method, PopularityMethod | BackboneMethod)


class Worker:
    """The methods of one run over an opened Context. `llm()` builds the LLM on first need;
    the runners are built under a lock, since Ray runs several blocks at once in one worker."""

    def __init__(self, ctx: Context, fingerprints: dict[str, str], llm: Callable[[], LLM]) -> None:
        self.ctx, self.fingerprints = ctx, fingerprints
        self._make_llm = llm
        self._llm: LLM | None = None
        self._runners: dict[str, Callable[[str], UserResult]] = {}
        self._lock = threading.Lock()

    @property
    def llm_name(self) -> str | None:
        """The LLM's name once it was built."""
        return self._llm.name if self._llm is not None else None

    def _runner(self, method: LLMRerankMethod | AgentMethod) -> Callable[[str], UserResult]:
        with self._lock:
            if method.name not in self._runners:
                llm: LLM = NoLLM()
                if method.uses_llm:
                    self._llm = self._llm or self._make_llm()
                    llm = self._llm
                fp = self.fingerprints[method.name]
                runner: Callable[[str], UserResult]
                if isinstance(method, LLMRerankMethod):
                    runner = LLMRerank(self.ctx, method, fp, llm)
                else:
                    runner = AgentRunner(self.ctx, method, fp, llm)
                self._runners[method.name] = runner
            return self._runners[method.name]

    def compute(self, method: Method, users: Sequence[str], save: Save, concurrency: int = 1) -> None:
        """Every user's line for `method`, each saved as it is done (a batch at a time for a
        ranking method)."""
        if isinstance(method, PopularityMethod | BackboneMethod):
            if isinstance(method, BackboneMethod):
                with self._lock:
                    self.ctx.model(method.run)  # loaded once, before concurrent blocks use it
            fp = self.fingerprints[method.name]
            for start in range(0, len(users), RANK_BATCH):
                save(rank_method(self.ctx, method, fp, users[start : start + RANK_BATCH], batch_size=RANK_BATCH))
            return
        run_users(self._runner(method), users, concurrency, save)


def run_users(runner: Callable[[str], UserResult], users: Sequence[str], workers: int, save: Save) -> None:
    """Each user through `runner`, `workers` at a time, every result saved as it finishes."""
    if workers <= 1:
        for user in users:
            save([runner(user)])
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for future in as_completed([pool.submit(runner, user) for user in users]):
            save([future.result()])

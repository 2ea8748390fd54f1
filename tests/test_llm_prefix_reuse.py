"""Prefix reuse is invisible in the answers: with the real embedded model (greedy decoding),
replies and option scores computed on a warm context, which reuses the previous prompt's
evaluated prefix, match cold calls that evaluate every prompt token. Skipped when the GGUF
is absent."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.llm.base import ChatMessage
from agent.llm.embedded import LlamaCppLLM
from agent.settings import AgentSettings

pytestmark = pytest.mark.llm

REPO_ROOT = Path(__file__).resolve().parents[1]
SYSTEM = ChatMessage(
    role="system",
    content="You are a movie fan. You pick what to watch next from a menu of options.",
)
HISTORIES = [
    "You recently watched Star Wars, Alien and The Terminator, and loved them.",
    "You recently watched Sleepless in Seattle, Titanic and Emma.",
    "You recently watched Toy Story, Aladdin and The Lion King.",
]
OPTIONS = ["More Sci-Fi and Action", "A 1990s Romance", "An animated Children's film", "Horror"]
# A reused prefix splits the prompt into different batches, and llama.cpp's quantised
# kernels then sum in another order: probabilities moved by up to 0.002 here.
TOLERANCE = 0.01


@pytest.fixture(scope="module")
def llm() -> Iterator[LlamaCppLLM]:
    path = AgentSettings().resolved_embedded_model_path()
    if not path.is_absolute():
        path = REPO_ROOT / path
    if not path.is_file():
        pytest.skip(f"embedded model not fetched ({path}); run `toolrec models get`")
    # One thread: the suite shares a 2-core machine; results do not depend on it.
    yield LlamaCppLLM(path, n_ctx=2048, n_threads=1)


def question(history: str) -> list[ChatMessage]:
    return [SYSTEM, ChatMessage(role="user", content=f"{history} Which do you want next?")]


def test_replies_with_prefix_reuse_match_cold_calls(llm: LlamaCppLLM) -> None:
    warm = [llm.chat(question(h), max_tokens=16) for h in HISTORIES]
    cold = []
    for history in HISTORIES:
        llm.forget_prefix()
        cold.append(llm.chat(question(history), max_tokens=16))
    assert [r.text for r in warm] == [r.text for r in cold]
    assert all(r.prompt_tokens_reused == 0 for r in cold)
    # Each warm call after the first reuses at least the system prompt.
    assert all(r.prompt_tokens_reused >= 20 for r in warm[1:])


def test_option_scores_with_prefix_reuse_match_cold_calls(llm: LlamaCppLLM) -> None:
    warm = [llm.score_options(question(h), OPTIONS, orderings=2) for h in HISTORIES]
    cold = []
    for history in HISTORIES:
        llm.forget_prefix()
        cold.append(llm.score_options(question(history), OPTIONS, orderings=2))
    for w, c in zip(warm, cold, strict=True):
        assert w.probabilities() == pytest.approx(c.probabilities(), abs=TOLERANCE)
        ranked = sorted(c.probabilities(), reverse=True)
        if ranked[0] - ranked[1] > 2 * TOLERANCE:  # a clear winner stays the winner
            assert w.best == c.best
    # Cold: the first ordering evaluates everything; the second reuses the question.
    assert all(c.orderings[0].tokens_reused == 0 for c in cold)
    assert all(c.orderings[1].tokens_reused > 0 for c in cold)
    # Warm: every ordering reuses the system prompt and menu header at least.
    warm_orderings = [o for w in warm[1:] for o in w.orderings]
    assert all(o.tokens_reused >= 20 for o in warm_orderings)
    assert all(o.tokens_evaluated + o.tokens_reused == o.prompt_tokens for o in warm_orderings)

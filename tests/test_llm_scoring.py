"""Option scoring's arithmetic (orderings, normalisation, averaging), the scripted double, and
the reply cache around a scorer. No model needed."""

import math
from pathlib import Path

import pytest

from agent.llm.base import ChatMessage
from agent.llm.cache import CachedLLM
from agent.llm.scoring import (
    OrderingScore,
    by_option,
    combine,
    debias,
    menu_messages,
    normalised_logprobs,
    option_orders,
    position_prior,
)
from agent.llm.scripted import ScriptedLLM, ScriptExhausted

QUESTION = [
    ChatMessage(role="system", content="You choose movies."),
    ChatMessage(role="user", content="You liked Alien. What next?"),
]
OPTIONS = ["Sci-Fi", "Drama", "Comedy"]


def test_orders_start_with_given_and_reversed_and_balance_positions() -> None:
    assert option_orders(3, 2) == [[0, 1, 2], [2, 1, 0]]
    full = option_orders(4, 8)
    assert len({tuple(o) for o in full}) == 8
    for option in range(4):  # every option at every position equally often
        assert sorted(o.index(option) for o in full) == [0, 0, 1, 1, 2, 2, 3, 3]


def test_menu_is_appended_to_the_last_user_message_in_order() -> None:
    messages = menu_messages(QUESTION, OPTIONS, [2, 0, 1])
    assert messages[0] == QUESTION[0]
    text = messages[-1].content
    assert text.startswith("You liked Alien. What next?")
    assert text.index("1. Comedy") < text.index("2. Sci-Fi") < text.index("3. Drama")
    assert "1 to 3" in text


def test_missing_labels_share_the_leftover_mass() -> None:
    logprobs, mass = normalised_logprobs([math.log(0.5), None, math.log(0.3), None])
    assert mass == pytest.approx(0.8)
    assert [math.exp(x) for x in logprobs] == pytest.approx([0.5, 0.1, 0.3, 0.1])


def ordering(order: list[int], per_position: list[float]) -> OrderingScore:
    logprobs, mass = normalised_logprobs([math.log(p) for p in per_position])
    return OrderingScore(
        order=order,
        logprobs=by_option(order, logprobs),
        label_mass=mass,
        prompt_tokens=10,
        tokens_evaluated=4,
        tokens_reused=6,
        seconds=0.1,
    )


def test_a_pure_position_preference_cancels_over_given_and_reversed_orders() -> None:
    # The model always wants position 3, whatever sits there: no option is preferred.
    biased = [0.1, 0.2, 0.7]
    both = [ordering([0, 1, 2], biased), ordering([2, 1, 0], biased)]
    scores = combine("m", "logprobs", OPTIONS, both, 0.2)
    probs = scores.probabilities()
    assert probs[0] == pytest.approx(probs[2])
    assert sum(probs) == pytest.approx(1.0)
    assert scores.tokens_evaluated == 8 and scores.tokens_reused == 12


def test_a_content_preference_survives_reordering() -> None:
    # Option 1 ("Drama") is preferred wherever it is shown.
    first = ordering([0, 1, 2], [0.2, 0.6, 0.2])
    second = ordering([2, 0, 1], [0.2, 0.2, 0.6])
    scores = combine("m", "logprobs", OPTIONS, [first, second], 0.2)
    assert scores.best == 1
    assert scores.options[1].option == "Drama"


def test_one_ordering_less_the_position_prior_keeps_only_the_content_preference() -> None:
    # A model that wants position 3 twice as much as the others: measured on alike options...
    prior = position_prior(combine("m", "logprobs", ["N/A"] * 3, [ordering([0, 1, 2], [0.25, 0.25, 0.5])], 0.1))
    assert [math.exp(lp) for lp in prior] == pytest.approx([0.25, 0.25, 0.5])
    # ...then shown the options reversed, it gives 0.3 to Comedy and Sci-Fi (positions 1 and 3)
    # and 0.4 to Drama: less the prior, Sci-Fi had its 0.3 only for sitting at position 3
    seen = combine("m", "logprobs", OPTIONS, [ordering([2, 1, 0], [0.3, 0.4, 0.3])], 0.1)
    assert seen.probabilities()[0] == pytest.approx(seen.probabilities()[2])
    fair = debias(seen, prior)
    assert fair.probabilities() == pytest.approx([0.6 / 3.4, 1.6 / 3.4, 1.2 / 3.4])
    assert fair.best == 1 and fair.tokens_evaluated == seen.tokens_evaluated
    # a flat prior changes nothing
    assert debias(seen, [math.log(1 / 3)] * 3).probabilities() == pytest.approx(seen.probabilities())


def test_scripted_preferences_are_replayed_and_recorded() -> None:
    llm = ScriptedLLM([], preferences=[[1, 3, 0], ValueError("boom")])
    scores = llm.score_options(QUESTION, OPTIONS)
    assert scores.method == "scripted"
    assert scores.probabilities() == pytest.approx([0.25, 0.75, 0.0], abs=1e-9)
    assert scores.best == 1
    assert llm.scorings[0].options == OPTIONS
    with pytest.raises(ValueError, match="boom"):
        llm.score_options(QUESTION, OPTIONS)
    with pytest.raises(ScriptExhausted):
        llm.score_options(QUESTION, OPTIONS)


def test_scoring_rejects_bad_menus() -> None:
    llm = ScriptedLLM([], preferences=[[1, 1]])
    with pytest.raises(ValueError, match="between 2 and 9"):
        llm.score_options(QUESTION, ["only one"])
    with pytest.raises(ValueError, match="ending with the user"):
        llm.score_options(QUESTION[:1], OPTIONS[:2])


def test_cache_stores_scorings(tmp_path: Path) -> None:
    inner = ScriptedLLM([], preferences=[[2, 1, 1]])
    cached = CachedLLM(inner, tmp_path)
    first = cached.score_options(QUESTION, OPTIONS)
    again = cached.score_options(QUESTION, OPTIONS)  # the script has no second entry
    assert again.probabilities() == pytest.approx(first.probabilities())
    assert (cached.hits, cached.misses) == (1, 1)
    assert again.cached and not first.cached and again.seconds == first.seconds  # counted at the first call's latency

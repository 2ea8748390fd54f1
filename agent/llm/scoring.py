"""Option scoring by likelihood: how much a model prefers each of N numbered options.

Asked to generate one digit, small models answer by position (docs/planners.md: the 0.5B picked
option 3 for 80 of 100 users whatever the options said). Here the model's log-probability of
each option number as the next token is read instead, once per ordering of the options, and
averaged per option over orderings (given order, reversed, then rotations), so a preference
for a position is spread evenly over the options and cancels. The result is a distribution
over options, usable as a weight even when the model's preference is weak. Or one ordering is
read and the model's prior for each position, measured once on a menu of alike options, is
divided out (`debias`): half the menu's tokens evaluated per call.

Prompt layout, for prefix reuse: the caller's messages come first unchanged (system prompt and
any shared header, then the user-specific question), and the numbered menu is appended to the
last user message, so consecutive calls share everything up to the menu, and the orderings of
one call share everything but the menu.
"""

import math
from collections.abc import Sequence
from functools import cache
from importlib import resources
from string import Template
from typing import Literal, Protocol, runtime_checkable

from pydantic import BaseModel, Field, computed_field

from agent.llm.base import ChatMessage

# Option numbers are single tokens ("1".."9") in the Qwen and Llama tokenizers, so one next
# token carries the whole choice; ten or more options would need multi-token scoring.
MAX_OPTIONS = 9

# The probability given to an option a backend reported nothing for (outside its top-K, or not
# the one a constrained reply named): small, so that averaging over orderings stays finite.
FLOOR_PROBABILITY = 1e-4

ScoringMethod = Literal["logprobs", "constrained_reply", "scripted"]


class OrderingScore(BaseModel):
    """One ordering of the menu as the model saw it."""

    order: list[int]  # order[p] is the index of the option shown as number p + 1
    logprobs: list[float]  # per option index: log-probability, normalised over the options
    label_mass: float  # probability the model put on any option number at all
    prompt_tokens: int
    tokens_evaluated: int  # prompt tokens computed for this call
    tokens_reused: int  # prompt tokens served from the previous prompt's evaluated prefix
    seconds: float


class OptionScore(BaseModel):
    index: int
    option: str
    probability: float  # softmax of `logprob` over the options
    logprob: float  # mean over orderings of the normalised log-probability


class OptionScores(BaseModel):
    model: str
    method: ScoringMethod
    options: list[OptionScore]
    orderings: list[OrderingScore] = Field(default_factory=list)
    seconds: float
    cached: bool = False  # served from a reply cache: `seconds` is what the first call took

    @computed_field  # type: ignore[prop-decorator]
    @property
    def best(self) -> int:
        return max(self.options, key=lambda o: o.probability).index

    @computed_field  # type: ignore[prop-decorator]
    @property
    def tokens_evaluated(self) -> int:
        return sum(o.tokens_evaluated for o in self.orderings)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def tokens_reused(self) -> int:
        return sum(o.tokens_reused for o in self.orderings)

    def probabilities(self) -> list[float]:
        return [o.probability for o in self.options]


@runtime_checkable
class OptionScorer(Protocol):
    """A backend that can score options; `messages` end with a user turn asking the question."""

    name: str

    def score_options(
        self,
        messages: Sequence[ChatMessage],
        options: Sequence[str],
        *,
        orderings: int = 2,
        timeout: float | None = None,
    ) -> OptionScores: ...


def check_options(messages: Sequence[ChatMessage], options: Sequence[str]) -> None:
    if not messages or messages[-1].role != "user":
        raise ValueError("option scoring needs messages ending with the user's question")
    if not 2 <= len(options) <= MAX_OPTIONS:
        raise ValueError(f"between 2 and {MAX_OPTIONS} options, got {len(options)}")


def option_orders(n: int, count: int) -> list[list[int]]:
    """`count` distinct orderings of n options: the given order, reversed, then both rotated
    by one, two, ... With count = 2n every option sits at every position equally often."""
    if count < 1:
        raise ValueError("at least one ordering")
    orders: list[list[int]] = []
    for shift in range(n):
        rotated = [(i + shift) % n for i in range(n)]
        for order in (rotated, rotated[::-1]):
            if order not in orders:
                orders.append(order)
    return orders[:count]


def option_labels(n: int) -> list[str]:
    return [str(p + 1) for p in range(n)]


@cache
def _menu_template() -> Template:
    text = resources.files("prompts").joinpath("llm", "option_menu.md").read_text("utf-8")
    return Template(text)


def menu_messages(messages: Sequence[ChatMessage], options: Sequence[str], order: Sequence[int]) -> list[ChatMessage]:
    """The conversation with the menu, in `order`, appended to the last (user) message."""
    menu = "\n".join(f"{p + 1}. {options[i]}" for p, i in enumerate(order))
    question = messages[-1].content
    content = _menu_template().substitute(question=question, menu=menu, last=len(order)).strip()
    return [*messages[:-1], ChatMessage(role="user", content=content)]


def normalised_logprobs(label_logprobs: Sequence[float | None]) -> tuple[list[float], float]:
    """Log-probabilities per position renormalised over the option labels, and the mass the
    model put on the labels. A label without a figure (outside a server's top-K) shares the
    mass left over, floored at FLOOR_PROBABILITY."""
    known = [math.exp(lp) for lp in label_logprobs if lp is not None]
    mass = sum(known)
    missing = len(label_logprobs) - len(known)
    fill = max((1.0 - mass) / missing, FLOOR_PROBABILITY) if missing else 0.0
    probs = [math.exp(lp) if lp is not None else fill for lp in label_logprobs]
    total = sum(probs)
    return [math.log(p / total) for p in probs], mass


def by_option(order: Sequence[int], per_position: Sequence[float]) -> list[float]:
    """Per-position figures mapped back to the options' own indices."""
    out = [0.0] * len(order)
    for position, index in enumerate(order):
        out[index] = per_position[position]
    return out


def ordering_score(
    order: list[int],
    label_logprobs: Sequence[float | None],
    *,
    prompt_tokens: int,
    tokens_reused: int,
    seconds: float,
) -> OrderingScore:
    """One ordering's record from the log-probabilities of the option numbers by position."""
    per_position, mass = normalised_logprobs(label_logprobs)
    return OrderingScore(
        order=order,
        logprobs=by_option(order, per_position),
        label_mass=mass,
        prompt_tokens=prompt_tokens,
        tokens_evaluated=prompt_tokens - tokens_reused,
        tokens_reused=tokens_reused,
        seconds=seconds,
    )


def position_prior(scores: OptionScores) -> list[float]:
    """The model's log-probability for each position, read from a menu whose options are all
    alike (content-free: nothing to prefer but the position) in the given order."""
    (ordering,) = scores.orderings
    return [ordering.logprobs[index] for index in ordering.order]


def debias(scores: OptionScores, prior: Sequence[float]) -> OptionScores:
    """Option scores with the model's preference for positions divided out (PriDe, Zheng et
    al. 2024: P(option) is proportional to P(its label) / P_prior(its position)), so that a
    single ordering stands in for the average over many. `prior[p]`: log-probability of
    position p (`position_prior`)."""
    adjusted = []
    for ordering in scores.orderings:
        per_position, _ = normalised_logprobs([ordering.logprobs[index] - prior[p] for p, index in enumerate(ordering.order)])
        adjusted.append(ordering.model_copy(update={"logprobs": by_option(ordering.order, per_position)}))
    options = [o.option for o in scores.options]
    debiased = combine(scores.model, scores.method, options, adjusted, scores.seconds)
    return debiased.model_copy(update={"cached": scores.cached})


def combine(
    model: str,
    method: ScoringMethod,
    options: Sequence[str],
    orderings: list[OrderingScore],
    seconds: float,
) -> OptionScores:
    """Average each option's log-probability over the orderings, then softmax."""
    means = [sum(o.logprobs[i] for o in orderings) / len(orderings) for i in range(len(options))]
    top = max(means)
    weights = [math.exp(m - top) for m in means]
    total = sum(weights)
    scored = [
        OptionScore(index=i, option=text, probability=w / total, logprob=m)
        for i, (text, m, w) in enumerate(zip(options, means, weights, strict=True))
    ]
    return OptionScores(model=model, method=method, options=scored, orderings=orderings, seconds=seconds)

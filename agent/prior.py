"""A learned prior over the menu's intents from profile features alone: the baseline any way of
choosing must beat, and a policy of its own (`menu_choice = "prior"`, no LLM call).

    IntentPrior.load(run_dir).weights(profile, menu, primary)

Fitting it is `agent.fitting.prior`.

Fitting reads validation targets only: every user's history stops before the second-to-last
item (the toolbox's "valid" split), the menu is drafted and run on that history exactly as the
agent does, and an intent is a hit when its items hold that user's validation item. The test
item is never read. The learner is scikit-learn's logistic regression; what is saved is its
coefficients (JSON), so using the prior needs numpy only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import get_args

import numpy as np
from pydantic import Field

from agent.fitted import FittedFile
from agent.intents import RECENT, IntentKind, MenuEntry
from tools.profile import UserProfileOutput

PRIOR_FILE = "intent_prior.json"
KINDS: tuple[str, ...] = get_args(IntentKind)


def feature_names() -> list[str]:
    return [*(f"kind={k}" for k in KINDS), *(f"kind={k}*log_length" for k in KINDS), "genre_share", "recent_share", "rated"]


def features(profile: UserProfileOutput, entry: MenuEntry, primary: str) -> list[float]:
    """What the profile alone says about one intent: its kind, the history's length (per kind:
    "more like the latest" may suit a short history better), how much of the history and of
    the last few items have the intent's genres, and whether the user rates."""
    kind = [float(entry.intent.kind == k) for k in KINDS]
    log_length = math.log1p(profile.history_length)
    genres = set(entry.intent.arguments.get("genres", []))
    share = min(1.0, sum(v.share for v in profile.attributes.get(primary, []) if v.value in genres))
    recent = profile.recent_items[:RECENT]
    recent_share = sum(bool(genres & set(h.attributes.get(primary, []))) for h in recent) / len(recent) if recent else 0.0
    return [*kind, *(k * log_length for k in kind), share, recent_share, float(bool(profile.top_rated))]


class IntentPrior(FittedFile):
    """Logistic regression coefficients: P(an intent holds the next item | profile features)."""

    FILE = PRIOR_FILE

    features: list[str]
    coef: list[float]
    intercept: float
    users: int = Field(description="Validation users it was fit on")
    fit_users: list[str] = Field(
        default_factory=list, description="Their ids, so that an evaluation on validation users can leave them out"
    )
    split: str = "valid"

    def probabilities(self, profile: UserProfileOutput, menu: Sequence[MenuEntry], primary: str) -> list[float]:
        if self.features != feature_names():
            raise ValueError(f"{PRIOR_FILE} was fit on other features: refit it")
        x = np.array([features(profile, entry, primary) for entry in menu], dtype=np.float64)
        logits = x @ np.array(self.coef) + self.intercept
        return list(1.0 / (1.0 + np.exp(-logits)))

    def weights(self, profile: UserProfileOutput, menu: Sequence[MenuEntry], primary: str) -> list[float]:
        """The menu's weights: each intent's hit probability, normalised over the menu."""
        p = self.probabilities(profile, menu, primary)
        total = sum(p)
        return [float(v / total) for v in p] if total > 0 else [1.0 / len(p)] * len(p)  # plain floats: the session store packs them

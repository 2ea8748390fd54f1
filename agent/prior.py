"""A learned prior over the menu's intents from profile features alone: the baseline any way of
choosing must beat (issue 10), and a policy of its own (`menu_choice = "prior"`, no LLM call).

    report = fit_prior(valid_toolbox, users)      # the toolbox's histories stop before the validation item
    report.prior.save(run_dir)                    # RUN/intent_prior.json
    IntentPrior.load(run_dir).weights(profile, menu, primary)

Fitting reads validation targets only: every user's history stops before the second-to-last
item (the toolbox's "valid" split), the menu is drafted and run on that history exactly as the
agent does, and an intent is a hit when its items hold that user's validation item. The test
item is never read. The learner is scikit-learn's logistic regression; what is saved is its
coefficients (JSON), so using the prior needs numpy only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, get_args

import numpy as np
from pydantic import BaseModel, Field

from agent.fitted import FittedFile
from agent.intents import RECENT, IntentKind, MenuEntry
from tools.profile import UserProfileOutput
from tools.toolbox import Toolbox

if TYPE_CHECKING:
    from agent.state import AgentConfig

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


class PriorReport(BaseModel):
    """The fit and what the validation users say about choosing (share of users whose chosen
    intent holds their validation item)."""

    prior: IntentPrior
    users: int
    intents_per_user: float
    hit_rate: dict[str, float] = Field(description="random: a uniformly random intent; first: the menu's first; KIND: always that kind; "
                                       "oracle: any intent; prior: the prior's top intent (in sample)")  # fmt: skip


def menus(
    toolbox: Toolbox, users: Sequence[str], config: AgentConfig | None = None
) -> list[tuple[UserProfileOutput, list[MenuEntry], str]]:
    """Each user's profile, menu (drafted and run as the agent does) and validation item id."""
    # the agent's own nodes (which import this module, for menu_choice = "prior")
    from agent.llm.base import NoLLM
    from agent.nodes import Nodes
    from agent.state import AgentConfig, RecommendRequest

    split = toolbox.split
    if split == "full":
        raise ValueError("full histories hold no held-out item: open the toolbox with split='valid' or 'test'")
    nodes = Nodes(NoLLM(), toolbox, (config or AgentConfig()).model_copy(update={"max_rounds": 1, "menu_choice": "uniform"}))
    out = []
    for user in users:
        state = {"request": RecommendRequest(user_id=user)}
        profile = nodes.profile(state)["profile"]  # type: ignore[arg-type]
        entries = nodes.menu({**state, "profile": profile})["menu"]  # type: ignore[arg-type]
        out.append((profile, entries, toolbox.dataset.item(toolbox.dataset.target(user, split)).id))
    return out


def fit_prior(toolbox: Toolbox, users: Sequence[str], config: AgentConfig | None = None, c: float = 1.0) -> PriorReport:
    from sklearn.linear_model import LogisticRegression  # fitting only; using a prior needs numpy alone

    if toolbox.split != "valid":
        raise ValueError(f"the prior is fit on validation histories: open the toolbox with split='valid', not {toolbox.split!r}")
    primary = toolbox.primary_attribute or ""
    rows, labels, per_user = [], [], []
    for profile, entries, target in menus(toolbox, users, config):
        hits = [target in {item.id for item in entry.items} for entry in entries]
        per_user.append((profile, entries, hits))
        rows += [features(profile, entry, primary) for entry in entries]
        labels += hits
    if len(set(labels)) < 2:
        raise ValueError("every intent hit, or none did: too few users to fit a prior")
    model = LogisticRegression(C=c, max_iter=2000).fit(np.array(rows), np.array(labels))
    prior = IntentPrior(
        features=feature_names(),
        coef=model.coef_[0].tolist(),
        intercept=float(model.intercept_[0]),
        users=len(users),
        fit_users=list(users),
    )
    n = len(per_user)
    rates: dict[str, float] = {
        "random": sum(sum(h) / len(h) for _, _, h in per_user if h) / n,
        "first": sum(bool(h and h[0]) for _, _, h in per_user) / n,
        "oracle": sum(any(h) for _, _, h in per_user) / n,
    }
    for kind in KINDS:
        rates[kind] = sum(any(hit for e, hit in zip(es, h, strict=True) if e.intent.kind == kind) for _, es, h in per_user) / n
    top = [int(np.argmax(prior.probabilities(p, es, primary))) if es else -1 for p, es, _ in per_user]
    rates["prior"] = sum(bool(h) and h[t] for (_, _, h), t in zip(per_user, top, strict=True)) / n
    return PriorReport(
        prior=prior,
        users=n,
        intents_per_user=sum(len(es) for _, es, _ in per_user) / n,
        hit_rate={k: round(v, 4) for k, v in rates.items()},
    )

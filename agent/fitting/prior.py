"""Fitting the intent prior (`agent.prior.IntentPrior`) on validation users, and the validation
menus it and the choice study (`toolrec eval intents`) read.

    report = fit_prior(valid_toolbox, users)      # the toolbox's histories stop before the validation item
    report.prior.save(run_dir)                    # RUN/intent_prior.json

Every user's history stops before the second-to-last item (the toolbox's "valid" split), the
menu is drafted and run on that history exactly as the agent does, and an intent is a hit when
its items hold that user's validation item. The test item is never read. The learner is
scikit-learn's logistic regression.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, Field

from agent.intents import MenuEntry
from agent.llm.base import NoLLM
from agent.planners import MenuPlanner
from agent.prior import KINDS, IntentPrior, feature_names, features
from agent.request import RecommendRequest
from agent.state import AgentConfig, AgentState
from tools.profile import UserProfileOutput
from tools.toolbox import Toolbox


class PriorReport(BaseModel):
    """The fit and what the validation users say about choosing (share of users whose chosen
    intent holds their validation item)."""

    prior: IntentPrior
    users: int
    intents_per_user: float
    hit_rate: dict[str, float] = Field(
        description="random: a uniformly random intent; first: the menu's first; KIND: always that kind; "
        "oracle: any intent; prior: the prior's top intent (in sample)"
    )


def menus(
    toolbox: Toolbox, users: Sequence[str], config: AgentConfig | None = None
) -> list[tuple[UserProfileOutput, list[MenuEntry], str]]:
    """Each user's profile, menu (drafted and run as the agent does) and validation item id."""
    split = toolbox.split
    if split == "full":
        raise ValueError("full histories hold no held-out item: open the toolbox with split='valid' or 'test'")
    planner = MenuPlanner(NoLLM(), toolbox, (config or AgentConfig()).model_copy(update={"max_rounds": 1, "menu_choice": "uniform"}))
    out = []
    for user in users:
        state = AgentState(request=RecommendRequest(user_id=user))
        profile = planner.profile(state)["profile"]
        entries = planner.menu(AgentState(request=state["request"], profile=profile))["menu"]
        out.append((profile, entries, toolbox.dataset.item(toolbox.dataset.target(user, split)).id))
    return out


def fit_prior(toolbox: Toolbox, users: Sequence[str], config: AgentConfig | None = None, c: float = 1.0) -> PriorReport:
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
    from sklearn.linear_model import LogisticRegression  # seconds to import: only when a prior is fitted

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

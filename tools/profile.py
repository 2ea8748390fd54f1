"""`user_profile`: the surrogate user's view of a history, what the LLM plays the user from.

It shows which attribute values the history holds (counts, share, how recently each was last
seen), the values of the most recent items (most recent first), the recent and best-rated items
with their ratings where the dataset has them, and the user's own features (age, occupation)
where known. With the default "test" split the held-out item is not part of the history.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, Field

from tools.models.attributes import item_values
from tools.schemas import Id, StrList, ToolInput
from tools.toolbox import Toolbox


class UserProfileInput(ToolInput):
    """What a user's history shows: favourite attribute values, recent and top-rated items."""

    user_id: Id | None = Field(None, description="The user's id")
    history: StrList | None = Field(None, description="Instead of user_id: item ids or titles, oldest first")
    recent: int = Field(10, ge=1, le=50, description="How many recent (and top-rated) items to list")
    top_values: int = Field(10, ge=1, le=100, description="How many values to list per attribute type")


class ValueCount(BaseModel):
    value: str
    count: int = Field(description="Items in the history with this value")
    share: float = Field(description="count / history length")
    last_seen: int = Field(description="Position of the latest item with it: 1 = the most recent item")


class HistoryItem(BaseModel):
    id: str
    title: str
    year: int | None = None
    attributes: dict[str, list[str]] = Field(default_factory=dict)
    rating: float | None = None
    position: int = Field(description="1 = the most recent item")


class UserProfileOutput(BaseModel):
    user_id: str | None
    history_length: int
    features: dict[str, str] = Field(default_factory=dict, description="What the dataset knows of the user")
    attributes: dict[str, list[ValueCount]] = Field(description="Per attribute type, most frequent values first")
    recent_attributes: dict[str, list[ValueCount]] = Field(
        description="Per attribute type, values among the most recent items, most recently seen first"
    )
    recent_items: list[HistoryItem] = Field(description="Most recent first")
    top_rated: list[HistoryItem] = Field(default_factory=list, description="Highest rated first (ties: most recent)")


def _value_counts(toolbox: Toolbox, history: np.ndarray, limit: int, by_recency: bool) -> dict[str, list[ValueCount]]:
    length = len(history)
    out: dict[str, list[ValueCount]] = {}
    for attribute in toolbox.attribute_items:
        counts: dict[str, int] = {}
        last: dict[str, int] = {}
        for position, dense in enumerate(history[::-1], start=1):  # most recent first
            for value in item_values(toolbox.dataset.item(int(dense)), attribute):
                counts[value] = counts.get(value, 0) + 1
                last.setdefault(value, position)
        # the key is used at once, in this iteration, so binding the loop's dicts late is safe
        key = (lambda v: (last[v], -counts[v])) if by_recency else (lambda v: (-counts[v], last[v]))  # noqa: B023
        values = sorted(counts, key=key)[:limit]
        if values:
            out[attribute] = [ValueCount(value=v, count=counts[v], share=round(counts[v] / length, 4), last_seen=last[v]) for v in values]
    return out


def user_profile(toolbox: Toolbox, args: UserProfileInput) -> UserProfileOutput:
    history = toolbox.history(args.user_id, args.history)
    assert history is not None
    ratings = toolbox.dataset.user_ratings(args.user_id) if args.user_id is not None else {}

    def entry(dense: int, position: int) -> HistoryItem:
        item = toolbox.dataset.item(dense)
        return HistoryItem(
            id=item.id,
            title=item.title,
            year=item.year,
            attributes={kind: list(values) for kind, values in item.attributes.items()},
            rating=ratings.get(item.id),
            position=position,
        )

    newest_first = [(int(d), p) for p, d in enumerate(history[::-1], start=1)]
    top_rated: list[HistoryItem] = []
    if ratings:
        rated = [(d, p) for d, p in newest_first if toolbox.dataset.item(d).id in ratings]
        rated.sort(key=lambda dp: (-ratings[toolbox.dataset.item(dp[0]).id], dp[1]))
        top_rated = [entry(d, p) for d, p in rated[: args.recent]]
    return UserProfileOutput(
        user_id=args.user_id,
        history_length=len(history),
        features=dict(toolbox.dataset.user_features.get(args.user_id, {})) if args.user_id else {},
        attributes=_value_counts(toolbox, history, args.top_values, by_recency=False),
        recent_attributes=_value_counts(toolbox, history[-args.recent :], args.top_values, by_recency=True),
        recent_items=[entry(d, p) for d, p in newest_first[: args.recent]],
        top_rated=top_rated,
    )

"""The candidate pool (the "candidate bus"): every item any tool call returned, once, with all
of its scores and every find that put it there, each with an explicit role.

    pool = Pool().add(seed.items, "seed").add(probe.items, "probe", intent="more 1990s Drama", weight=0.6)
    fused = pool.fuse({"plain": plain_scores, "genre": genre_scores}, bonus=0.3)
    done = pool.complete(sorted(fused, key=fused.get, reverse=True), k=10, backbone=seed_ids, excluded=history)
    pool.explain(done.items[0], title=spoken_title)   # Reason(text=..., tool=...)

Roles: `seed` (the backbone's own ranking the pool starts from), `probe` (a tool call the LLM
chose, or an intent of the menu), `asked` (a call the caller planned for the person: "more like
the second one"). A probe made for a menu intent carries the intent in words and its weight (the
LLM's probability for it, relative to the most wanted intent). Which find an item's reason cites
is decided by role, weight and specificity, never by the order the finds were made in, so one
item has one reason wherever it is shown (the agent, the conversation, the server, MCP).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from tools.retrieval import zscore
from tools.schemas import Provenance, ScoredItem
from tools.toolbox import PLAIN, variant_phrase

Role = Literal["seed", "probe", "asked"]
# Which find a reason cites first: what the person asked for, then what the LLM probed, then
# the backbone's own ranking.
ROLE_ORDER: dict[str, int] = {"asked": 0, "probe": 1, "seed": 2}
# Within a role, the most specific tool first: items named for the wish (rank over the caller's
# own candidates), a similarity search, a text search, retrieve, then the catalogue's best.
TOOL_ORDER: dict[str, int] = {"rank": -1, "similar_items": 0, "semantic_search": 1, "retrieve": 2, "top_items": 3}
# The constraints a reason names (the others, such as the subject or exclusions, are bookkeeping).
MIN_WEIGHT = 1e-3  # an intent wanted not at all still places its items, far behind the others
NARROWING = ("genres", "exclude_genres", "year_from", "year_to", "attributes", "exclude_attributes")


class Find(BaseModel):
    """One tool call's return of one item."""

    role: Role
    provenance: Provenance
    position: int = Field(ge=1, description="The item's place in that call's result, 1-based")
    intent: str | None = Field(None, description="The menu intent the call was made for, in words")
    kind: str | None = Field(None, description="That intent's kind (agent.intents.IntentKind)")
    weight: float = Field(1.0, ge=0.0, le=1.0, description="How much the call counts: 1 for the most wanted intent and free probes")
    genres: list[str] = Field(default_factory=list, description="Genres its intent's words name beyond its call's own filter")


class PoolItem(BaseModel):
    item: ScoredItem = Field(description="The item; its scores and provenance gather every find's")
    finds: list[Find] = Field(default_factory=list)

    @property
    def probe_weight(self) -> float:
        """The weight of the most wanted call beyond the seed that found it (0: the seed alone)."""
        return max((f.weight for f in self.finds if f.role != "seed"), default=0.0)


class Reason(BaseModel):
    model_config = ConfigDict(frozen=True)

    text: str
    tool: str = Field(description="The tool whose result the reason cites")


class Completion(BaseModel):
    """A validated top-k: `items` in order, how many were `filled` in from the backbone, and the
    ids `dropped` from the order asked for (not in the pool, excluded or repeated)."""

    items: list[str]
    filled: int = 0
    dropped: list[str] = Field(default_factory=list)


def constraint_text(constraints: Mapping[str, Any]) -> str:
    """The narrowing constraints in words: "Comedy or Drama; no Horror; 1990-1999"."""
    parts = []
    if constraints.get("genres"):
        parts.append(" or ".join(constraints["genres"]))
    for values in (constraints.get("attributes") or {}).values():  # each kind a further narrowing
        parts.append(" or ".join(values))
    if constraints.get("exclude_genres"):
        parts.append("no " + ", no ".join(constraints["exclude_genres"]))
    low, high = constraints.get("year_from"), constraints.get("year_to")
    if low is not None and high is not None:
        parts.append(f"{low}-{high}")
    elif low is not None:
        parts.append(f"from {low}")
    elif high is not None:
        parts.append(f"up to {high}")
    return "; ".join(parts)


def call_of(provenance: Provenance) -> str:
    """One string per tool call that found items: its tool, variant and resolved constraints."""
    return json.dumps([provenance.tool, provenance.variant, provenance.constraints], sort_keys=True, default=str)


def _cited_first(find: Find) -> tuple[Any, ...]:
    """Sort key of the find a reason cites: role; among menu intents, the one that placed the item
    highest for how much it was wanted (place / weight), so that a broad intent wanted most does
    not claim every item it also returned lower down (with the prior's weights, all ten reasons
    of a list named "recent genres"); then the most wanted, the most specific tool (a retrieve
    with a text query counts as a text search), more narrowing constraints, the best place in
    its result; the tool, variant and intent only break exact ties."""
    p = find.provenance
    tool = TOOL_ORDER.get(p.tool, 3) - 2 * (p.tool == "retrieve" and bool(p.constraints.get("query")))
    narrowing = sum(1 for key in NARROWING if p.constraints.get(key) not in (None, [], {}))
    wanted_place = find.position / max(find.weight, MIN_WEIGHT) if find.intent is not None else 0.0
    return ROLE_ORDER[find.role], wanted_place, -find.weight, tool, -narrowing, find.position, p.tool, p.variant or "", find.intent or ""


def holds(find: Find, own: set[str], genres_of: Callable[[str], set[str] | None]) -> bool:
    """Whether what a find would say is true of an item with genres `own`: "more like X" needs a
    genre shared with X, an intent that names genres its call did not filter by ("a theme:
    Fantasy like ...") needs one of them."""
    if find.genres and not own & set(find.genres):
        return False
    if find.provenance.tool != "similar_items":
        return True
    seeds = [genres_of(s) for s in find.provenance.constraints.get("items", [])]
    return any(s is None or own & s for s in seeds)


def reason_for(
    finds: Sequence[Find],
    title: Callable[[str], str] = str,
    phrases: Mapping[str, str] | None = None,
    holds_for: Callable[[Find], bool] | None = None,
) -> Reason:
    """Why an item is on a list, citing the find that explains it best (see `_cited_first`);
    `title` turns an item id into words for "more like ..."; `phrases` says in words what each
    backbone variant ranks by (`Toolbox.variant_phrases`; without it, every variant but the
    plain one reads as attribute-aware); a find for which `holds_for` is false (see `holds`) is
    never cited: its words would claim what the item is not."""
    true = [f for f in finds if holds_for is None or holds_for(f)]
    if not true:
        return Reason(text="what your history suggests" if finds else "completed from the backbone's ranking", tool="retrieve")
    cited = min(true, key=_cited_first)
    chosen = cited.provenance
    if cited.intent is not None:  # the intent already says it in words
        return Reason(text=cited.intent, tool=chosen.tool)
    c = chosen.constraints
    if chosen.tool == "similar_items":
        seeds = ", ".join(title(i) for i in c.get("items", [])[:3])
        how = {"text": "similar content", "blend": "similar content and genres, watched by the same people"}.get(
            chosen.variant or "", "liked by the same people"
        )
        text = f"more like {seeds}: {how}"
    elif chosen.tool == "rank":  # a caller's own candidates: in the conversation, titles an LLM named
        text = "named by the language model for your wish"
    elif chosen.tool == "top_items":
        text = {"quality": "among the best-rated", "popularity": "among the most watched"}.get(
            chosen.variant or "", "well rated and widely watched"
        )
    elif chosen.tool == "semantic_search":
        text = f'matches "{c.get("query", "")}"'
    elif c.get("query"):
        text = f'matches "{c["query"]}" and your history'
    else:
        variant = chosen.variant or PLAIN
        text = (phrases or {}).get(variant) or variant_phrase(None if variant == PLAIN else variant)
    # words only: the tool that found it is `Reason.tool`, shown by the trace, not the reason
    detail = constraint_text(c)
    return Reason(text=f"{text}{f' ({detail})' if detail else ''}", tool=chosen.tool)


class Pool(BaseModel):
    """Items by id, in the order they first arrived. Adding returns a new pool (graph state is
    never changed in place)."""

    items: dict[str, PoolItem] = Field(default_factory=dict)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self.items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, item_id: str) -> PoolItem:
        return self.items[item_id]

    def ids(self) -> list[str]:
        return list(self.items)

    def add(
        self,
        found: Sequence[ScoredItem],
        role: Role,
        intent: str | None = None,
        kind: str | None = None,
        weight: float = 1.0,
        genres: Sequence[str] = (),
    ) -> Pool:
        """The pool with one tool call's result added under `role` (made for `intent` of `kind`,
        counting `weight`, whose words name `genres`): a known item gains the new scores,
        provenance and finds."""
        items = dict(self.items)
        for position, item in enumerate(found, start=1):
            finds = [
                Find(role=role, provenance=p, position=position, intent=intent, kind=kind, weight=weight, genres=list(genres))
                for p in item.provenance
            ]
            known = items.get(item.id)
            if known is None:
                items[item.id] = PoolItem(item=item, finds=finds)
                continue
            merged = known.item.model_copy(
                update={
                    "scores": {**known.item.scores, **item.scores},
                    "provenance": [*known.item.provenance, *item.provenance],
                }
            )
            items[item.id] = PoolItem(item=merged, finds=[*known.finds, *finds])
        return Pool(items=items)

    def fuse(self, scores: Mapping[str, Mapping[str, float]], bonus: float = 0.0) -> dict[str, float]:
        """Each pool item's fused score: the sum over score sets (one per backbone variant, keyed
        by item id) of its z-score within the pool, plus `bonus` times the weight of the most
        wanted call beyond the seed ranking that found it (a free probe or an ask counts 1)."""
        z = self.zscores(scores).sum(axis=0)
        return {i: float(z[n]) + bonus * self.items[i].probe_weight for n, i in enumerate(self.ids())}

    def zscores(self, scores: Mapping[str, Mapping[str, float]]) -> np.ndarray:
        """Per score set (rows, in `scores`' order), each pool item's z-score within the pool (columns, in pool order)."""
        ids = self.ids()
        everyone = np.ones(len(ids), dtype=bool)
        rows = [zscore(np.array([by_id[i] for i in ids], dtype=np.float64), everyone) for by_id in scores.values()]
        return np.array(rows).reshape(len(rows), len(ids))

    def complete(self, order: Iterable[str], k: int, backbone: Sequence[str] = (), excluded: Collection[str] = ()) -> Completion:
        """Exactly k items where the pool has them: those of `order` that are in the pool, not
        excluded and not repeated, then the backbone's order, then the rest of the pool."""
        chosen: list[str] = []
        dropped: list[str] = []
        for item_id in order:
            if item_id in self.items and item_id not in excluded and item_id not in chosen:
                chosen.append(item_id)
            else:
                dropped.append(item_id)
        chosen = chosen[:k]
        filled = 0
        for item_id in [*backbone, *self.items]:
            if len(chosen) >= k:
                break
            if item_id not in chosen and item_id not in excluded:
                chosen.append(item_id)
                filled += 1
        return Completion(items=chosen, filled=filled, dropped=dropped)

    def lead(self, taste: Mapping[str, float], taste_weight: float) -> list[str]:
        """What the person's own asks found, best match first: the list leads with it when they
        named what they want ("like X", a wish in words), and their history only reorders close
        matches. Per ask (a call the caller planned), an item's match is 1 - (place - 1) / the
        call's result length, averaged over the asks (0 for an ask that did not find it); to it
        is added `taste_weight` times the item's `taste` (its fused score) z-scored over these
        items. Ties go to the earlier pool item."""
        lengths: dict[str, int] = {}
        places: dict[str, dict[str, int]] = {}
        for item_id, entry in self.items.items():
            for find in entry.finds:
                if find.role == "asked":
                    call = call_of(find.provenance)
                    lengths[call] = max(lengths.get(call, 0), find.position)
                    places.setdefault(item_id, {}).setdefault(call, find.position)
        if not places:
            return []
        ids = list(places)
        match = np.array([sum(1 - (p - 1) / lengths[c] for c, p in places[i].items()) / len(lengths) for i in ids])
        liked = zscore(np.array([taste.get(i, 0.0) for i in ids], dtype=np.float64), np.ones(len(ids), dtype=bool))
        total = match + taste_weight * liked
        return [ids[n] for n in np.argsort(-total, kind="stable")]

    @staticmethod
    def keep_own(led: list[str], own: list[str], share: float, k: int) -> list[str]:
        """The first k - m of what the asks found, then the person's own top m not among them
        (m = `share` of k), then the rest of what the asks found."""
        m = round(share * k)
        if m <= 0:
            return led
        head = led[: k - m]
        taken = set(head)
        mine = [i for i in own if i not in taken][:m]
        taken |= set(mine)
        return [*head, *mine, *(i for i in led if i not in taken)]

    def explain(
        self,
        item_id: str,
        title: Callable[[str], str] = str,
        phrases: Mapping[str, str] | None = None,
        genres_of: Callable[[str], set[str] | None] | None = None,
    ) -> Reason:
        """The one reason for one item (see `reason_for`); `genres_of` (`Toolbox.genres_of`)
        lets it cite only what holds of the item."""
        own = genres_of(item_id) if genres_of is not None else None
        check = (lambda find: holds(find, own, genres_of)) if genres_of is not None and own is not None else None
        return reason_for(self.items[item_id].finds, title, phrases, check)

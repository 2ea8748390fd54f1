"""Retrieval tools: `retrieve` (a backbone's full-catalogue ranking for a user, masked by
attribute-value constraints, optionally fused with a free-text query), `semantic_search` (items
for a free-text description), `similar_items` (items like given ones) and `top_items` (the
catalogue's own best, for anyone: by its ratings and how widely it is watched).

Each scores the whole catalogue once (one forward pass, or one pass over the text vectors),
masks it with `tools.constraints.to_mask` and cuts the top k with `np.argpartition`. The
user's history is always excluded.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from tools.constraints import CandidateMask, Constraints, Filters, to_mask
from tools.schemas import MAX_K, Id, InvalidArguments, ItemsOutput, Provenance, ScoredItem, StrList, ToolInput, UnknownValue
from tools.toolbox import BLEND_SPACE, TEXT_SPACE, Toolbox


def top_k(scores: np.ndarray, mask: np.ndarray, k: int) -> np.ndarray:
    """Dense ids of the k best-scoring items where `mask` holds, best first (ties: lower id)."""
    candidates = np.flatnonzero(mask)
    values = scores[candidates]
    k = min(k, len(candidates))
    if k < len(candidates):
        part = np.argpartition(-values, k - 1)[:k]
    else:
        part = np.arange(len(candidates))
    order = part[np.lexsort((candidates[part], -values[part]))]
    ids: np.ndarray = candidates[order]
    return ids


def zscore(scores: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Scores standardised over the items in `mask` (the ones that can be returned)."""
    values = scores[mask]
    spread = float(values.std())
    out: np.ndarray = (scores - float(values.mean())) / (spread if spread > 0 else 1.0)
    return out


def _answer(items: list[ScoredItem], candidates: CandidateMask, k: int) -> ItemsOutput:
    """The tool's output: its items, how many passed the constraints, and a note where fewer than k did."""
    notes = [f"only {candidates.count} item(s) match the constraints, fewer than k={k}"] if candidates.count < k else []
    return ItemsOutput(items=items, matched=candidates.count, notes=notes)


class _UserArgs(ToolInput):
    user_id: Id | None = Field(None, description="The user's id")
    history: StrList | None = Field(None, description="Instead of user_id: the items the user saw, ids or titles, oldest first")


class _RetrieveHead(_UserArgs):
    k: int = Field(10, ge=1, le=MAX_K, description="How many items to return")
    variant: str | None = Field(
        None,
        description='Backbone: "plain" (the sequence model), or an attribute type an attribute-aware model was trained with (e.g. '
        '"genre"); default: the main model',
    )


class RetrieveInput(Constraints, _RetrieveHead):
    """Top-k items for a user from a sequential recommender, with optional constraints."""


def retrieve(toolbox: Toolbox, args: RetrieveInput) -> ItemsOutput:
    """The backbone's ranking of the whole catalogue for the user, masked by the constraints.
    With `query`, the order is the sum of the backbone score and the query's text similarity,
    each z-scored over the items that pass the constraints (equal weights); all three scores
    are returned ("model:VARIANT", "text", "fused")."""
    variant = toolbox.variant(args.variant)
    history = toolbox.history(args.user_id, args.history)
    assert history is not None
    candidates = to_mask(toolbox, args.filters(), exclude=history)
    found = None if args.query else toolbox.approximate_top(variant, history, candidates.mask, args.k)
    if found is not None:
        provenance = Provenance(tool="retrieve", variant=variant, constraints=candidates.applied)
        return _answer(
            [toolbox.scored_item(int(d), {f"model:{variant}": s}, provenance) for d, s in zip(*found, strict=True)], candidates, args.k
        )
    scores = toolbox.score(variant, history)
    named = {f"model:{variant}": scores}
    order = scores
    applied = dict(candidates.applied)
    if args.query:
        text = toolbox.text_scores(args.query)
        order = zscore(scores, candidates.mask) + zscore(text, candidates.mask)
        named |= {"text": text, "fused": order}
        applied["query"] = args.query
    provenance = Provenance(tool="retrieve", variant=variant, constraints=applied)
    top = top_k(order, candidates.mask, args.k)
    return _answer([toolbox.scored_item(int(d), {n: s[d] for n, s in named.items()}, provenance) for d in top], candidates, args.k)


class _SearchHead(ToolInput):
    query: str = Field(min_length=1, description='What to look for, in words: "space opera with a rebellion", "quiet french drama"')
    k: int = Field(10, ge=1, le=MAX_K, description="How many items to return")


class SemanticSearchInput(Filters, _UserArgs, _SearchHead):
    """Items whose text (title, genres, year, description) best matches a description."""


def semantic_search(toolbox: Toolbox, args: SemanticSearchInput) -> ItemsOutput:
    """Cosine similarity of the query to every item's text (score "text"), masked by the
    filters; a given user's history is excluded."""
    history = toolbox.history(args.user_id, args.history, required=False)
    candidates = to_mask(toolbox, args.filters(), exclude=history)
    text = toolbox.text_scores(args.query)
    provenance = Provenance(tool="semantic_search", variant=TEXT_SPACE, constraints={"query": args.query, **candidates.applied})
    top = top_k(text, candidates.mask, args.k)
    return _answer([toolbox.scored_item(int(d), {"text": text[d]}, provenance) for d in top], candidates, args.k)


class _SimilarHead(ToolInput):
    items: StrList = Field(min_length=1, max_length=50, description="Item ids or titles to find similar items for")
    k: int = Field(10, ge=1, le=MAX_K, description="How many items to return")
    space: str = Field(
        TEXT_SPACE,
        description='Similar in what: "text" (content: title, genres, year), "model" (the backbone\'s item embeddings: watched by '
        'the same people), "blend" (text, shared genres and watched together, in equal parts); a variant name picks that variant\'s '
        "embeddings",
    )


class SimilarItemsInput(Filters, _UserArgs, _SimilarHead):
    """Items most like the given ones (cosine to their centroid)."""


def similar_items(toolbox: Toolbox, args: SimilarItemsInput) -> ItemsOutput:
    """Cosine similarity to the mean of the given items' vectors (score "similarity"); the
    given items and a given user's history are excluded."""
    seeds = np.asarray(list(dict.fromkeys(toolbox.resolve_items(args.items, "items").tolist())), dtype=np.int64)
    space = args.space
    if space == "model":
        space = toolbox.default_variant
    elif space not in (TEXT_SPACE, BLEND_SPACE):
        try:
            space = toolbox.variant(space)
        except UnknownValue as err:
            valid = [TEXT_SPACE, "model", BLEND_SPACE, *toolbox.variants]
            raise UnknownValue(f"unknown space {args.space!r}: use {', '.join(valid)}", field="space", valid=valid) from err
    history = toolbox.history(args.user_id, args.history, required=False)
    exclude = seeds if history is None else np.concatenate([seeds, history])
    candidates = to_mask(toolbox, args.filters(), exclude=exclude, exclude_name="items and history")
    provenance = Provenance(
        tool="similar_items",
        variant=space,
        constraints={"items": [toolbox.dataset.item(int(d)).id for d in seeds], **candidates.applied},
    )
    if space == BLEND_SPACE:
        similarity = blend_similarity(toolbox, seeds, candidates.mask)
    else:
        index = toolbox.space(space)
        if index.config.kind != "flat":  # a large catalogue: the graph, not a pass over every item
            hits = index.search(index.vectors(seeds).mean(axis=0), args.k, allowed=candidates.mask)
            return _answer(
                [toolbox.scored_item(int(d), {"similarity": s}, provenance) for s, d in zip(*hits, strict=True) if d > 0],
                candidates,
                args.k,
            )
        similarity = index.scores(index.vectors(seeds).mean(axis=0))
    if not np.isfinite(similarity[candidates.mask]).all():
        raise InvalidArguments(f"space {space!r} lacks vectors for some items", field="space")
    top = top_k(similarity, candidates.mask, args.k)
    return _answer([toolbox.scored_item(int(d), {"similarity": similarity[d]}, provenance) for d in top], candidates, args.k)


def blend_similarity(toolbox: Toolbox, seeds: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Like the seeds in content (text cosine to their centroid), in kind (genre overlap) and in
    audience (watched together), each z-scored over the items that can be returned, summed.
    One sense alone misleads: the audience of Toy Story also watched Star Wars and Fargo, and
    its nearest texts include any title with "Story" in it."""
    text = toolbox.space(TEXT_SPACE)
    parts = (text.scores(text.vectors(seeds).mean(axis=0)), toolbox.genre_overlap(seeds), toolbox.audience_scores(seeds))
    blended = sum((zscore(np.where(np.isfinite(p), p, 0.0), mask) for p in parts), np.zeros(toolbox.num_items + 1))
    blended[0] = -np.inf
    return blended


class _TopHead(ToolInput):
    k: int = Field(10, ge=1, le=MAX_K, description="How many items to return")
    by: Literal["quality", "popularity", "both"] = Field(
        "both",
        description="quality: the shrunk mean rating (the best-rated, many ratings counting more than few); popularity: "
        "how many people watched it; both: their z-scores summed",
    )


class TopItemsInput(Filters, _UserArgs, _TopHead):
    """The catalogue's best items under the constraints, for anyone: no history needed."""


def top_items(toolbox: Toolbox, args: TopItemsInput) -> ItemsOutput:
    """The catalogue ordered by its own ratings (score "quality", the shrunk mean rating), by
    popularity (score "popularity", log count), or by both z-scored and summed; unrated items
    last. A given user's history is excluded. Data without ratings orders by popularity."""
    history = toolbox.history(args.user_id, args.history, required=False)
    candidates = to_mask(toolbox, args.filters(), exclude=history)
    rated = np.isfinite(toolbox.quality)
    popularity = np.log1p(toolbox.popularity.astype(np.float64))
    quality = np.where(rated, toolbox.quality, -np.inf) if rated.any() else popularity
    if args.by == "quality":
        order = quality
    elif args.by == "popularity":
        order = popularity
    else:
        order = np.where(rated, zscore(np.where(rated, quality, 0.0), candidates.mask & rated), -np.inf) + zscore(
            popularity, candidates.mask
        )
    provenance = Provenance(tool="top_items", variant=args.by, constraints=candidates.applied)
    top = top_k(order, candidates.mask, args.k)
    return _answer(
        [toolbox.scored_item(int(d), {"quality": float(quality[d]), "popularity": float(popularity[d])}, provenance) for d in top],
        candidates,
        args.k,
    )

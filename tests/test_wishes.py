"""The wish benchmark: its file (split into halves before tuning), its checks of a list and of a
reason, and a small run through the real conversation on ML-100K."""

from __future__ import annotations

from pathlib import Path

from agent.chat import ShownItem
from agent.llm.base import NoLLM
from eval.wishes import ISSUE_WISHES, Checker, Wish, WishBench, run_wishes, summarise
from tools.toolbox import Toolbox

pytest_plugins = ["fixtures_tools"]
BENCH = Path(__file__).resolve().parents[1] / "eval/bench/wishes.toml"


def test_the_file_holds_a_held_out_half_with_the_wishes_first_reported() -> None:
    bench = WishBench.load(BENCH)
    held = [w for w in bench.wishes if w.half == "held_out"]
    assert sum(w.kind == "checkable" for w in held) >= 30 and sum(w.kind == "checkable" for w in bench.wishes) >= 60
    assert sum(w.kind == "knowledge" for w in bench.wishes) >= 15 and all(w.answers for w in bench.wishes if w.kind == "knowledge")
    assert set(ISSUE_WISHES) <= {w.text for w in held}
    assert len({w.id for w in bench.wishes}) == len(bench.wishes)


def shown(toolbox: Toolbox, title: str, reason: str) -> ShownItem:
    dense = toolbox.resolve_item(title, "title")
    item = toolbox.dataset.item(dense)
    return ShownItem(id=item.id, title=item.title, year=item.year, genres=item.attributes["genre"], reason=reason, tool="retrieve")


def test_a_reason_that_claims_what_its_item_lacks_is_caught(toolbox: Toolbox) -> None:
    checker = Checker(toolbox)
    fargo = "Fargo (1996)"  # Crime, Drama, Thriller
    assert checker.false_claims(shown(toolbox, fargo, "more 1990s Drama, like your Heat and Casino")) == []
    assert checker.false_claims(shown(toolbox, fargo, "what people watched next (Crime; no Horror; 1990-1999)")) == []
    assert checker.false_claims(shown(toolbox, fargo, "more Comedy or Romance, like your recent Clueless"))
    assert checker.false_claims(shown(toolbox, fargo, "more 1980s Drama"))
    assert checker.false_claims(shown(toolbox, fargo, "what people watched next (Crime; no Thriller)"))
    assert checker.false_claims(shown(toolbox, fargo, "more like Toy Story (1995): similar content"))  # no genre shared
    assert checker.false_claims(shown(toolbox, fargo, 'matches "time travel"'))


def test_a_list_follows_a_wish_when_all_but_one_item_meet_it(toolbox: Toolbox) -> None:
    checker = Checker(toolbox)
    wish = Wish(id="w", half="tuning", text="a 90s crime film, no comedy", genres_any=["Crime"], genres_none=["Comedy"], years=(1990, 1999))
    assert checker.meets(wish, toolbox.dataset.item(toolbox.resolve_item("Fargo (1996)", "t")).id)
    assert not checker.meets(wish, toolbox.dataset.item(toolbox.resolve_item("Toy Story (1995)", "t")).id)
    like = Wish(id="l", half="tuning", text="like Fargo", like="275")  # ML-100K's Sense and Sensibility: Drama, Romance
    assert checker.meets(like, toolbox.dataset.item(toolbox.resolve_item("Fargo (1996)", "t")).id)  # shares Drama


def test_a_small_run_through_the_conversation(toolbox: Toolbox) -> None:
    wishes = [
        Wish(
            id="comedy-80s",
            half="held_out",
            text="a feel-good comedy from the 80s",
            genres_any=["Comedy"],
            genres_none=["Horror"],
            years=(1980, 1989),
        ),
        Wish(
            id="hanks", half="tuning", kind="knowledge", text="the best Tom Hanks movies", quality=True, unreadable=["cast"], answers=["69"]
        ),
    ]
    bench = WishBench(seed=1, known_users=2, k=5, wishes=wishes)
    outcomes = run_wishes(toolbox, NoLLM(), bench)
    assert len(outcomes) == 2 * 3 and all(len(o.items) == 5 for o in outcomes)
    report = summarise(bench, outcomes)
    held = report["held_out"]
    assert held["followed_share"] == 1.0 and held["followed_share_no_history"] == 1.0 and held["false_reason_count"] == 0
    assert report["tuning"]["unreadable_named_share"] == 1.0 and report["tuning"]["answered_no_history_share"] == 1.0

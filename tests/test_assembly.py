"""The learned assembly: the signals of a pool item, a fit on validation users of real ML-100K
that never reads a test target, saved with the run and used by the agent (`assembly =
"learned"`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import only_validation_reads

from agent.assembly import ASSEMBLY_FILE, ITEM_SIGNALS, LearnedAssembly, item_signals, signal_names, signals
from agent.fitting.assembly import fit_assembly
from agent.llm.scripted import ScriptedLLM
from agent.pool import Pool
from agent.prior import KINDS
from agent.recommend import Agent, recommend
from agent.state import AgentConfig
from eval.report import assembly_lines
from tools.schemas import Provenance, ScoredItem
from tools.toolbox import Toolbox

pytest_plugins = ["fixtures_tools"]

CONFIG = AgentConfig(max_rounds=1, menu_choice="uniform")


def view(toolbox: Toolbox, split: str, run_dir: Path) -> Toolbox:
    return Toolbox(toolbox.dataset, toolbox.variants, run_dir=run_dir, split=split, indexes=toolbox.indexes)  # type: ignore[arg-type]


def scored(item_id: str) -> ScoredItem:
    return ScoredItem(id=item_id, title=item_id, provenance=[Provenance(tool="retrieve", variant="plain")])


def test_the_signals_of_a_pool_item() -> None:
    pool = (
        Pool()
        .add([scored("a"), scored("b")], "seed")
        .add([scored("b"), scored("c")], "probe", intent="more like X", kind="more_like", weight=0.5)
    )
    items = np.arange(12, dtype=float).reshape(3, len(ITEM_SIGNALS))
    x = signals(pool, {"plain": {"a": 3.0, "b": 2.0, "c": 1.0}}, items)
    names = signal_names(["plain"])
    assert x.shape == (3, len(names))
    column = {name: x[:, n] for n, name in enumerate(names)}
    assert column["z:plain"] == pytest.approx([1.2247, 0.0, -1.2247], abs=1e-4)
    assert list(column["fused"]) == list(column["z:plain"])  # one variant: its z-score is the fusion
    two = signals(pool, {"plain": {"a": 3.0, "b": 2.0, "c": 1.0}, "genre": {"a": 1.0, "b": 3.0, "c": 2.0}}, items)
    named = signal_names(["plain", "genre"])
    assert two[:, named.index("fused")] == pytest.approx(two[:, 0] + two[:, 1])  # the fixed fusion's score
    assert list(column["probe_weight"]) == [0.0, 0.5, 0.5] and list(column["intent:more_like"]) == [0.0, 0.5, 0.5]
    assert all(list(column[f"intent:{k}"]) == [0.0] * 3 for k in KINDS if k != "more_like")
    assert list(column["seed_place"]) == [1.0, 0.5, 0.0]
    assert (x[:, -len(ITEM_SIGNALS) :] == items).all()


def test_the_item_signals_of_real_items(toolbox: Toolbox) -> None:
    """Popularity and text similarity to the recent history, and the year against the history's."""
    by_popularity = np.argsort(-toolbox.popularity[1:]) + 1
    popular, rare = int(by_popularity[0]), int(by_popularity[-1])
    dated = [d for d in range(1, toolbox.num_items + 1) if toolbox.years[d] > 0]
    old, new = min(dated, key=lambda d: toolbox.years[d]), max(dated, key=lambda d: toolbox.years[d])
    ids = [toolbox.dataset.item(d).id for d in (popular, rare, old, new)]
    x = item_signals(toolbox, ids, np.array([new]))
    column = {name: x[:, n] for n, name in enumerate(ITEM_SIGNALS)}
    assert column["popularity"][0] == column["popularity"].max() and column["popularity"][1] == column["popularity"].min()
    assert column["text_similarity"][3] == column["text_similarity"].max()  # the history's own item
    assert column["year_offset"][2] < 0 and column["year_offset"][3] == 0 and column["year_distance"][2] > 0
    assert (item_signals(toolbox, ids, None)[:, 1:] == 0).all()  # no history: nothing to compare with


def test_the_assembly_is_fit_on_validation_targets_only(toolbox: Toolbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    only_validation_reads(monkeypatch, "assembly")
    report = fit_assembly(view(toolbox, "valid", tmp_path), toolbox.dataset.user_ids[:60], CONFIG)
    monkeypatch.undo()
    assert report.users == 60 and 0 < report.target_in_pool <= 1 and report.assembly.users == round(60 * report.target_in_pool)
    assert list(report.assembly.importance) == signal_names(["plain", "genre"]) == report.assembly.signals
    assert sum(report.assembly.importance.values()) == pytest.approx(1.0, abs=1e-3)
    assert set(report.ndcg_at_10) == {"backbone", "fused", "learned"} and report.held_out_users == 12
    low, high = report.learned_minus_fused[1:]
    assert low <= report.learned_minus_fused[0] <= high
    report.assembly.save(tmp_path)
    assert LearnedAssembly.load(tmp_path).model_dump() == report.assembly.model_dump()
    # the evaluation report says what it was fit on and what it weighs most
    (line,) = assembly_lines({"methods": [{"name": "a", "kind": "agent", "run": str(tmp_path), "assembly": "learned"}]})
    assert f"fit on the {report.assembly.users} validation users" in line and "held-out validation NDCG@10 backbone" in line

    with pytest.raises(ValueError, match="split='valid'"):
        fit_assembly(toolbox, ["1"], CONFIG)


def test_the_agent_orders_its_pool_by_the_saved_assembly(toolbox: Toolbox, tmp_path: Path) -> None:
    fit_assembly(view(toolbox, "valid", tmp_path), toolbox.dataset.user_ids[:40], CONFIG).assembly.save(tmp_path)
    learned = CONFIG.model_copy(update={"assembly": "learned"})
    rec = recommend("1", llm=ScriptedLLM([]), tools=view(toolbox, "test", tmp_path), config=learned)
    ids = [item.id for item in rec.items]
    (note,) = [e for e in rec.trace if e.kind == "assembly"]
    assert len(set(ids)) == 10 and note.observation.startswith("learned: ")
    assert [item.score for item in rec.items] == sorted((item.score for item in rec.items), reverse=True)
    with pytest.raises(ValueError, match=ASSEMBLY_FILE):
        Agent(ScriptedLLM([]), view(toolbox, "test", tmp_path / "elsewhere"), learned)

"""The learned assembly: the signals of a pool item, a fit on validation users of real ML-100K
that never reads a test target, saved with the run and used by the agent (`assembly =
"learned"`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import only_validation_reads

from agent.assembly import ASSEMBLY_FILE, LearnedAssembly, fit_assembly, signal_names, signals
from agent.llm.scripted import ScriptedLLM
from agent.pool import Pool
from agent.prior import KINDS
from agent.recommend import Agent, recommend
from agent.state import AgentConfig
from tools.schemas import Provenance, ScoredItem
from tools.toolbox import Toolbox

pytest_plugins = ["fixtures_tools"]

CONFIG = AgentConfig(max_rounds=1, menu_choice="uniform")


def view(toolbox: Toolbox, split: str, run_dir: Path) -> Toolbox:
    return Toolbox(toolbox.dataset, toolbox.variants, run_dir=run_dir, split=split, ratings=toolbox.ratings, indexes=toolbox.indexes)  # type: ignore[arg-type]


def scored(item_id: str) -> ScoredItem:
    return ScoredItem(id=item_id, title=item_id, provenance=[Provenance(tool="retrieve", variant="plain")])


def test_the_signals_of_a_pool_item() -> None:
    pool = (
        Pool()
        .add([scored("a"), scored("b")], "seed")
        .add([scored("b"), scored("c")], "probe", intent="more like X", kind="more_like", weight=0.5)
    )
    x = signals(pool, {"plain": {"a": 3.0, "b": 2.0, "c": 1.0}}, {"a": 100.0, "b": 10.0, "c": 0.0})
    names = signal_names(["plain"])
    assert x.shape == (3, len(names))
    column = {name: x[:, n] for n, name in enumerate(names)}
    assert column["z:plain"] == pytest.approx([1.2247, 0.0, -1.2247], abs=1e-4)
    assert list(column["probe_weight"]) == [0.0, 0.5, 0.5] and list(column["intent:more_like"]) == [0.0, 0.5, 0.5]
    assert all(list(column[f"intent:{k}"]) == [0.0] * 3 for k in KINDS if k != "more_like")
    assert list(column["seed_place"]) == [1.0, 0.5, 0.0] and column["popularity"][0] > column["popularity"][1] > column["popularity"][2]


def test_the_assembly_is_fit_on_validation_targets_only(toolbox: Toolbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    only_validation_reads(monkeypatch, "assembly")
    report = fit_assembly(view(toolbox, "valid", tmp_path), toolbox.dataset.user_ids[:60], CONFIG)
    monkeypatch.undo()
    assert report.users == 60 and 0 < report.target_in_pool <= 1 and report.assembly.users == round(60 * report.target_in_pool)
    assert set(report.coefficients) == set(signal_names(["plain", "genre"])) and np.isfinite(report.assembly.coef).all()
    assert set(report.ndcg_at_10) == {"fused", "learned_in_sample"}
    report.assembly.save(tmp_path)
    assert LearnedAssembly.load(tmp_path) == report.assembly

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

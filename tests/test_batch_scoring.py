"""`toolrec score`: every user's top-k streamed to Parquet, exactly the evaluation's ranking;
through the inner-product index with its recall measured."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from eval.backbone import backbone_ranks
from eval.cli import app
from tools.batch_scoring import ScoreSettings, score_run
from tools.data.sequences import SequenceDataset
from tools.models.checkpoint import load_model

pytest_plugins = ["fixtures_tools"]


def test_exact_scores_are_the_evaluations_full_ranking(
    ml100k: SequenceDataset, tool_runs: dict[str, Path], data_dir: Path, tmp_path: Path
) -> None:
    report = score_run(tool_runs["plain"], tmp_path / "topk.parquet", data_dir, ScoreSettings(k=20, split="test"), progress=False)
    assert report.users == len(ml100k.user_ids) and report.recall_at_k is None
    table = pq.read_table(tmp_path / "topk.parquet").to_pandas().set_index("user_id").loc[ml100k.user_ids]
    ranks = backbone_ranks(load_model(tool_runs["plain"], ml100k), ml100k, "test")
    targets = [ml100k.item(ml100k.target(u)).id for u in ml100k.user_ids]
    listed = [list(items).index(t) if t in list(items) else None for items, t in zip(table["items"], targets, strict=True)]
    assert listed == [int(r) if r < 20 else None for r in ranks]
    assert all(
        len(items) == 20 and list(scores) == sorted(scores, reverse=True)
        for items, scores in zip(table["items"], table["scores"], strict=True)
    )


def test_ann_scores_leave_out_the_history_and_report_recall(
    ml100k: SequenceDataset, tool_runs: dict[str, Path], data_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "ann.parquet"
    result = CliRunner().invoke(
        app, ["score", "--run", str(tool_runs["plain"]), "--out", str(out), "--k", "50", "--ann", "--data-dir", str(data_dir)]
    )
    assert result.exit_code == 0, result.output
    assert '"recall_at_k"' in result.output
    report = score_run(tool_runs["plain"], out, data_dir, ScoreSettings(k=50, ann=True), progress=False)
    assert report.index_seconds == 0.0  # built by the first call, reused
    assert report.recall_at_k is not None and report.recall_at_k >= 0.95
    table = pq.read_table(out).to_pandas()
    assert len(table) == len(ml100k.user_ids)
    for user, items in zip(table["user_id"][:100], table["items"][:100], strict=True):
        seen = {ml100k.item(int(d)).id for d in ml100k.history(user, "full")}
        assert len(items) == 50 and not seen & set(items)


def test_ann_refuses_a_model_without_vectors(tmp_path: Path, data_dir: Path, ml100k: SequenceDataset) -> None:
    from eval.training import TrainSpec, train_run

    train_run(TrainSpec(dataset="ml-100k", model="popularity"), tmp_path / "pop", data_dir, data=ml100k)
    result = CliRunner().invoke(app, ["score", "--run", str(tmp_path / "pop"), "--out", str(tmp_path / "x.parquet"), "--ann"])
    assert result.exit_code == 1 and "needs a model that scores by a product of vectors" in result.output
    assert not (tmp_path / "x.parquet").exists()
    exact = score_run(tmp_path / "pop", tmp_path / "pop.parquet", data_dir, ScoreSettings(k=5), progress=False)
    assert exact.users == len(ml100k.user_ids) and np.isfinite(exact.users_per_second)


@pytest.mark.skipif(
    importlib.util.find_spec("ray") is None, reason="Ray is not installed (pip install '.[ray]'; scripts/test.sh installs it)"
)
def test_ray_scores_every_user_as_one_process_does(tool_runs: dict[str, Path], data_dir: Path, tmp_path: Path) -> None:
    run = ["score", "--run", str(tool_runs["plain"]), "--k", "20", "--users", "300", "--data-dir", str(data_dir)]
    alone = CliRunner().invoke(app, [*run, "--out", str(tmp_path / "one.parquet"), "--threads", "1"])
    assert alone.exit_code == 0, alone.output
    spread = CliRunner().invoke(app, [*run, "--out", str(tmp_path / "ray.parquet"), "--ray", "auto", "--ray-workers", "2"])
    assert spread.exit_code == 0, spread.output
    one, ray = (pq.read_table(tmp_path / f"{name}.parquet").to_pandas().set_index("user_id").sort_index() for name in ("one", "ray"))
    assert len(one) == 300 and list(one.index) == list(ray.index)
    assert [list(i) for i in one["items"]] == [list(i) for i in ray["items"]]


def test_scoring_imports_no_ray_unless_asked(tool_runs: dict[str, Path], data_dir: Path, tmp_path: Path) -> None:
    code = (
        "import sys\nfrom typer.testing import CliRunner\nimport eval.cli, eval.batch\n"
        f"done = CliRunner().invoke(eval.cli.app, ['score', '--run', {str(tool_runs['plain'])!r}, '--users', '20', "
        f"'--out', {str(tmp_path / 'x.parquet')!r}, '--data-dir', {str(data_dir)!r}])\n"
        "assert done.exit_code == 0, done.output\n"
        "assert not [m for m in sys.modules if m == 'ray' or m.startswith('ray.')]\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]

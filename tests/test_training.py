"""Fast CPU training on real MovieLens-100K: the chunked full-softmax loss is the plain one,
padding to a batch's own length changes no score, bucketed epochs cover every row once, the
default settings still learn, the time-to-quality record is written, and `eval run` trains a
missing run, reuses a matching one and refuses one trained otherwise."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from eval.backbone import evaluate_backbone
from eval.cli import app
from eval.config import EvalConfig
from eval.runner import run_eval
from eval.training import METRICS, SPEC, SettingsMismatch, TrainSpec, check_reusable, read_spec, train_run
from tools.data.sequences import SequenceDataset
from tools.models.base import PopularitySampler, log_q_ce, shared_negatives_ce
from tools.models.checkpoint import build_model, new_config
from tools.models.heap import KEEP_UP_TO_BYTES, keep_heap
from tools.models.softmax import full_softmax_ce
from tools.models.train import TrainConfig, _batch_order

# the defaults, made small enough for the suite: ML-100K histories are short
QUICK = {"dataset": "ml-100k", "max_len": 50, "epochs": 15, "threads": 1}


def test_chunked_cross_entropy_is_the_plain_one() -> None:
    torch.manual_seed(0)
    hidden = torch.randn(700, 16, requires_grad=True)  # several chunks, the last one partial
    vectors = torch.randn(300, 16, requires_grad=True)
    targets = torch.randint(0, 300, (700,))
    expected = torch.nn.functional.cross_entropy(hidden @ vectors.T, targets)
    expected_grads = torch.autograd.grad(expected, (hidden, vectors))
    for dtype, tolerance in ((torch.float32, 1e-5), (torch.bfloat16, 3e-2)):
        loss = full_softmax_ce(hidden, vectors, targets, dtype)
        grads = torch.autograd.grad(loss, (hidden, vectors))
        assert abs(loss.item() - expected.item()) < tolerance * expected.item()
        for got, want in zip(grads, expected_grads, strict=True):
            assert (got - want).norm() <= tolerance * want.norm()


def test_shared_negatives_cover_the_catalogue_as_the_full_softmax_and_fewer_score_less() -> None:
    torch.manual_seed(0)
    hidden = torch.randn(500, 16, requires_grad=True)
    vectors = torch.randn(301, 16, requires_grad=True)  # row 0 is padding, never a negative
    targets = torch.randint(1, 301, (500,))
    expected = torch.nn.functional.cross_entropy(hidden @ vectors[1:].T, targets - 1)
    everything = shared_negatives_ce(hidden, vectors, targets, negatives=10_000)  # every item, its own target masked
    assert abs(everything.item() - expected.item()) < 1e-5 * expected.item()
    assert torch.autograd.grad(everything, vectors)[0][0].abs().max() == 0.0
    # a sample's softmax is over fewer competitors, so its loss is lower on average
    assert shared_negatives_ce(hidden, vectors, targets, negatives=50).item() < expected.item()


def test_log_q_softmax_is_the_full_one_when_every_item_is_scored_and_draws_by_popularity() -> None:
    torch.manual_seed(0)
    hidden = torch.randn(400, 16, requires_grad=True)
    vectors = torch.randn(201, 16, requires_grad=True)
    targets = torch.randint(1, 201, (400,))  # not drawn by popularity, the hard case
    counts = np.arange(201) ** 2
    sampler = PopularitySampler(counts)
    expected = torch.nn.functional.cross_entropy(hidden @ vectors[1:].T, targets - 1)
    assert abs(log_q_ce(hidden, vectors, targets, 200, sampler).item() - expected.item()) < 1e-5 * expected.item()
    ids, log_expected = sampler.draw(100_000, torch.device("cpu"))
    assert ids.min() >= 1 and ids.max() <= 200  # never the padding
    drawn = np.bincount(ids.numpy(), minlength=201)
    np.testing.assert_allclose(drawn[1:], np.exp(log_expected.numpy()[1:]), rtol=0.1, atol=20)
    # half the catalogue drawn by popularity estimates the full softmax closely
    sampled = torch.stack([log_q_ce(hidden * 0.3, vectors * 0.3, targets, 100, sampler) for _ in range(20)]).mean()
    full = torch.nn.functional.cross_entropy((hidden * 0.3) @ (vectors[1:] * 0.3).T, targets - 1)
    assert abs(sampled.item() - full.item()) < 0.03 * full.item()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_the_heap_is_kept_for_training_a_small_item_table() -> None:
    assert not keep_heap(KEEP_UP_TO_BYTES + 1)  # a million items' table would fragment it
    assert keep_heap(3707 * 64 * 4)  # both mallopt calls accepted (ML-1M)


@pytest.mark.parametrize("kind", ["sasrec", "bert4rec"])
def test_padding_to_the_batch_changes_no_score(ml100k: SequenceDataset, kind: str) -> None:
    torch.manual_seed(0)
    model = build_model(new_config(kind, ml100k, max_len=50, dim=32), ml100k).eval()  # type: ignore[arg-type]
    short = ml100k.sequences[0][:4]
    longest = max(ml100k.sequences, key=len)
    with torch.no_grad():
        alone = model.score([short])  # padded to 4 (5 for BERT4Rec's mask token)
        beside_a_long_one = model.score([short, longest])[:1]  # padded to max_len
    np.testing.assert_allclose(alone[:, 1:].numpy(), beside_a_long_one[:, 1:].numpy(), atol=1e-5)


def test_bucketed_epoch_covers_every_row_once(ml100k: SequenceDataset) -> None:
    sequences = ml100k.train_sequences()
    lengths = np.array([len(s) for s in sequences])
    batches = _batch_order(lengths, TrainConfig(batch_size=32, bucket=8), np.random.default_rng(0))
    rows = np.concatenate(batches)
    assert sorted(rows.tolist()) == list(range(len(sequences)))
    spread = np.mean([np.ptp([len(sequences[i]) for i in batch]) for batch in batches])
    unsorted = _batch_order(lengths, TrainConfig(batch_size=32, bucket=1), np.random.default_rng(0))
    assert spread < 0.5 * np.mean([np.ptp([len(sequences[i]) for i in batch]) for batch in unsorted])


def test_defaults_learn_and_record_time_to_quality(ml100k: SequenceDataset, data_dir: Path, tmp_path: Path) -> None:
    popularity = build_model(new_config("popularity", ml100k), ml100k)
    baseline = evaluate_backbone(popularity, ml100k, "test", ks=(10,))["ndcg@10"]
    metrics = train_run(TrainSpec(**QUICK), tmp_path, data_dir, data=ml100k)
    assert metrics["test_ndcg10"] > 1.2 * baseline, (metrics, baseline)

    saved = json.loads((tmp_path / METRICS).read_text())
    curve = saved["curve"]
    assert [p["epoch"] for p in curve] == list(range(1, saved["epochs"] + 1))
    assert all(b["seconds"] > a["seconds"] > 0 for a, b in zip(curve, curve[1:], strict=False))
    assert max(p["ndcg@10"] for p in curve) == pytest.approx(saved["valid"]["ndcg@10"], abs=1e-5)
    reached = [p["seconds"] for p in curve if p["ndcg@10"] >= 0.18]
    assert saved["seconds_to_ndcg10_0.18"] == (reached[0] if reached else None)
    assert TrainSpec.model_validate(saved["settings"]) == TrainSpec(**QUICK).resolved(ml100k.num_items)
    assert saved["settings"]["loss"] == "ce" and saved["settings"]["batch_size"] == 32  # a small catalogue: the full softmax
    assert saved["best_valid_ndcg10"] == saved["valid"]["ndcg@10"] and saved["test_recall10"] == saved["test"]["recall@10"]
    assert saved["seconds_per_epoch"] > 0 and saved["peak_rss_mb"] > 0


def test_a_run_with_other_settings_is_refused(ml100k: SequenceDataset, data_dir: Path, tmp_path: Path) -> None:
    train_run(TrainSpec(**{**QUICK, "epochs": 1}), tmp_path, data_dir, data=ml100k)
    with pytest.raises(SettingsMismatch, match=r"lr: 0\.01 != 0\.002"):
        train_run(TrainSpec(**{**QUICK, "epochs": 1, "lr": 0.01}), tmp_path, data_dir, data=ml100k)
    # how fast it ran is not a setting of the weights
    assert not TrainSpec(**QUICK).differences(TrainSpec(**{**QUICK, "threads": 2, "device": "cpu"}))


@pytest.mark.parametrize("kind", ["sasrec", "bert4rec"])
def test_position_embeddings_start_at_the_set_scale(ml100k: SequenceDataset, kind: str) -> None:
    for std in (0.02, 1.0):
        model = build_model(new_config(kind, ml100k, max_len=50, position_std=std), ml100k)
        assert model.encoder.positions.weight.std().item() == pytest.approx(std, rel=0.1)
    assert TrainSpec().position_std == 0.02


def test_automatic_choices_follow_the_catalogue_and_runs_recorded_before_stay_reusable(tmp_path: Path) -> None:
    small, large = TrainSpec().resolved(3_706), TrainSpec().resolved(100_000)
    assert (small.loss, small.negatives, small.batch_size, small.eval_users) == ("ce", 1, 32, None)
    assert (large.loss, large.negatives, large.batch_size, large.eval_users) == ("logq", 2048, 256, 10_000)
    assert TrainSpec().resolved(1_000_000).batch_size == 1_000  # the item table's step amortised
    forced = TrainSpec(loss="logq").resolved(3_706)  # forced on a small catalogue: its batch stays the default
    assert (forced.loss, forced.negatives, forced.batch_size) == ("logq", 2048, 32)
    # a run recorded before the automatic choices: full softmax, batch 32, every user validated
    recorded = TrainSpec(**QUICK).resolved(1_682).model_dump(mode="json")
    del recorded["eval_users"]
    (tmp_path / SPEC).write_text(json.dumps(recorded))
    check_reusable(tmp_path, TrainSpec(**QUICK), num_items=1_682)
    with pytest.raises(SettingsMismatch, match="loss: 'logq' != 'ce'"):
        check_reusable(tmp_path, TrainSpec(**QUICK), num_items=50_000)


def test_a_run_recorded_before_position_std_was_initialised_as_torch_does(data_dir: Path, tmp_path: Path) -> None:
    """Runs written before the setting existed had torch's N(0, 1) positions: they are not
    reused under today's defaults, and the refusal names the setting."""
    recorded = TrainSpec(**QUICK).model_dump(mode="json")
    del recorded["position_std"]
    (tmp_path / SPEC).write_text(json.dumps(recorded))
    assert read_spec(tmp_path) == TrainSpec(**QUICK, position_std=1.0)
    with pytest.raises(SettingsMismatch, match=r"position_std: 0\.02 != 1\.0"):
        check_reusable(tmp_path, TrainSpec(**QUICK))
    check_reusable(tmp_path, TrainSpec(**QUICK, position_std=1.0))


def test_eval_run_trains_a_missing_run_then_reuses_it(data_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "runs" / "sasrec"
    spec = {k: v for k, v in QUICK.items() if k != "dataset"} | {"epochs": 2}

    def config(**changes: object) -> EvalConfig:
        return EvalConfig.model_validate(
            {
                "dataset": "ml-100k",
                "users": 20,
                "data_dir": str(data_dir),
                "methods": [{"name": "sasrec", "kind": "backbone", "run": str(run)}],
                "runs": {str(run): {**spec, **changes}, str(unread): spec},
            }
        )

    unread = tmp_path / "runs" / "unread"  # named in [runs], read by no method: not trained
    first = run_eval(config(), tmp_path / "eval-1")
    assert (run / SPEC).exists() and (run / METRICS).exists() and not unread.exists()
    assert first["methods"]["sasrec"]["scored"] == 20
    trained_at = (run / "model.safetensors").stat().st_mtime_ns

    second = run_eval(config(), tmp_path / "eval-2")
    assert (run / "model.safetensors").stat().st_mtime_ns == trained_at  # reused, not retrained
    assert second["methods"]["sasrec"]["metrics"] == first["methods"]["sasrec"]["metrics"]

    with pytest.raises(SettingsMismatch, match="dropout: 0.5 != 0.1"):
        run_eval(config(dropout=0.5), tmp_path / "eval-3")

    # the time-to-quality plot of the trained run
    png = tmp_path / "curves.png"
    result = CliRunner().invoke(app, ["bench", "curves", f"default={run}", "--out", str(png)])
    assert result.exit_code == 0, result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("loss", ["ce", "sce"])
def test_bench_steps_times_real_training_steps(data_dir: Path, monkeypatch: pytest.MonkeyPatch, loss: str) -> None:
    monkeypatch.setenv("TOOLREC_DATA_DIR", str(data_dir))
    args = ["bench", "steps", "--dataset", "ml-100k", "--loss", loss, "--negatives", "64", "--steps", "2", "--threads", "1"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output)
    assert figures["seconds_per_step"] > 0 and figures["steps"] == 2 and figures["settings"]["loss"] == loss

"""Backbones on real MovieLens-100K: they learn, checkpoints round-trip, training resumes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from eval.backbone import evaluate_backbone
from tools.data.schema import DataError
from tools.data.sequences import SequenceDataset
from tools.models.attributes import AttributeVocab
from tools.models.base import Recommender
from tools.models.checkpoint import build_model, load_model, new_config, save_model
from tools.models.layers import Layout, dropout
from tools.models.scoring import score_histories
from tools.models.train import TrainConfig, seed_everything, train
from tools.models.transitions import Transitions

SMALL = {"max_len": 50, "dim": 32}


def validator(dataset: SequenceDataset):
    return lambda model: evaluate_backbone(model, dataset, "valid", ks=(10,))


def fit(dataset: SequenceDataset, out: Path, kind: str = "sasrec", epochs: int = 1, **overrides: object) -> Recommender:
    model = build_model(new_config(kind, dataset, **{**SMALL, **overrides}), dataset)  # type: ignore[arg-type]
    train(model, dataset, TrainConfig(epochs=epochs, patience=100, lr=3e-3), out, validator(dataset))
    return model


def test_sasrec_learns_beyond_popularity(ml100k: SequenceDataset, tmp_path: Path) -> None:
    popularity = build_model(new_config("popularity", ml100k), ml100k)
    baseline = evaluate_backbone(popularity, ml100k, "valid", ks=(10,))["ndcg@10"]
    model = build_model(new_config("sasrec", ml100k, max_len=50, dim=64), ml100k)
    progress = train(model, ml100k, TrainConfig(epochs=10, patience=100, lr=2e-3), tmp_path, validator(ml100k))
    assert progress.best["ndcg@10"] > 1.2 * baseline, (progress.history, baseline)


@pytest.mark.parametrize(
    ("kind", "attribute", "head"),
    [("bert4rec", None, "tied"), ("bert4rec", None, "transform"), ("sasrec-attr", "genre", "tied"), ("sasrec-attr", "year", "tied")],
)
def test_variants_train_and_score(ml100k: SequenceDataset, tmp_path: Path, kind: str, attribute: str | None, head: str) -> None:
    model = fit(ml100k, tmp_path, kind, attribute=attribute, output_head=head)
    assert load_model(tmp_path, ml100k).config.output_head == head  # the head's weights round-trip
    scores = score_histories(model, [ml100k.sequences[0][:-1], ml100k.sequences[1][:-1]])
    assert scores.shape == (2, ml100k.num_items + 1)
    assert np.isneginf(scores[:, 0]).all()
    assert np.isneginf(scores[0, ml100k.sequences[0][:-1]]).all()  # history masked
    assert np.isfinite(scores[0]).sum() == ml100k.num_items - len(set(ml100k.sequences[0][:-1]))


@pytest.mark.parametrize("loss", ["sce", "bce", "bpr"])
def test_sampled_losses_decrease(ml100k: SequenceDataset, loss: str) -> None:
    torch.manual_seed(0)
    model = build_model(new_config("sasrec", ml100k, loss=loss, negatives=4, **SMALL), ml100k)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    batch = ml100k.train_sequences()[:64]
    first = model.loss(batch).item()
    for _ in range(20):
        optimiser.zero_grad()
        model.loss(batch).backward()
        optimiser.step()
    assert model.loss(batch).item() < first


@pytest.mark.parametrize("kind", ["sasrec", "bert4rec"])
def test_packed_batches_compute_each_sequence_as_if_padded_alone(ml100k: SequenceDataset, kind: str) -> None:
    model = build_model(new_config(kind, ml100k, **SMALL), ml100k).eval()
    sequences = [s[-n:] for s, n in zip(ml100k.train_sequences()[:12], [50, 3, 17, 1, 49, 2, 30, 8, 50, 5, 12, 40], strict=True)]
    lengths = [len(s) for s in sequences]
    packed, padded = Layout.packed(lengths, 50), Layout.padded(lengths, 50)
    assert len(packed.segments) < len(padded.segments) and (packed.segments > 0).sum() == sum(lengths)
    with torch.no_grad():
        out = {name: model.encode(layout.place(sequences), layout) for name, layout in (("packed", packed), ("padded", padded))}
    for (row, start), (padded_row, padded_start), n in zip(packed.slots, padded.slots, lengths, strict=True):
        torch.testing.assert_close(out["packed"][row, start : start + n], out["padded"][padded_row, padded_start : padded_start + n])


def test_dropout_keeps_the_expected_share_and_mean() -> None:
    torch.manual_seed(0)
    x = torch.ones(200_000)
    dropped = dropout(x, 0.1)
    assert abs((dropped == 0).float().mean().item() - 0.1) < 0.005
    assert abs(dropped.mean().item() - 1.0) < 0.01
    assert dropout(x, 0.0) is x


def test_output_head_is_refused_for_sasrec(ml100k: SequenceDataset) -> None:
    with pytest.raises(ValueError, match="BERT4Rec only"):
        build_model(new_config("sasrec", ml100k, output_head="transform", **SMALL), ml100k)


def test_transitions_count_what_came_next(ml100k: SequenceDataset, tmp_path: Path) -> None:
    """Counted, not trained: each row is P(next | item) over the training sequences only, a history
    scores by its latest items, and the run saves and loads like any backbone."""
    sequences = [np.array([1, 2, 3, 4, 5]), np.array([1, 2, 6, 3, 4])]
    tiny = SequenceDataset(name="tiny", items=ml100k.items[:6], user_ids=["a", "b"], sequences=sequences)
    model = build_model(new_config("transitions", tiny), tiny)
    train(model, tiny, TrainConfig(), tmp_path, validator(tiny))
    assert isinstance(model, Transitions)
    rows = model.next_given.numpy()
    np.testing.assert_allclose(rows[[1, 2]].sum(axis=1), 1.0, rtol=1e-6)  # the items followed by something in training
    assert rows[[0, 3, 4, 5, 6]].sum() == 0
    assert rows[1, 2] > rows[1, 6] > 0 and rows[1, 3] > 0  # one step after 1 counts more than two
    assert rows[:, 4].sum() == rows[:, 5].sum() == 0  # the held-out validation and test items are never read
    scores = score_histories(model, [np.array([1]), np.array([2, 1])])
    assert scores[0].argmax() == 2 and np.isneginf(scores[1, [1, 2]]).all()  # what followed 1; history masked
    assert scores[1, 3] > scores[1, 5] and np.isneginf(scores[:, 0]).all()
    loaded = load_model(tmp_path, tiny)
    np.testing.assert_allclose(score_histories(loaded, [np.array([2, 1])]), scores[1:], rtol=1e-6)
    ml = build_model(new_config("transitions", ml100k), ml100k)
    train(ml, ml100k, TrainConfig(), tmp_path / "ml", validator(ml100k))
    popularity = build_model(new_config("popularity", ml100k), ml100k)
    assert evaluate_backbone(ml, ml100k, "valid", ks=(10,))["ndcg@10"] > evaluate_backbone(popularity, ml100k, "valid", ks=(10,))["ndcg@10"]


def test_checkpoint_round_trip(ml100k: SequenceDataset, tmp_path: Path) -> None:
    model = fit(ml100k, tmp_path, "sasrec-attr", attribute="genre")
    save_model(tmp_path, model, ml100k)
    loaded = load_model(tmp_path, ml100k)
    histories = [s[:-1] for s in ml100k.sequences[:5]]
    np.testing.assert_allclose(score_histories(model, histories), score_histories(loaded, histories), rtol=1e-5)
    assert loaded.config == model.config


def test_checkpoint_from_another_dataset_is_refused(ml100k: SequenceDataset, tmp_path: Path) -> None:
    fit(ml100k, tmp_path)
    other = SequenceDataset(name="ml-100k", items=ml100k.items[::-1], user_ids=ml100k.user_ids, sequences=ml100k.sequences)
    with pytest.raises(DataError, match="trained on ml-100k"):
        load_model(tmp_path, other)


def test_interrupted_training_resumes_to_the_same_weights(ml100k: SequenceDataset, tmp_path: Path) -> None:
    config = {**SMALL, "max_len": 20}
    seed_everything(0)  # the same initial weights for both runs
    straight = build_model(new_config("sasrec", ml100k, **config), ml100k)
    train(straight, ml100k, TrainConfig(epochs=3, patience=100), tmp_path / "straight", validator(ml100k))

    seed_everything(0)
    interrupted = build_model(new_config("sasrec", ml100k, **config), ml100k)
    train(interrupted, ml100k, TrainConfig(epochs=2, patience=100), tmp_path / "resumed", validator(ml100k))
    resumed = build_model(new_config("sasrec", ml100k, **config), ml100k)  # a fresh process would start here
    progress = train(resumed, ml100k, TrainConfig(epochs=3, patience=100), tmp_path / "resumed", validator(ml100k))

    assert progress.epoch == 3 and [h["epoch"] for h in progress.history] == [1, 2, 3]
    a = load_file(str(tmp_path / "straight" / "state" / "last.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "state" / "last.safetensors"))
    for name in a:
        torch.testing.assert_close(a[name], b[name])


def test_resume_with_other_settings_is_refused(ml100k: SequenceDataset, tmp_path: Path) -> None:
    fit(ml100k, tmp_path, max_len=20)
    model = build_model(new_config("sasrec", ml100k, **{**SMALL, "max_len": 20}), ml100k)
    with pytest.raises(ValueError, match="other settings"):
        train(model, ml100k, TrainConfig(epochs=2, lr=0.5), tmp_path, validator(ml100k))


def test_attribute_vocab(ml100k: SequenceDataset) -> None:
    vocab = AttributeVocab.from_items(ml100k.items, "genre")
    assert "Sci-Fi" in vocab.values and len(vocab.values) == 19
    table = vocab.table(ml100k.items)
    star_wars = ml100k.item_index["50"]
    assert {vocab.values[v - 1] for v in table[star_wars] if v} == set(ml100k.item(star_wars).attributes["genre"])
    with pytest.raises(DataError, match="unknown attribute 'mood'"):
        AttributeVocab.from_items(ml100k.items, "mood")

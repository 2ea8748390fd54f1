"""Hand-written vectorised metrics against ir-measures (trec_eval) on random rankings."""

from __future__ import annotations

import ir_measures
import numpy as np
import pytest
from ir_measures import RR, Qrel, R, ScoredDoc, Success, nDCG

from eval.metrics import KS, MISSING, list_ranks, summarise, target_ranks


def random_case(seed: int, users: int = 200, items: int = 300) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    scores = rng.normal(size=(users, items + 1)).astype(np.float32)
    scores[:, 0] = -np.inf
    scores[rng.random(scores.shape) < 0.05] = -np.inf  # masked history
    targets = rng.integers(1, items + 1, size=users)
    return scores, targets


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_match_ir_measures(seed: int) -> None:
    scores, targets = random_case(seed)
    ours = summarise(target_ranks(scores, targets))
    qrels = [Qrel(f"u{u}", f"i{t}", 1) for u, t in enumerate(targets)]
    run = [ScoredDoc(f"u{u}", f"i{i}", float(s)) for u, row in enumerate(scores) for i, s in enumerate(row) if np.isfinite(s)]
    measures = [m @ k for k in KS for m in (Success, R, nDCG, RR)]
    theirs = {str(m): 0.0 for m in measures} | {str(k): v for k, v in ir_measures.calc_aggregate(measures, qrels, run).items()}
    for k in KS:
        assert ours[f"hr@{k}"] == pytest.approx(theirs[f"Success@{k}"], abs=1e-9)
        assert ours[f"recall@{k}"] == pytest.approx(theirs[f"R@{k}"], abs=1e-9)
        assert ours[f"ndcg@{k}"] == pytest.approx(theirs[f"nDCG@{k}"], abs=1e-6)
        assert ours[f"mrr@{k}"] == pytest.approx(theirs[f"RR@{k}"], abs=1e-6)


def test_list_ranks_agree_with_score_ranks() -> None:
    scores, targets = random_case(3)
    lists = [list(np.argsort(-row, kind="stable")[:20]) for row in scores]
    from_lists = np.minimum(list_ranks(lists, targets), 20)
    from_scores = np.minimum(target_ranks(scores, targets), 20)
    np.testing.assert_array_equal(from_lists, from_scores)


def test_ties_break_by_item_id_and_masked_target_is_missing() -> None:
    scores = np.array([[-np.inf, 1.0, 1.0, 1.0], [-np.inf, 0.5, -np.inf, 0.1]])
    ranks = target_ranks(scores, np.array([2, 2]))
    assert ranks[0] == 1 and ranks[1] == MISSING
    assert summarise(ranks, ks=(1, 5))["hr@5"] == 0.5
    assert list_ranks([None, [3, 2]], np.array([2, 2])).tolist() == [MISSING, 1]

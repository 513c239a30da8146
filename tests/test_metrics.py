import numpy as np
import pytest
from sklearn import metrics as sk

import metrics


@pytest.fixture(params=[0, 1, 2])
def case(request):
    rng = np.random.default_rng(request.param)
    truth = (rng.random((120, 9)) < 0.3).astype(int)
    truth[:, 4] = 0  # a class without positives in this fold
    scores = np.round(np.clip(truth * 0.3 + rng.random((120, 9)) * 0.7, 0, 1), 2)  # ties on purpose
    return truth, scores


def field_reference(truth, pred):
    """CP, CR, CF1, OP, OR, OF1 by a plain per-class loop (ML-GCN's definitions, classes with a positive)."""
    precisions, recalls, tp_all, pred_all, true_all = [], [], 0, 0, 0
    for c in range(truth.shape[1]):
        tp = int(((pred[:, c] == 1) & (truth[:, c] == 1)).sum())
        n_pred, n_true = int(pred[:, c].sum()), int(truth[:, c].sum())
        tp_all, pred_all, true_all = tp_all + tp, pred_all + n_pred, true_all + n_true
        if n_true:
            precisions.append(tp / n_pred if n_pred else 0.0)
            recalls.append(tp / n_true)
    cp, cr = np.mean(precisions), np.mean(recalls)
    op, o_r = tp_all / pred_all if pred_all else 0.0, tp_all / true_all
    return {"CP": cp, "CR": cr, "CF1": 2 * cp * cr / (cp + cr) if cp + cr else 0.0,
            "OP": op, "OR": o_r, "OF1": 2 * op * o_r / (op + o_r) if op + o_r else 0.0}


def test_the_fields_metrics_equal_a_per_class_loop_and_sklearn(case):
    truth, scores = case
    got = metrics.evaluate(truth, scores, truth[:60], scores[:60])
    pred = (scores >= 0.5).astype(int)
    top3 = np.zeros_like(pred)
    for i, row in enumerate(scores):
        top3[i, sorted(range(len(row)), key=lambda c: (-row[c], c))[:3]] = 1
    class_rule = (scores >= got["class_threshold"]).astype(int)
    global_rule = (scores >= got["threshold_global"]).astype(int)
    for suffix, predicted in (("", pred), ("_top3", top3), ("_class", class_rule), ("_global", global_rule)):
        for name, value in field_reference(truth, predicted).items():
            assert got[f"{name}{suffix}"] == pytest.approx(value), f"{name}{suffix}"
    keep = truth.sum(0) > 0
    assert got["OP"] == pytest.approx(sk.precision_score(truth, pred, average="micro", zero_division=0))
    assert got["OF1"] == pytest.approx(sk.f1_score(truth, pred, average="micro", zero_division=0))
    assert got["CR"] == pytest.approx(sk.recall_score(truth[:, keep], pred[:, keep], average="macro"))
    np.testing.assert_allclose(got["class_f1"], sk.f1_score(truth, pred, average=None, zero_division=0))
    assert got["classes_without_positives"] == 1


def test_the_global_threshold_maximises_validation_of1(case):
    truth, scores = case
    t = metrics.best_global_threshold(truth, scores)
    best = max(sk.f1_score(truth.ravel(), scores.ravel() >= c) for c in np.unique(scores))
    assert sk.f1_score(truth.ravel(), scores.ravel() >= t) == pytest.approx(best)


def test_ranking_metrics_equal_sklearn(case):
    truth, scores = case
    got = metrics.evaluate(truth, scores)
    keep = truth.sum(0) > 0
    ap = [sk.average_precision_score(truth[:, c], scores[:, c]) for c in np.flatnonzero(keep)]
    np.testing.assert_allclose(got["class_ap"][keep], ap)
    assert np.isnan(got["class_ap"][4])
    assert got["mAP"] == pytest.approx(np.mean(ap))
    assert got["micro_auc"] == pytest.approx(sk.roc_auc_score(truth.ravel(), scores.ravel()))
    assert got["macro_auc"] == pytest.approx(sk.roc_auc_score(truth[:, keep], scores[:, keep],
                                                              average="macro"))


def test_one_long_rankings_average_precision_equals_sklearn(case):
    truth, scores = case
    flat_truth, flat_scores = truth.ravel().astype(bool), scores.ravel()  # ties across the whole ranking
    assert metrics.ranked_average_precision(flat_truth, flat_scores) == pytest.approx(
        sk.average_precision_score(flat_truth, flat_scores), rel=1e-12)
    assert metrics.ranked_average_precision(flat_truth, flat_scores) == pytest.approx(
        metrics.average_precision(flat_truth[:, None], flat_scores[:, None])[0], rel=1e-12)
    assert np.isnan(metrics.ranked_average_precision(np.zeros(5, bool), np.arange(5.0)))
    assert np.isnan(metrics.ranked_average_precision(np.zeros(0, bool), np.zeros(0)))


def test_validation_thresholds_maximise_validation_f1(case):
    truth, scores = case
    thresholds = metrics.best_f1_thresholds(truth, scores)
    for c in np.flatnonzero(truth.sum(0) > 0):
        best = max(sk.f1_score(truth[:, c], scores[:, c] >= t) for t in np.unique(scores[:, c]))
        assert sk.f1_score(truth[:, c], scores[:, c] >= thresholds[c]) == pytest.approx(best)
    got = metrics.evaluate(truth, scores, truth, scores)
    assert got["CF1_class"] >= 0 and got["OF1_global"] >= 0

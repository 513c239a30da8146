import numpy as np
import pytest
from sklearn import metrics as sk

from analysis import metrics


@pytest.fixture(params=[0, 1, 2])
def case(request):
    rng = np.random.default_rng(request.param)
    truth = (rng.random((120, 9)) < 0.3).astype(int)
    truth[:, 4] = 0  # a class without positives in this fold
    scores = np.round(np.clip(truth * 0.3 + rng.random((120, 9)) * 0.7, 0, 1), 2)  # ties on purpose
    return truth, scores


def test_threshold_metrics_equal_sklearn(case):
    truth, scores = case
    got = metrics.evaluate(truth, scores)
    pred = (scores >= 0.5).astype(int)
    keep = truth.sum(0) > 0
    for average in ("micro", "macro"):
        columns = slice(None) if average == "micro" else keep
        assert got[f"{average}_precision"] == pytest.approx(
            sk.precision_score(truth[:, columns], pred[:, columns], average=average, zero_division=0))
        assert got[f"{average}_recall"] == pytest.approx(
            sk.recall_score(truth[:, columns], pred[:, columns], average=average, zero_division=0))
        assert got[f"{average}_f1"] == pytest.approx(
            sk.f1_score(truth[:, columns], pred[:, columns], average=average, zero_division=0))
    np.testing.assert_allclose(got["class_f1"], sk.f1_score(truth, pred, average=None, zero_division=0))
    assert got["classes_without_positives"] == 1


def test_ranking_metrics_equal_sklearn(case):
    truth, scores = case
    got = metrics.evaluate(truth, scores)
    keep = truth.sum(0) > 0
    ap = [sk.average_precision_score(truth[:, c], scores[:, c]) for c in np.flatnonzero(keep)]
    np.testing.assert_allclose(got["class_ap"][keep], ap)
    assert np.isnan(got["class_ap"][4])
    assert got["mAP"] == pytest.approx(np.mean(ap))
    assert got["micro_auc"] == pytest.approx(sk.roc_auc_score(truth.ravel(), scores.ravel()))
    assert got["macro_auc"] == pytest.approx(sk.roc_auc_score(truth[:, keep], scores[:, keep], average="macro"))


def test_validation_thresholds_maximise_validation_f1(case):
    truth, scores = case
    thresholds = metrics.best_f1_thresholds(truth, scores)
    for c in np.flatnonzero(truth.sum(0) > 0):
        best = max(sk.f1_score(truth[:, c], scores[:, c] >= t) for t in np.unique(scores[:, c]))
        assert sk.f1_score(truth[:, c], scores[:, c] >= thresholds[c]) == pytest.approx(best)
    got = metrics.evaluate(truth, scores, truth, scores)
    assert got["micro_f1_valthr"] >= got["micro_f1"]

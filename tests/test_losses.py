import numpy as np
import pytest

from heads import losses


def reference(logits, targets, pos_weight, neg_weight):
    """The paper's formula, literally: clipped sigmoid, then logs."""
    p = np.clip(1 / (1 + np.exp(-logits.astype(np.float64))), 1e-7, 1 - 1e-7)
    return -targets * np.log(p) * pos_weight - (1 - targets) * np.log(1 - p) * neg_weight


@pytest.fixture
def batch():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 4, (64, 7)).astype(np.float32)
    logits[0] = [-200, -30, -16.2, 0, 16.2, 30, 200]  # extreme logits: the clip is active
    targets = (rng.random((64, 7)) < 0.4).astype(np.float32)
    pos_weight = rng.integers(1, 11, 7).astype(np.float32)
    neg_weight = rng.random((64, 7)).astype(np.float32)
    return logits, targets, pos_weight, neg_weight


@pytest.mark.parametrize("method", ["ignore_missing", "confidence"])
def test_weighted_losses_equal_the_formula(batch, method):
    got = losses.get(method)(*batch).numpy()
    np.testing.assert_allclose(got, reference(*batch), rtol=1e-5, atol=1e-5)


def test_ce_weighs_every_negative_one(batch):
    logits, targets, pos_weight, neg_weight = batch
    got = losses.get("ce")(*batch).numpy()
    np.testing.assert_allclose(got, reference(logits, targets, pos_weight, np.ones_like(neg_weight)), rtol=1e-5, atol=1e-5)


def test_extreme_logits_are_finite_and_bounded(batch):
    got = losses.get("confidence")(*batch).numpy()
    assert np.isfinite(got).all()
    assert got.max() <= -np.log(1e-7) * 10 + 1e-3


def test_names_and_unknown_method():
    assert [losses.display_name(m) for m in ("ce", "ignore_missing", "confidence")] == ["CE", "IM-WCE", "CB-WCE"]
    with pytest.raises(ValueError, match="unknown method 'focal'"):
        losses.get("focal")

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


def test_confidence_estimators_expect_the_simulated_and_the_natural_missing_share():
    from splits import weights
    rng = np.random.default_rng(0)
    labels = (rng.random((80, 6)) < 0.4).astype(np.uint8)
    observed = labels & (rng.random(labels.shape) < 0.7)
    prior = weights.estimator("prior")
    np.testing.assert_array_equal(losses.negative_weights("confidence_prior", labels, observed, 0.0)[observed == 0], 1)
    np.testing.assert_array_equal(losses.negative_weights("confidence_prior", labels, observed, 0.0, 0.3),
                                  prior(observed, 0.3))  # complete split, labels missing by nature
    np.testing.assert_allclose(losses.negative_weights("confidence_prior", labels, observed, 0.5, 0.3),
                               prior(observed, 1 - 0.7 * 0.5))
    np.testing.assert_array_equal(losses.negative_weights("confidence_prior", labels, observed, None, 0.3),
                                  prior(observed, None))
    np.testing.assert_array_equal(losses.negative_weights("confidence", labels, observed, 0.5, 0.3),
                                  weights.cb_weights(observed))  # the paper's weight takes no rate

import numpy as np
import pytest

from splits import store, weights


def naive_cb(observed: np.ndarray) -> np.ndarray:
    """The paper's definition, one sample and one label at a time."""
    n, n_classes = observed.shape
    out = np.zeros((n, n_classes))
    for i in range(n):
        s = observed[i] == 1
        contains = (observed[:, s] == 1).all(1)
        n_s = contains.sum()
        for j in range(n_classes):
            if not s[j]:
                out[i, j] = (n_s - (contains & (observed[:, j] == 1)).sum()) / n_s
    return out


def test_cb_weights_equal_naive_loop_on_random_matrix():
    rng = np.random.default_rng(1)
    observed = (rng.random((300, 9)) < 0.3).astype(np.uint8)
    observed[5] = 0  # an all-hidden row
    observed[:, 7] = 0  # a class never observed
    cb = weights.cb_weights(observed)
    np.testing.assert_allclose(cb, naive_cb(observed), atol=1e-6)
    assert cb.dtype == np.float32
    np.testing.assert_allclose(cb[5], 1 - observed.mean(0), atol=1e-6)  # N(empty) = n
    assert (cb[:, 7] == 1).all()  # never observed: no evidence of presence
    assert (cb[observed == 1] == 0).all()


def test_cb_weights_equal_naive_loop_on_real_rows(coco_splits):
    sf = store.load(coco_splits)
    train = sf.train_rows(0)
    observed = sf.observed(0, sf.ratio_index(0.5))[train]
    cb = weights.cb_weights(observed)
    sample = np.random.default_rng(0).choice(len(train), 40, replace=False)
    n_classes = observed.shape[1]
    for i in sample:
        s = observed[i] == 1
        contains = (observed[:, s] == 1).all(1)
        expect = [(contains.sum() - (contains & (observed[:, j] == 1)).sum()) / contains.sum()
                  if not s[j] else 0 for j in range(n_classes)]
        np.testing.assert_allclose(cb[i], expect, atol=1e-6)


def test_pos_weight_formula_and_clipping():
    observed = np.zeros((100, 4), dtype=np.uint8)
    observed[:50, 0] = 1  # share .5 -> round(1) = 1
    observed[:10, 1] = 1  # share .1 -> round(5) = 5
    observed[:1, 2] = 1  # share .01 -> 50, clipped to 10
    np.testing.assert_array_equal(weights.pos_weight(observed), [1, 5, 10, 10])  # never observed -> 10


def test_im_weights_zero_exactly_on_hidden_positives():
    labels = np.array([[1, 1, 0], [0, 1, 1]], dtype=np.uint8)
    observed = np.array([[1, 0, 0], [0, 1, 0]], dtype=np.uint8)
    np.testing.assert_array_equal(weights.im_weights(labels, observed), [[1, 0, 1], [1, 1, 0]])
    with pytest.raises(ValueError, match="shape"):
        weights.im_weights(labels, observed[:1])

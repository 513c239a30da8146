import numpy as np
import pytest

from splits import folds, synthetic


@pytest.fixture(scope="module")
def labels():
    return synthetic.sample_labels(1200, np.random.default_rng(3))


def test_same_seed_same_folds_and_masks_different_seed_different(labels):
    a = folds.make_folds(labels, 4, seed=0)
    b = folds.make_folds(labels, 4, seed=0)
    c = folds.make_folds(labels, 4, seed=1)
    np.testing.assert_array_equal(a, b)
    assert (a != c).any()
    obs_a, _ = folds.observed_labels(labels, a, [0.5], seed=0)
    obs_b, _ = folds.observed_labels(labels, a, [0.5], seed=0)
    obs_c, _ = folds.observed_labels(labels, a, [0.5], seed=1)
    np.testing.assert_array_equal(obs_a, obs_b)
    assert (obs_a != obs_c).any()


def test_folds_partition_and_are_stratified(labels):
    test_fold = folds.make_folds(labels, 4, seed=0)
    assert set(np.unique(test_fold)) == {0, 1, 2, 3}
    sizes = np.bincount(test_fold)
    assert sizes.max() - sizes.min() <= 0.05 * len(labels)
    share = labels.mean(0)
    for k in range(4):
        assert np.abs(labels[test_fold == k].mean(0) - share).max() < 0.03


def test_hidden_counts_follow_round_half_to_even(labels):
    test_fold = folds.make_folds(labels, 4, seed=0)
    ratios = [0.0, 0.25, 0.5, 0.75]
    observed, hidden_share = folds.observed_labels(labels, test_fold, ratios, seed=0)
    n_pos = labels.sum(1)
    for k in range(4):
        train = test_fold != k
        for r, ratio in enumerate(ratios):
            np.testing.assert_array_equal(observed[k, r][~train], labels[~train])  # test rows: truth
            hidden = labels.astype(int) - observed[k, r]
            assert hidden.min() == 0  # never a positive that is not in the ground truth
            expected = np.array([round(ratio * p) for p in n_pos])  # Python's round: half to even
            np.testing.assert_array_equal(hidden[train].sum(1), expected[train])
            assert hidden_share[k, r] == pytest.approx(expected[train].sum() / n_pos[train].sum())
    assert round(0.25 * 6) == 2 and round(0.5 * 5) == 2  # the rounding the policy names


def test_single_positive_keeps_one_true_positive_per_training_row_seeded(labels):
    test_fold = folds.make_folds(labels, 4, seed=0)
    observed, hidden_share = folds.observed_labels(labels, test_fold, [0.5], seed=0, single_positive=True)
    again, _ = folds.observed_labels(labels, test_fold, [0.5], seed=0, single_positive=True)
    other, _ = folds.observed_labels(labels, test_fold, [0.5], seed=1, single_positive=True)
    np.testing.assert_array_equal(observed, again)
    assert (observed[:, 1] != other[:, 1]).any()
    for k in range(4):
        train = test_fold != k
        single = observed[k, 1]
        assert (single[train].sum(1) == 1).all()  # exactly one observed positive per training row
        assert (single <= labels).all()  # chosen among the row's true positives
        np.testing.assert_array_equal(single[~train], labels[~train])  # test rows untouched
        assert hidden_share[k, 1] == pytest.approx(1 - train.sum() / labels[train].sum())
    kept = observed[0, 1][test_fold != 0].argmax(1)
    assert len(np.unique(kept)) > 8  # not always the same class


def test_validation_rows_come_from_training_rows_only(labels):
    test_fold = folds.make_folds(labels, 4, seed=0)
    validation = folds.validation_rows(labels, test_fold, 0.1, seed=0)
    for k in range(4):
        assert not (validation[k] & (test_fold == k)).any()
        # iterstrat sizes are approximate
        assert validation[k].sum() == pytest.approx(0.1 * (test_fold != k).sum(), rel=0.1)


def test_bad_fold_count_and_ratio():
    labels = np.eye(3, dtype=np.uint8)
    with pytest.raises(ValueError, match="at least 2 folds"):
        folds.make_folds(labels, 1, seed=0)
    with pytest.raises(ValueError, match=r"outside \[0, 1\)"):
        folds.hide_positives(labels, 1.0, np.random.default_rng(0))

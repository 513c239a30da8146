import numpy as np
import pytest
import scipy.sparse

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
    observed = sf.observed(0, 0.5)[train]
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


def naive_conditional(y, s, j, a=weights.BACKOFF):
    """C(s, j), the backed-off co-occurrence conditional, from its definition by counting."""
    n_s = y[:, s].sum()
    with_others = (y[:, s] * (y.sum(1) >= 2)).sum()
    prior_j = y[:, j].mean()
    if with_others == 0:
        return prior_j
    trust = with_others / n_s * with_others / (with_others + a)
    return trust * (y[:, s] * y[:, j]).sum() / with_others + (1 - trust) * prior_j


def naive_estimator(name, observed, rate=0.5):
    """Per-sample loops of each estimator's definition, calibrated to `rate`."""
    n, n_classes = observed.shape
    y = observed.astype(float)
    out = np.zeros((n, n_classes))
    for i in range(n):
        s_i = np.flatnonzero(observed[i])
        for j in range(n_classes):
            if observed[i, j]:
                continue
            if name == "prior" or len(s_i) == 0:
                score = y[:, j].mean()
            elif name == "pairwise_max":
                score = max(naive_conditional(y, s, j) for s in s_i)
            else:
                score = 1 - np.prod([1 - min(naive_conditional(y, s, j), 1 - 1e-9) for s in s_i])
            if name == "backoff":
                contains = (observed[:, s_i] == 1).all(1)
                exact = (observed == observed[i]).all(1).sum()
                score = ((contains & (observed[:, j] == 1)).sum()
                         + 20 * score) / (contains.sum() - exact + 20)
            hidden = score * rate / (score * rate + (1 - score) * (1 - rate))
            out[i, j] = 1 - hidden
    return out


@pytest.mark.parametrize("name", ["prior", "pairwise_max", "pairwise_noisy_or", "backoff"])
def test_estimators_equal_naive_loops(name):
    rng = np.random.default_rng(2)
    observed = (rng.random((150, 8)) < 0.3).astype(np.uint8)
    observed[3] = 0
    observed[:, 6] = 0
    observed[7] = np.eye(8, dtype=np.uint8)[2]  # a one-label row
    got = weights.ESTIMATORS[name](observed, 0.5)
    np.testing.assert_allclose(got, naive_estimator(name, observed), atol=1e-5)
    assert got.dtype == np.float32 and got.min() >= 0 and got.max() <= 1
    assert (got[observed == 1] == 0).all()
    sparse = weights.ESTIMATORS[name](scipy.sparse.csr_matrix(observed), 0.5)  # sparse label matrices alike
    np.testing.assert_array_equal(sparse, got)


def naive_mixture(observed, components, iterations, seeds, smoothing):
    """The mixture's shares with loops over unique label sets and components."""
    patterns, mult = np.unique(observed.astype(bool), axis=0, return_counts=True)
    x = patterns.astype(float)
    u, n_classes = x.shape
    n = mult.sum()
    prior = (mult[:, None] * x).sum(0) / n
    evidence = np.zeros((u, n_classes))
    for seed in range(seeds):
        resp = np.random.default_rng(seed).dirichlet(np.ones(components), u).astype(np.float32).astype(float)
        for _ in range(iterations):
            q = np.zeros((components, n_classes))
            size = np.zeros(components)
            for k in range(components):
                for i in range(u):
                    q[k] += mult[i] * resp[i, k] * x[i]
                    size[k] += mult[i] * resp[i, k]
                q[k] = np.clip((q[k] + smoothing * prior) / (size[k] + smoothing), 1e-4, 1 - 1e-4)
            for i in range(u):
                log_p = np.array([np.log(size[k] / n + 1e-12)
                                  + sum(np.log(q[k, j]) if x[i, j] else np.log(1 - q[k, j])
                                                                    for j in range(n_classes))
                                  for k in range(components)])
                resp[i] = np.exp(log_p - log_p.max()) / np.exp(log_p - log_p.max()).sum()
        odds = np.array([[sum(resp[i, k] * q[k, j] / (1 - q[k, j]) for k in range(components))
                          for j in range(n_classes)] for i in range(u)])
        evidence += odds / ((mult[:, None] * odds).sum() / (n * n_classes))
    shares = {}
    for i in range(u):
        zeros = np.flatnonzero(~patterns[i])
        shares[patterns[i].tobytes()] = {j: evidence[i, j] / max(evidence[i, zeros].sum(), 1e-30)
                                         for j in zeros}
    out = np.zeros(observed.shape)
    for row in range(len(observed)):
        for j, value in shares[observed[row].astype(bool).tobytes()].items():
            out[row, j] = value
    return out


@pytest.mark.parametrize("sparse_below", [0.0, 1.0])  # the EM's label sets dense, then sparse
def test_mixture_shares_equal_naive_loops_and_calibration_keeps_the_ranking(monkeypatch, sparse_below):
    monkeypatch.setattr(weights, "MIXTURE_SPARSE", sparse_below)
    rng = np.random.default_rng(4)
    observed = (rng.random((60, 6)) < 0.35).astype(np.uint8)
    observed[5] = 0
    observed[:, 4] = 0
    got = weights.mixture_shares(observed, components=3, seeds=2, iterations=5, smoothing=0.5)
    np.testing.assert_allclose(got, naive_mixture(observed, 3, 5, 2, 0.5), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(got.sum(1), 1, rtol=1e-5)  # a row's hidden positives are all shared out
    for name, estimate in weights.ESTIMATORS.items():
        for rate in (None, 0.0, 0.5):
            w = estimate(observed, rate)
            assert w.dtype == np.float32 and w.min() >= 0 and w.max() <= 1, name
            assert (w[observed == 1] == 0).all(), name
        if name != "paper":
            np.testing.assert_array_equal(estimate(observed, 0.0)[observed == 0], 1)  # nothing missing
    scores = np.array([0.0, 0.1, 0.3, 0.5, 0.8, 0.95, 1.0])  # odds(hidden | 0) = odds(q) r / (1 - r)
    calibrated = weights.calibrate(scores, 0.5)
    np.testing.assert_allclose(calibrated, [0, 0.1 * 0.5 / (0.1 * 0.5 + 0.9 * 0.5), 0.3, 0.5, 0.8, 0.95, 1.0])
    assert (np.diff(weights.calibrate(scores, 0.75)) > 0).all()  # strictly increasing: no ties from a clip
    with pytest.raises(ValueError, match="missing_rate = 1.0"):
        weights.calibrate(scores, 1.0)


def naive_expected_hidden(counts, ratio, decays):
    """E[hidden | k] per row: loops over n0, the decay and n of the geometric prior on true counts."""
    n_max = int(np.ceil((max(counts) + 1) / (1 - ratio))) + 2
    kept = {n: n - int(np.round(ratio * n)) for n in range(n_max + 1)}
    best, best_p = -np.inf, None
    for n0 in range(n_max + 1):
        if kept[n0] > min(counts):  # no true count from n0 on could show the fewest labels observed
            break
        for lam in decays:
            p = {n: lam ** (n - n0) if n >= n0 else 0.0 for n in kept}
            total = sum(p.values())
            log_lik = sum(np.log(max(sum(p[n] for n in kept if kept[n] == k) / total, 1e-300))
                          for k in counts)
            if log_lik > best:
                best, best_p = log_lik, p
    out = []
    for k in counts:
        mass = sum(best_p[n] for n in kept if kept[n] == k)
        out.append(sum(best_p[n] * (n - k) for n in kept if kept[n] == k) / mass)
    return np.array(out)


def test_mixture_weights_equal_counts_times_backed_off_shares():
    rng = np.random.default_rng(5)
    observed = (rng.random((200, 7)) < 0.4).astype(np.uint8)
    observed[3] = 0
    observed[:, 2] = 0
    counts = observed.sum(1)
    for ratio in (0.25, 0.5, 0.75):
        np.testing.assert_allclose(weights.expected_hidden(counts, ratio),
                                   naive_expected_hidden(counts.tolist(), ratio, weights.COUNT_DECAYS),
                                   rtol=1e-9)
    shares = naive_mixture(observed, weights.MIXTURE["components"], weights.MIXTURE["iterations"], 2,
                           weights.MIXTURE["smoothing"])
    hidden = naive_expected_hidden(counts.tolist(), 0.5, weights.COUNT_DECAYS)
    y = observed.astype(float)
    prior = y.mean(0)
    expect = np.zeros(observed.shape)
    for i in range(len(y)):
        labels = np.flatnonzero(observed[i])
        seen = sum((y[:, s] * (counts >= 2)).sum() for s in labels)
        trust = seen / (seen + weights.MIXTURE_BACKOFF * 0.5 / (1 - 0.5)) if seen else 0.0
        zeros = observed[i] == 0
        prior_share = np.where(zeros, prior, 0) / max(prior[zeros].sum(), 1e-30)
        mixed = trust * shares[i] + (1 - trust) * prior_share
        # 1 - P(hidden), P = 1 - exp(-count x share)
        expect[i] = np.where(zeros, np.exp(-hidden[i] * mixed), 0)
    got = weights.mixture_weights(observed, 0.5, shares=weights.mixture_shares(observed, seeds=2))
    np.testing.assert_allclose(got, expect, atol=1e-5)


def test_back_off_gives_the_priors_ranking_where_no_co_occurrence_is_seen():
    rng = np.random.default_rng(6)
    observed = np.zeros((300, 9), np.uint8)
    observed[np.arange(300), rng.choice(9, 300, p=np.linspace(1, 3, 9) / 18)] = 1  # one label a row
    prior = weights.prior_weights(observed, 0.7)
    for name in ("pairwise_max", "pairwise_noisy_or", "backoff"):
        np.testing.assert_allclose(weights.ESTIMATORS[name](observed, 0.7), prior, atol=1e-6, err_msg=name)
    mixture = weights.mixture_weights(observed, 0.7)
    zeros = observed == 0
    for i in range(len(observed)):  # the same order of a row's zeros as the prior's
        np.testing.assert_array_equal(np.argsort(mixture[i][zeros[i]], kind="stable"),
                                      np.argsort(prior[i][zeros[i]], kind="stable"))
    assert weights.choose(observed, 0.7).simulated == {}  # nothing to hold out: the default


def test_auto_picks_the_estimator_that_is_right_by_design():
    """Labels come in pairs (2k, 2k + 1) with rare chance extras, and class frequencies run
    against the pairs: the co-occurrence estimators find a row's hidden partner, the prior
    cannot. With label frequencies alone informative, auto keeps to the prior's ranking."""
    rng = np.random.default_rng(8)
    n, n_pairs = 3000, 10
    labels = np.zeros((n, 2 * n_pairs), np.uint8)
    pairs = rng.choice(n_pairs, (n, 2))
    for i, chosen in enumerate(pairs):
        for pair in chosen:
            labels[i, [2 * pair, 2 * pair + 1]] = 1
    from splits import folds
    observed = labels & ~folds.hide_positives(labels, 0.25, rng)
    choice = weights.choose(observed, 0.25)
    assert choice.simulated[choice.name] >= choice.simulated["prior"] + 0.1
    assert choice.name != "prior"
    independent = (rng.random((3000, 12)) < np.linspace(0.05, 0.6, 12)).astype(np.uint8)
    observed = independent & ~folds.hide_positives(independent, 0.5, rng)
    choice = weights.choose(observed, 0.5)
    # nothing beats the prior here
    assert abs(choice.simulated[choice.name] - choice.simulated["prior"]) < 0.01


def test_no_estimator_reads_test_rows_or_ground_truth():
    """Weights for a fold's training rows depend only on those rows' observed labels."""
    from heads import inputs as run_inputs
    rng = np.random.default_rng(9)
    labels = (rng.random((400, 10)) < 0.35).astype(np.uint8)
    observed = labels & (rng.random(labels.shape) < 0.6)
    train = np.arange(300)
    poisoned_labels, poisoned_observed = labels.copy(), observed.copy()
    poisoned_labels[:] = 1  # ground truth: never read
    poisoned_observed[300:] = 1 - poisoned_observed[300:]  # test rows: never read
    for name in ["confidence", *(f"confidence_{e}" for e in weights.ESTIMATORS)]:
        clean = run_inputs.negative_weights(name, labels, observed, train, 0.5)
        dirty = run_inputs.negative_weights(name, poisoned_labels, poisoned_observed, train, 0.5)
        np.testing.assert_array_equal(clean, dirty, err_msg=name)


@pytest.mark.parametrize("ratio", [0.25, 0.5, 0.75])
def test_expected_hidden_count_matches_the_simulated_hiding(ratio):
    from splits import folds
    rng = np.random.default_rng(7)
    n_true = 3 + rng.geometric(0.5, 30_000) - 1  # no image with fewer than 3 labels
    labels = np.zeros((len(n_true), 30), np.uint8)
    for i, n in enumerate(n_true):
        labels[i, rng.choice(30, n, replace=False)] = 1
    observed = labels & ~folds.hide_positives(labels, ratio, rng)
    k = observed.sum(1)
    hidden = weights.expected_hidden(k, ratio)
    truth = n_true - k
    for count in np.unique(k):
        rows = k == count
        if rows.sum() >= 300:
            assert hidden[rows] == pytest.approx(truth[rows].mean(), abs=0.1), count
            assert np.ptp(hidden[rows]) == 0  # a function of k alone
    if ratio == 0.5:  # k = 1 can only come from 3 labels (n0 = 3 recovered), k = 2 from 4
        assert hidden[k == 1] == pytest.approx(2, abs=0.01) and hidden[k == 2] == pytest.approx(2, abs=0.01)
    np.testing.assert_array_equal(weights.expected_hidden(k, 0.0), 0)


def test_paper_estimator_is_cb_weights_and_unknown_name():
    observed = (np.random.default_rng(0).random((50, 5)) < 0.4).astype(np.uint8)
    np.testing.assert_array_equal(weights.estimator("paper")(observed, 0.5), weights.cb_weights(observed))
    with pytest.raises(ValueError, match="unknown confidence estimator 'magic'; known: paper, prior"):
        weights.estimator("magic")


def test_weight_quality_sees_training_rows_only(tmp_path, monkeypatch):
    import configs
    import splits
    from splits import quality
    cfg = configs.from_dict({"experiment": {"name": "q", "runs_dir": str(tmp_path)},
                             "dataset": {"n_images": 200}},
                            source="test")
    sf = store.load(splits.make(cfg)[0])
    seen_shapes = []
    original = weights.ESTIMATORS["prior"]
    monkeypatch.setitem(weights.ESTIMATORS, "prior",
                        lambda obs, rate=None: seen_shapes.append(obs.shape) or original(obs, rate))
    table = quality.weight_quality(sf.path, ["prior", "paper"], tmp_path / "q.csv")
    assert {shape[0] for shape in seen_shapes} == {len(sf.train_rows(k)) for k in range(4)}
    from sklearn.metrics import roc_auc_score
    train = sf.train_rows(0)
    seen = sf.observed(0, 0.5)[train]
    zeros = seen == 0
    hidden = (sf.labels[train] == 1) & zeros
    expect = roc_auc_score(hidden[zeros], 1 - weights.cb_weights(seen)[zeros])
    row = table[(table.fold == 1) & (table.protocol == "0.5") & (table.estimator == "paper")].iloc[0]
    assert row.roc_auc == pytest.approx(expect)
    assert quality.detection(1 - weights.cb_weights(seen), seen, sf.labels[train]) == pytest.approx(expect)
    assert np.isnan(quality.detection(1 - weights.cb_weights(seen), seen, seen))  # nothing hidden
    assert (tmp_path / "q.png").is_file()


def test_weight_quality_draws_its_figure_whatever_the_ratios(tmp_path):
    import configs
    import splits
    from splits import quality
    cfg = configs.from_dict({"experiment": {"name": "q", "runs_dir": str(tmp_path)},
                             "dataset": {"n_images": 200},
                             "splits": {"ratios": [0.0, 0.3]}}, source="test")
    quality.weight_quality(splits.make(cfg)[0], ["prior"], tmp_path / "q.csv")
    assert (tmp_path / "q.png").is_file()
    assert quality.figure_protocol(["0.25", "0.75", "single positive"]) == "0.25"
    assert quality.figure_protocol(["single positive"]) == "single positive"

"""The method registry, the paper's CB weight as its notebook computed it, and paper_exact."""
import dataclasses

import h5py
import numpy as np
import pytest

import configs
from heads import inputs as run_inputs
from heads import methods, models, sources, trainer
from splits import store, weights
from tests.helpers import make_features


def test_registry_names_params_and_oracles():
    assert [methods.display_name(m) for m in ("ce", "ignore_missing", "confidence")] == ["CE",
                                                                                         "IM-WCE", "CB-WCE"]
    assert methods.display_name("confidence_notebook") == "CB-WCE (as published)"
    oracles = {name for name, method in methods.METHODS.items() if method.oracle}
    assert oracles == {"ignore_missing", "confidence_notebook"}
    assert {f"confidence_{e}" for e in weights.ESTIMATORS} <= set(methods.METHODS)
    assert methods.parameters("asl") == {"gamma_pos": 0.0, "gamma_neg": 4.0, "clip": 0.05}
    assert methods.parameters("asl", {"gamma_neg": 2})["gamma_neg"] == 2
    with pytest.raises(ValueError, match="unknown method 'focall'; known: ce,"):
        methods.get("focall")
    with pytest.raises(ValueError, match="has no parameter 'gama'; its parameters: gamma"):
        methods.parameters("focal", {"gama": 1})
    with pytest.raises(ValueError, match=r"c.toml: \[heads.params.focal\]: method 'focal' has no parameter"):
        methods.check(["focal"], {"focal": {"gama": 1}}, "c.toml")
    with pytest.raises(ValueError, match="c.toml: heads.methods holds 'cbwce', which is no method"):
        methods.check(["cbwce"], {}, "c.toml")


def test_confidence_estimators_expect_the_simulated_missing_share():
    rng = np.random.default_rng(0)
    labels = (rng.random((80, 6)) < 0.4).astype(np.uint8)
    observed = labels & (rng.random(labels.shape) < 0.7)
    rows = np.arange(80)
    prior = weights.estimator("prior")
    np.testing.assert_array_equal(run_inputs.negative_weights("confidence_prior", labels, observed, rows,
                                                              0.0)[observed == 0],
                                  1)
    np.testing.assert_allclose(run_inputs.negative_weights("confidence_prior", labels, observed, rows, 0.3),
                               prior(observed, 0.3))
    np.testing.assert_array_equal(run_inputs.negative_weights("confidence", labels, observed, rows, 0.5),
                                  weights.cb_weights(observed))  # the paper's weight takes no rate
    assert run_inputs.negative_weights("an", labels, observed, rows) is None


def notebook_cell_11(frame: np.ndarray) -> np.ndarray:
    """MSCOCO-preprocessing, cell 11, restated: for each row and label, 0 where the row has the
    label; else (N(S) - N(S + j)) / N(S), S the row's labels, N counting the frame's rows that
    have every label of the set."""
    out = np.zeros(frame.shape)
    for i, row in enumerate(frame):
        s = np.flatnonzero(row)
        for j in range(frame.shape[1]):
            if row[j]:
                continue
            n_s = (frame[:, s] == 1).all(1).sum()
            n_sj = (frame[:, [*s, j]] == 1).all(1).sum()
            out[i, j] = (n_s - n_sj) / n_s
    return out


def test_the_published_cb_weight_equals_cell_11_and_is_zero_on_hidden_positives():
    rng = np.random.default_rng(3)
    labels = (rng.random((120, 7)) < 0.4).astype(np.uint8)
    labels[labels.sum(1) == 0, 0] = 1
    labels[4] = [1, 1, 0, 1, 0, 0, 0]
    hidden = np.zeros_like(labels)
    hidden[4, 1] = 1  # row 4 hides its positive 1
    observed = labels & ~hidden
    train = np.arange(90)  # rows 90.. are a test fold: the notebook counted them too
    got = run_inputs.negative_weights("confidence_notebook", labels, observed, train)
    np.testing.assert_allclose(got, notebook_cell_11(labels)[train], atol=1e-6)
    assert got[4, 1] == 0  # the hidden positive: exactly 0, as IM-WCE's oracle weight
    # ours sees observed labels
    assert run_inputs.negative_weights("confidence", labels, observed, train)[4, 1] > 0
    other = labels & (rng.random(labels.shape) < 0.3)  # another ratio's observed labels
    np.testing.assert_array_equal(run_inputs.negative_weights("confidence_notebook", labels, other, train),
                                  got)


def config(root, **heads):
    return configs.from_dict({"experiment": {"name": "p", "runs_dir": str(root)},
                              "dataset": {"n_images": 160},
                              "heads": {"head": "linear", "epochs": 1, **heads}}, source="test")


def test_an_oracle_is_refused_where_the_splits_hold_no_ground_truth(tmp_path):
    cfg = config(tmp_path, methods=["ce", "confidence_notebook"])
    sf = make_features(cfg)
    with h5py.File(sf.path, "r+") as h5:
        h5.attrs["ground_truth"] = False
    with pytest.raises(ValueError, match="confidence_notebook is an oracle: it reads the ground truth"):
        trainer.train(cfg)


def test_paper_exact_keeps_the_rate_at_0_1_and_takes_fold_1s_full_labels_for_positive_weights(tmp_path):
    exact = config(tmp_path / "exact", paper_exact=True, methods=["ce", "ignore_missing", "an"])
    assert (exact.heads.learning_rate, exact.heads.lr_decay, exact.extract.pooling) == (0.1, 1.0, "none")
    ours = config(tmp_path / "ours", methods=["ce", "ignore_missing", "an"])
    assert ours.heads.lr_decay == 0.95

    x = np.random.default_rng(0).normal(0, 1, (100, 4)).astype(np.float32)
    order = np.random.default_rng(1)

    def batches():
        return ((rows, x[rows]) for rows in sources.epoch_batches(100, 5, order))

    constants = {"pos_weight": np.ones((1, 3), np.float32), "k": np.zeros(1, np.float32)}
    inputs = models.StackInputs(methods=["ce"], needs=[run_inputs.needs("ce")], params=[{}],
                                targets=np.zeros((1, 100, 3), np.uint8), target_of=np.array([0]),
                                constants=constants,
                                bank=np.ones((1, 100, 3), np.float32), weights_of=np.array([0]))
    for cfg, rate in ((exact, 0.1), (ours, 0.1 * 0.95 ** 2)):
        stack = models.make("linear", ["h"], dataclasses.replace(cfg.heads, epochs=100), 0)
        stack.fit(batches, inputs, d_in=4)
        assert int(stack._step.numpy()) == 2000
        assert float(stack._learning_rate()) == pytest.approx(rate)

    for cfg, exact_weights in ((exact, True), (ours, False)):
        sf = make_features(cfg)
        full_fold_1 = weights.pos_weight(sf.labels[sf.test_fold != 0])
        for fold in range(sf.n_folds):
            train = sf.train_rows(fold)
            runs = [trainer.predictions.HeadRun(0, fold, "0.5", m) for m in cfg.heads.methods]
            grid = trainer.search.grid(cfg, cfg.heads.methods)
            inputs = trainer.stack_runs(cfg, sf, fold, runs, grid, train, np.array([], int)).inputs
            expected = full_fold_1 if exact_weights else weights.pos_weight(sf.observed(fold, 0.5)[train])
            np.testing.assert_array_equal(inputs.constants["pos_weight"][0], expected)  # ce
            np.testing.assert_array_equal(inputs.constants["pos_weight"][1], expected)  # IM-WCE
            np.testing.assert_array_equal(inputs.constants["pos_weight"][2], 1)  # AN takes no class weights
    assert isinstance(store.load(store.path(exact)), store.SplitsFile)

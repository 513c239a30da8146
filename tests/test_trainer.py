"""The batched trainer against one-head-at-a-time training, and on features that carry labels."""
import json

import h5py
import numpy as np
import pandas as pd
import pytest

import configs
from features import store as feature_store
from heads import inputs as run_inputs
from heads import predictions, sources, trainer
from heads.predictions import HeadRun
from tests.helpers import make_features, probabilities, small_config


def test_batched_stack_equals_each_head_alone(tmp_path):
    cfg = small_config(tmp_path / "stack")
    make_features(cfg)
    trainer.train(cfg, only={"fold": "2"}, n_jobs=1)
    runs = [HeadRun(0, 1, f"{r:g}", m) for r in cfg.splits.ratios for m in cfg.heads.methods]
    alone = small_config(tmp_path / "alone")
    make_features(alone)
    for run in runs[::5]:
        trainer.train(alone, only={"fold": "2", "ratio": run.protocol, "method": run.method}, n_jobs=1)
        np.testing.assert_allclose(probabilities(cfg, run), probabilities(alone, run), atol=1e-5)


def test_two_jobs_equal_one_and_reruns_skip(tmp_path, capsys):
    one = small_config(tmp_path / "one", head="linear", epochs=2)
    two = small_config(tmp_path / "two", head="linear", epochs=2)
    make_features(one)
    make_features(two)
    trainer.train(one, only={"method": "ce", "ratio": "0.5"}, n_jobs=1)
    trainer.train(two, only={"method": "ce", "ratio": "0.5"}, n_jobs=2)
    for k in range(4):
        run = HeadRun(0, k, "0.5", "ce")
        np.testing.assert_array_equal(probabilities(one, run), probabilities(two, run))
    trainer.train(one, only={"method": "ce", "ratio": "0.5"}, n_jobs=1)
    assert "every requested heads run is complete" in capsys.readouterr().out


def test_heads_learn_and_the_oracle_recovers_hidden_positives(tmp_path):
    cfg = small_config(tmp_path / "learn", hidden=[32], optimizer="adam", learning_rate=0.01, epochs=25)
    sf = make_features(cfg, noise=0.4)
    trainer.train(cfg, only={"fold": "1", "ratio": "0.75"}, n_jobs=1)
    test = sf.test_fold == 0
    from sklearn.metrics import average_precision_score
    recall = {}
    for method in cfg.heads.methods:
        probs = probabilities(cfg, HeadRun(0, 0, "0.75", method))
        truth = sf.labels[test]
        assert average_precision_score(truth, probs, average="macro") > 2 * truth.mean()  # far above chance
        recall[method] = ((probs > 0.5) & (truth == 1)).sum() / truth.sum()
    assert recall["ignore_missing"] > recall["ce"] + 0.1


def test_features_far_from_unit_scale_are_named_and_standardize_learns_from_them(tmp_path, capsys):
    from sklearn.metrics import average_precision_score
    rng = np.random.default_rng(3)
    units = np.exp(rng.uniform(0, 6, 24)), rng.uniform(-300, 300, 24)  # factors 1-400, offsets +-300
    scores, provenance = {}, {}
    for standardize in (False, True):
        cfg = small_config(tmp_path / str(standardize), hidden=[16], optimizer="adam",
                           learning_rate=0.01, epochs=10,
                           methods=["ce"], standardize=standardize)
        sf = make_features(cfg, noise=0.4, scale=units)
        trainer.train(cfg, only={"fold": "1", "ratio": "0"}, n_jobs=1)
        warned = "set [heads] standardize = true" in capsys.readouterr().out
        assert warned != standardize
        run = HeadRun(0, 0, "0", "ce")
        scores[standardize] = average_precision_score(sf.labels[sf.test_fold == 0], probabilities(cfg, run))
        with h5py.File(predictions.file(cfg, run), "r") as h5:
            provenance[standardize] = json.loads(h5.attrs["provenance"])
    assert scores[True] > scores[False] + 0.1, scores
    # off, the key stays out of the provenance: runs made before it existed stay complete
    assert "heads.standardize" not in provenance[False] and provenance[True]["heads.standardize"] is True


def test_bad_input_is_named(tmp_path):
    cfg = small_config(tmp_path / "bad")
    with pytest.raises(ValueError, match="is missing or incomplete; run `make features`"):
        trainer.train(cfg)
    make_features(cfg)
    with pytest.raises(ValueError, match="--only method=focal is not in"):
        trainer.train(cfg, only={"method": "focal"})
    with pytest.raises(ValueError, match="holds 'focall', which is no method"):
        trainer.train(small_config(tmp_path / "bad", methods=["focall"]))
    with pytest.raises(ValueError, match="--only ratio=0.3 is not in"):
        trainer.train(cfg, only={"ratio": "0.3"})
    # one head of 2^30 hidden units on 24 features: 4e10 parameters, 1 TB with its optimiser state, so the
    # planner cannot fit it in any stack (2^24 fitted one head per stack on a machine with 23 GiB free)
    wide = small_config(tmp_path / "bad", hidden=[2**30])
    with pytest.raises(ValueError, match="GiB are free"):
        trainer.train(wide)


def test_epoch_batches_visit_every_row_once_window_by_window():
    rng = np.random.default_rng(0)
    full = sources.epoch_batches(100, 32, np.random.default_rng(5))
    np.testing.assert_array_equal(np.concatenate(full), np.random.default_rng(5).permutation(100))
    one_window = sources.epoch_batches(100, 32, np.random.default_rng(5), window=100)
    np.testing.assert_array_equal(np.concatenate(one_window), np.concatenate(full))
    batches = sources.epoch_batches(100, 32, rng, window=30)
    order = np.concatenate(batches)
    np.testing.assert_array_equal(np.sort(order), np.arange(100))
    assert [len(b) for b in batches] == [32, 32, 32, 4]
    windows = order // 30
    assert (np.diff(windows) != 0).sum() == 3  # each window's rows come together


def test_streamed_features_equal_in_ram_and_hold_one_window(tmp_path, monkeypatch):
    ram = small_config(tmp_path / "ram", features="ram")
    make_features(ram)
    trainer.train(ram, only={"fold": "3"}, n_jobs=1)
    whole = small_config(tmp_path / "whole", features="stream", shuffle_buffer=10_000)
    make_features(whole)
    trainer.train(whole, only={"fold": "3"}, n_jobs=1)
    for run in [HeadRun(0, 2, f"{r:g}", m) for r in ram.splits.ratios for m in ram.heads.methods]:
        np.testing.assert_allclose(probabilities(whole, run), probabilities(ram, run), atol=1e-6)

    reads = []
    window = feature_store.FeatureReader.window
    monkeypatch.setattr(feature_store.FeatureReader, "window",
                        lambda self, rows: reads.append(len(rows)) or window(self, rows))
    small = small_config(tmp_path / "small", features="stream", shuffle_buffer=64, hidden=[32],
                         optimizer="adam", learning_rate=0.01, epochs=10)
    sf = make_features(small, noise=0.4)
    trainer.train(small, only={"fold": "1", "ratio": "0.0", "method": "ce"}, n_jobs=1)
    assert max(reads) == 64 and len(reads) > 10
    with h5py.File(predictions.file(small, HeadRun(0, 0, "0", "ce")), "r") as h5:
        assert h5.attrs["feature_access"] == "stream (window 64 rows)"
        probs = h5["probabilities"][:]
    from sklearn.metrics import average_precision_score
    truth = sf.labels[sf.test_fold == 0]
    assert average_precision_score(truth, probs, average="macro") > 2 * truth.mean()


def test_validation_early_stopping_keeps_each_heads_best_epoch():
    from heads import models
    rng = np.random.default_rng(0)
    x, x_val = rng.normal(0, 1, (48, 40)).astype(np.float32), rng.normal(0, 1, (64, 40)).astype(np.float32)
    y = rng.integers(0, 2, (2, 48, 5)).astype(np.float32)  # noise: the validation loss must rise
    y_val = rng.integers(0, 2, (2, 64, 5)).astype(np.float32)
    ones, ones_val = np.ones_like(y), np.ones_like(y_val)
    order = np.random.default_rng(1)

    def batches():
        for rows in sources.epoch_batches(48, 16, order):
            yield rows, x[rows]

    def blocks():  # two blocks: the loss is averaged over rows, not blocks
        yield np.arange(40), x_val[:40]
        yield np.arange(40, 64), x_val[40:]

    stack = models.HeadStack(["a", "b"], hidden=(64,), optimizer="adam", learning_rate=0.05, epochs=40,
                             patience=3, seed=0)
    constants = {"pos_weight": np.ones((2, 5), np.float32), "k": np.zeros(2, np.float32)}
    inputs = models.StackInputs(methods=["ce", "ce"], needs=[run_inputs.needs("ce")] * 2, params=[{}, {}],
                                targets=y.astype(np.uint8), target_of=np.array([0, 1]), constants=constants,
                                bank=ones[:1], weights_of=np.array([0, 0]))
    stack.fit(batches, inputs, models.Validation(blocks, y_val.astype(np.uint8), ones_val[:1]), d_in=40)
    val = np.array([rec["val_loss"] for rec in stack.history_])
    assert len(val) < 40  # stopped early
    best = val.argmin(0)
    assert (len(val) - 1 - best >= 3).all()  # no head improved in its last 3 epochs
    logits = stack.predict_proba(x_val)
    from sklearn.metrics import log_loss
    for h in range(2):  # the restored weights are the best epoch's
        restored = np.mean([log_loss(y_val[h][:, j], logits[h][:, j], labels=[0, 1]) for j in range(5)])
        assert abs(restored - val[best[h], h]) < 1e-4


def test_validation_weights_come_from_one_estimate_over_training_and_validation_rows(tmp_path, monkeypatch):
    cfg = configs.from_dict({"experiment": {"name": "v", "runs_dir": str(tmp_path)},
                             "dataset": {"n_images": 400},
                             "splits": {"validation": 0.2},
                             "heads": {"head": "linear", "epochs": 1,
                                       "methods": ["confidence_prior"]}}, source="test")
    sf = make_features(cfg)
    seen = []
    original = run_inputs.negative_weights
    monkeypatch.setattr(run_inputs, "negative_weights",
                        lambda method, labels, observed, rows, *rest: seen.append(len(rows))
                        or original(method, labels, observed, rows, *rest))
    trainer.train(cfg, only={"fold": "1", "ratio": "0.5"}, n_jobs=1)
    assert seen == [int((sf.test_fold != 0).sum())]  # once, on all of the fold's non-test rows


def test_every_registered_method_trains_and_appears_in_the_report_by_its_display_name(tmp_path):
    from analysis import report
    from heads import methods
    scores = tmp_path / "scores.csv"
    cfg = configs.from_dict({
        "experiment": {"name": "all", "runs_dir": str(tmp_path)},
        "dataset": {"n_images": 200},
        "splits": {"n_folds": 2, "ratios": [0.0, 0.5], "single_positive": True, "partial": [0.5]},
        "heads": {"head": "linear", "optimizer": "adam", "learning_rate": 0.01, "epochs": 2, "batch_size": 32,
                  "methods": list(methods.METHODS), "scores": str(scores)},
    }, source="test")
    sf = make_features(cfg)
    noisy = sf.labels + np.random.default_rng(0).normal(0, 0.5, sf.labels.shape)  # scores from elsewhere
    pd.DataFrame(noisy, index=sf.ids, columns=sf.classes).to_csv(scores)
    trainer.train(cfg, n_jobs=1)
    text = report.report(cfg).read_text()
    summary = text.split("## Summary")[1].split("## What")[0]
    for name, method in methods.METHODS.items():
        rows = [line for line in summary.splitlines() if line.startswith(f"| {method.display} |")]
        assert len(rows) == 4, name  # 0, 0.5, single positive and partial 0.5
        assert all(("| yes |" in row) == method.oracle for row in rows), name
    assert "Missing runs\n\nnone" in text
    assert (cfg.run_dir / "analysis" / "fig7_field.png").is_file()
    for table in ("runs", "summary", "leaderboard"):  # every table names its methods by registry id
        named = set(pd.read_csv(cfg.run_dir / "analysis" / f"{table}.csv")["method"])
        assert named == set(methods.METHODS), table

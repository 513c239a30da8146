"""Partial labels (three states) end to end: codings, the protocols, the evaluation, bad input."""
import dataclasses

import h5py
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score

import configs
import metrics
import splits
from features import labels as labels_coding
from heads import inputs as run_inputs
from heads import predictions, trainer
from heads.predictions import HeadRun
from splits import datasets, folds, quality, store
from splits.store import NEGATIVE
from tests.helpers import make_features


@pytest.mark.parametrize("coding, values", [
    ("1/0/-1", [[1, 0, -1], [-1, 1, 0]]),
    ("1/-1/0", [[1, -1, 0], [0, 1, -1]]),
    ("1/0/nan", [[1, 0, np.nan], [np.nan, 1, 0]]),
])
def test_each_three_state_coding_reads_positives_negatives_and_unknowns(coding, values):
    labels, known = labels_coding.decode(np.array(values, float), coding, "f", ["a", "b"], ["x", "y", "z"])
    np.testing.assert_array_equal(labels, [[1, 0, 0], [0, 1, 0]])
    np.testing.assert_array_equal(known, [[True, True, False], [False, True, True]])
    assert labels_coding.decode(np.array([[1, 0], [0, 1]], float), "0/1", "f", "ab", "xy")[1] is None


@pytest.mark.parametrize("coding, values, message", [
    ("1/0/-1", [[1, 0, np.nan]],
     r"row 'a' label column 'z' is empty .* its unknowns are -1: the file mixes codings"),
    ("0/1", [[1, -1, 0]],
     r"row 'a' label column 'y' holds -1; labels are coded 0/1 .* choose a three-state coding"),
    ("0/1", [[1, np.nan, 0]], r"label column 'y' is empty .* it has no unknowns"),
    ("1/-1/0", [[1, 2, 0]], r"row 'a' label column 'y' holds 2; labels are coded 1/-1/0"),
])
def test_a_label_file_out_of_its_coding_is_named(coding, values, message):
    with pytest.raises(ValueError, match=message):
        labels_coding.decode(np.array(values, float), coding, "f", ["a"], ["x", "y", "z"])


def test_openimages_positive_and_negative_id_lists_and_a_class_in_both(tmp_path):
    frame = pd.DataFrame({"filepath": ["a.jpg", "b.jpg", "c.jpg"],
                          "label": ["['/m/cat', '/m/dog']", "['/m/car']", "[]"],
                          "label_neg": ["['/m/car']", "[]", "['/m/cat', '/m/dog']"]})
    frame.to_csv(tmp_path / "data.csv", index=False)
    manifest = datasets.from_csv(tmp_path / "data.csv", tmp_path, "filepath", id_lists=("label", "label_neg"))
    assert manifest.classes == ["/m/car", "/m/cat", "/m/dog"]
    np.testing.assert_array_equal(manifest.labels, [[0, 1, 1], [1, 0, 0], [0, 0, 0]])
    np.testing.assert_array_equal(manifest.known,
                                  [[True, True, True], [True, False, False], [False, True, True]])
    frame.loc[1, "label_neg"] = "['/m/car']"
    frame.to_csv(tmp_path / "data.csv", index=False)
    with pytest.raises(ValueError, match=r"row 'b.jpg' lists class '/m/car' as positive and as negative"):
        datasets.from_csv(tmp_path / "data.csv", tmp_path, "filepath", id_lists=("label", "label_neg"))


def large_labels(n=20_000, n_classes=30, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random((n, n_classes)) < rng.uniform(0.02, 0.3, n_classes)).astype(np.uint8)


def test_the_protocols_keep_their_shares_on_a_large_table_and_are_seeded():
    labels = large_labels()
    test_fold = np.arange(len(labels)) % 4
    train = test_fold != 0
    observed, _ = folds.observed_labels(labels, test_fold, [0.5], 0, partial=[0.1, 0.5, 0.9], fpc=[50],
                                             rps=[0.3])
    again, _ = folds.observed_labels(labels, test_fold, [0.5], 0, partial=[0.1, 0.5, 0.9],
                                     fpc=[50], rps=[0.3])
    other, _ = folds.observed_labels(labels, test_fold, [0.5], 1, partial=[0.1, 0.5, 0.9],
                                     fpc=[50], rps=[0.3])
    np.testing.assert_array_equal(observed, again)
    assert (observed[0, 1:] != other[0, 1:]).any()
    for p, share in ((1, 0.1), (2, 0.5), (3, 0.9), (5, 0.7)):  # partial q keeps q; rps p keeps 1 - p
        kept = observed[0, p][train] > 0
        assert abs(kept.mean() - share) < 0.01 * share, (p, kept.mean())
        assert abs((observed[0, p][train] == 1).sum() / labels[train].sum() - share) < 0.01 * share + 0.002
    fpc = observed[0, 4][train]
    positives, negatives = (fpc == 1).sum(0), (fpc == NEGATIVE).sum(0)
    np.testing.assert_array_equal(positives, np.minimum(50, labels[train].sum(0)))
    np.testing.assert_array_equal(negatives, np.minimum(50, (labels[train] == 0).sum(0)))
    np.testing.assert_array_equal(observed[0, 1][~train], labels[~train])  # test rows keep their truth
    assert not ((observed[0, 1] == NEGATIVE) & (labels == 1)).any()  # a verified negative is a negative


def test_the_paper_protocols_stay_what_they_were_beside_the_partial_ones():
    """Two-state data: the ratios and single positive give the arrays of the hiding rule alone,
    with or without partial-label protocols beside them (byte for byte)."""
    labels = large_labels(2_000, 12, seed=3)
    test_fold = folds.make_folds(labels, 4, 0)
    alone, _ = folds.observed_labels(labels, test_fold, [0.0, 0.5], 7, single_positive=True)
    beside, _ = folds.observed_labels(labels, test_fold, [0.0, 0.5], 7, single_positive=True,
                                      partial=[0.5], rps=[0.2])
    assert alone.tobytes() == beside[:, :3].tobytes() and alone.max() == 1
    for k in range(4):
        hidden = folds.hide_positives(labels, 0.5, np.random.default_rng(folds.ratio_seed(7, k, 0.5)))
        hidden[test_fold == k] = False
        assert alone[k, 1].tobytes() == (labels & ~hidden).astype(np.uint8).tobytes()


def test_a_proportion_outside_its_range_is_named():
    for key, value, message in (("partial", [1.5], r"splits.partial holds 1.5; each must be in \(0, 1\]"),
                                ("partial", [0.0], r"splits.partial holds 0.0"),
                                ("rps", [1.0], r"splits.rps holds 1.0; each must be in \[0, 1\)"),
                                ("fpc", [0], r"splits.fpc holds 0; each must be >= 1")):
        with pytest.raises(ValueError, match=message):
            configs.from_dict({"splits": {key: value}}, source="t")


def test_partial_evaluation_counts_known_labels_only_against_a_per_class_loop():
    rng = np.random.default_rng(4)
    truth = (rng.random((200, 6)) < 0.3).astype(np.uint8)
    scores = np.clip(truth * 0.4 + rng.random(truth.shape) * 0.7, 0, 1)
    known = rng.random(truth.shape) < 0.6
    known[:, 5] = truth[:, 5] == 1  # a class with no known negative: skipped
    got = metrics.evaluate(truth, scores, known=known)
    expected = [average_precision_score(truth[known[:, c], c], scores[known[:, c], c]) for c in range(5)]
    assert got["mAP"] == pytest.approx(np.mean(expected)) and got["classes_skipped_partial"] == 1
    predicted = (scores >= 0.5) & known
    tp = (predicted & (truth == 1)).sum()
    assert got["OP"] == pytest.approx(tp / predicted.sum())
    assert got["OR"] == pytest.approx(tp / (truth * known).sum())
    assert metrics.evaluate(truth, scores)["mAP"] != pytest.approx(got["mAP"])


def three_state_config(root, **heads):
    return configs.from_dict({
        "experiment": {"name": "p", "runs_dir": str(root)},
        "dataset": {"n_images": 400},
        "splits": {"ratios": [0.0, 0.5], "partial": [0.5], "validation": 0.2},
        "heads": {"head": "linear", "optimizer": "adam", "learning_rate": 0.01, "epochs": 3,
                  "methods": ["ce", "confidence_auto", "an", "partial_ignore", "partial_bce",
                              "csl", "em_apl"],
                  **heads},
    }, source="test")


def test_a_study_of_the_partial_protocol_trains_every_method_and_evaluates_it(tmp_path):
    from analysis import report
    cfg = three_state_config(tmp_path, search={"lr": [0.003, 0.01]})
    cfg = dataclasses.replace(cfg, splits=dataclasses.replace(cfg.splits, n_folds=2))
    sf = make_features(cfg)
    trainer.train(cfg, n_jobs=1)
    run = HeadRun(0, 0, "partial0.5", "partial_ignore")
    with h5py.File(predictions.file(cfg, run), "r") as h5:
        # the protocol is partial; the test labels are complete
        assert "val_known" in h5 and "known" not in h5
        val_known = h5["val_known"][:]
    states = sf.states(0, "partial0.5")[sf.validation(0)]
    np.testing.assert_array_equal(val_known, states > 0)
    text = report.report(cfg).read_text()
    assert "| Ignore | partial 0.5 |" in text and "| CSL | partial 0.5 |" in text
    fold = splits.store.load(splits.store.path(cfg))
    inputs = run_inputs.head_inputs(cfg, fold, 0, "partial0.5", "confidence_auto", fold.train_rows(0),
                                    np.flatnonzero(fold.validation(0)))
    verified = fold.verified_negative(0, "partial0.5")[fold.train_rows(0)]
    # a verified negative is never a hidden positive
    assert verified.any() and (inputs.negative_weights[verified] == 1).all()


def test_three_state_data_from_a_table_evaluates_the_known_test_labels(tmp_path):
    rng = np.random.default_rng(5)
    truth = (rng.random((300, 5)) < 0.35).astype(int)
    truth[np.arange(300), rng.integers(0, 5, 300)] = 1
    coded = np.where(rng.random(truth.shape) < 0.25, -1, truth)  # a quarter unknown
    coded[truth == 1] = 1
    x = truth @ rng.normal(0, 1, (5, 8)) + rng.normal(0, 0.5, (300, 8))
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", coded)
    cfg = configs.from_dict({
        "experiment": {"name": "t", "runs_dir": str(tmp_path)},
        "dataset": {"adapter": "table", "features": str(tmp_path / "x.npy"),
                    "labels": str(tmp_path / "y.npy"),
                    "label_coding": "1/0/-1", "min_labels": 1},
        "splits": {"ratios": [0.5], "validation": 0.2},
        "heads": {"head": "linear", "optimizer": "adam", "learning_rate": 0.01, "epochs": 2,
                  "methods": ["an", "partial_ignore"]},
    }, source="test")
    from features.importer import import_features
    import_features(cfg)
    [path] = splits.make(cfg)
    sf = store.load(path)
    np.testing.assert_array_equal(sf.known, coded != -1)
    assert not sf.ground_truth
    states = sf.states(0, "0.5")
    np.testing.assert_array_equal(states == NEGATIVE, coded == 0)  # the dataset's negatives stay verified
    trainer.train(cfg, n_jobs=1)
    with h5py.File(predictions.file(cfg, HeadRun(0, 0, "0.5", "an")), "r") as h5:
        np.testing.assert_array_equal(h5["known"][:], sf.known[sf.test_fold == 0])
    table = quality.weight_quality(path, ["prior", "auto"])
    assert len(table) and table["roc_auc"].notna().all()
    with pytest.raises(ValueError, match="is an oracle"):
        trainer.train(dataclasses.replace(cfg,
                                          heads=dataclasses.replace(cfg.heads, methods=("ignore_missing",))))


def test_a_score_file_that_does_not_match_the_dataset_is_named(tmp_path):
    cfg = three_state_config(tmp_path, methods=["score_pl"], scores=str(tmp_path / "scores.csv"))
    sf = make_features(cfg)
    frame = pd.DataFrame(np.random.default_rng(0).random(sf.labels.shape), index=sf.ids, columns=sf.classes)
    frame.drop(columns=sf.classes[3]).to_csv(tmp_path / "scores.csv")
    with pytest.raises(ValueError, match=f"scores.csv: no column for class {sf.classes[3]!r}"):
        trainer.train(cfg, n_jobs=1)
    frame.drop(index=sf.ids[7]).to_csv(tmp_path / "scores.csv")
    with pytest.raises(ValueError, match=f"scores.csv: no row {sf.ids[7]!r}"):
        trainer.train(cfg, n_jobs=1)
    bad = frame.astype(object)
    bad.iloc[2, 1] = "high"
    bad.to_csv(tmp_path / "scores.csv")
    with pytest.raises(ValueError, match=f"row {sf.ids[2]!r} class {sf.classes[1]!r} holds 'high'"):
        trainer.train(cfg, n_jobs=1)
    np.save(tmp_path / "scores.npy", frame.to_numpy()[:, :4])
    wide = dataclasses.replace(cfg, heads=dataclasses.replace(cfg.heads, scores=str(tmp_path / "scores.npy")))
    with pytest.raises(ValueError, match=r"scores of shape \(400, 4\)"):
        trainer.train(wide, n_jobs=1)
    frame.to_csv(tmp_path / "scores.csv")
    assert trainer.train(cfg, n_jobs=1)  # the fixed file trains

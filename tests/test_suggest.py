"""Suggestions: the ranking against plain loops, the list's limits, and better than the class prior."""
import dataclasses

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score

from model import final, suggest


def test_precision_at_k_and_the_list_against_plain_loops():
    rng = np.random.default_rng(0)
    observed = (rng.random((50, 12)) < 0.2).astype(np.uint8)
    truth = observed | (rng.random((50, 12)) < 0.2)
    score = rng.random((50, 12))
    hidden = (truth == 1) & (observed == 0)
    ranked = suggest.ranked(score, observed)
    for k in (1, 5, 20):
        shares = []
        for i in np.flatnonzero(hidden.any(1)):
            zeros = [j for j in np.argsort(-score[i], kind="stable") if observed[i, j] == 0][:k]
            shares.append(np.mean([hidden[i, j] for j in zeros]))
        assert suggest.precision_at(ranked, hidden, k) == pytest.approx(np.mean(shares))
    rows, classes = suggest.pick(score, observed, max_per_image=2, budget=30)
    assert len(rows) == 30 and (observed[rows, classes] == 0).all()
    assert np.bincount(rows).max() <= 2 and np.all(np.diff(score[rows, classes]) <= 0)
    table = suggest.quality(observed, truth, {"s": score}, {"s": (rows, classes)})
    zeros = observed == 0
    assert table["AP"][0] == pytest.approx(average_precision_score(hidden[zeros], score[zeros]))
    assert table["list precision"][0] == pytest.approx(hidden[rows, classes].mean())


def test_the_model_score_follows_elkan_and_noto_on_calibrated_probabilities():
    rng = np.random.default_rng(1)
    probabilities = rng.uniform(0.01, 0.99, (400, 3))
    observed = (rng.random((400, 3)) < probabilities).astype(np.uint8)  # calibrated already
    calibrated = suggest.platt(probabilities, observed)
    assert np.corrcoef(calibrated.ravel(), probabilities.ravel())[0, 1] > 0.99
    scores = suggest.model_scores(probabilities, observed, 0.25)
    hidden_odds = calibrated / (1 - calibrated) * 0.25 / 0.75  # odds(hidden) = odds(q) r / (1 - r)
    np.testing.assert_allclose(scores, hidden_odds / (1 + hidden_odds), rtol=1e-6)
    assert scores.max() < 1  # a probability: no ties at 1
    with pytest.raises(ValueError, match="the missing rate is 0"):
        suggest.Sources(observed, 0.0, probabilities, ["auto"])


def test_suggestions_from_a_models_rows_beat_the_class_prior(study, tmp_path):
    cfg, _ = study
    cfg = dataclasses.replace(cfg,
                              model=dataclasses.replace(cfg.model, dir=str(tmp_path / "m"),
                                                        hide=0.5, folds=3))
    final.fit(cfg)
    report = suggest.suggest(suggest.from_model(cfg.model_dir), tmp_path / "s.csv", max_per_image=2)
    by = report.set_index("source")
    for k in (1, 5):
        assert by.loc["model", f"P@{k}"] >= by.loc["prior", f"P@{k}"] + 0.05
    assert by.loc["model", "AP"] > by.loc["prior", "AP"] + 0.1
    listed = pd.read_csv(tmp_path / "s.csv")
    assert list(listed.columns[:4]) == ["rank", "key", "class",
                                        "score"] and listed.groupby("key").size().max() <= 2
    assert (tmp_path / "s.quality.csv").is_file()


def test_suggestions_from_a_studys_fold_score_each_row_by_the_fold_model_that_held_it_out(study, tmp_path):
    cfg, sf = study
    annotation = suggest.from_study(cfg, "0.5", fold=2, method="confidence")
    rows = np.flatnonzero(sf.test_fold != 1)
    assert list(annotation["keys"]) == list(sf.ids[rows]) and not np.isnan(annotation["probabilities"]).any()
    np.testing.assert_array_equal(annotation["observed"], sf.observed(1, "0.5")[rows])
    report = suggest.suggest(annotation, tmp_path / "s.csv")
    assert set(report["source"]) >= {"prior", "auto", "model", "combined"}
    assert pd.read_csv(tmp_path / "s.csv").columns[3] == "score"
    alone = suggest.suggest(suggest.from_study(cfg, "0.5", fold=2), tmp_path / "e.csv")
    assert "model" not in set(alone["source"])


def test_a_verified_negative_is_never_suggested_nor_scored():
    rng = np.random.default_rng(2)
    observed = (rng.random((40, 8)) < 0.2).astype(np.uint8)
    verified = (observed == 0) & (rng.random((40, 8)) < 0.5)
    score = rng.random((40, 8))
    rows, classes = suggest.pick(score, observed, max_per_image=8, budget=0, verified=verified)
    assert len(rows) == int(((observed == 0) & ~verified).sum()) and not verified[rows, classes].any()

"""The final model: equal to the study's run on the same rows, its directory's contract, its folds."""
import dataclasses
import json

import h5py
import numpy as np
import pandas as pd
import pytest

from features import store as feature_store
from heads import predictions
from heads.predictions import HeadRun
from model import directory, final, predict
from tests.helpers import study_config


def test_a_model_fitted_on_a_study_fold_predicts_its_test_rows_as_the_studys_run(study):
    cfg, _ = study
    for method, protocol in (("confidence", "0.5"), ("an", "0.25")):
        fitted = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, method=method))
        final.fit(fitted, fold=2, protocol=protocol, force=True)
        reader = feature_store.FeatureReader(feature_store.path(cfg))
        scored = predict.from_store(directory.load(cfg.model_dir), reader.path)
        keys, probabilities = (np.concatenate(parts) for parts in zip(*scored.blocks()))
        with h5py.File(predictions.file(cfg, HeadRun(0, 1, protocol, method)), "r") as h5:
            ids, expected = h5["ids"].asstr()[:], h5["probabilities"][:]
        rows = pd.Index(keys).get_indexer(ids)
        np.testing.assert_allclose(probabilities[rows], expected, atol=1e-5)
        meta = directory.load(cfg.model_dir).meta
        assert meta["training"]["fold"] == 2 and meta["training"]["protocol"] == protocol


def test_the_final_fit_holds_out_validation_rows_and_predicts_every_row_out_of_fold(study, tmp_path):
    cfg, sf = study
    cfg = dataclasses.replace(cfg,
                              model=dataclasses.replace(cfg.model, dir=str(tmp_path / "m"),
                                                        hide=0.5, folds=3))
    final.fit(cfg)
    fitted = directory.load(cfg.model_dir)
    training = fitted.meta["training"]
    # [model] validation 0.1
    assert training["rows"] + training["validation_rows"] == len(sf.ids) and training["validation_rows"] == 40
    assert fitted.meta["classes"] == sf.classes and len(fitted.meta["thresholds"]["class"]) == len(sf.classes)
    oof = directory.out_of_fold(fitted)
    assert not np.isnan(oof["probabilities"]).any() and sorted(set(oof["fold"])) == [0, 1, 2]
    hidden = (oof["labels"] == 1) & (oof["observed"] == 0)
    assert abs(hidden.sum() / oof["labels"].sum() - 0.5) < 0.1 and oof["attrs"]["hidden"]
    rows = final.labelled_rows(cfg, sf)
    for fold in range(3):  # no row both predicted and trained on by the same fold model
        assert not (rows.validation(fold) & (rows.test_fold == fold)).any()
    written = (cfg.model_dir / "model.json").stat().st_mtime_ns
    final.fit(cfg)  # the same provenance: kept
    assert (cfg.model_dir / "model.json").stat().st_mtime_ns == written
    with pytest.raises(ValueError, match="was made from other inputs or settings"):
        final.fit(dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, hide=0.25)))


def test_best_takes_the_leaderboards_non_oracle_heads_leader(tmp_path):
    cfg = study_config(tmp_path, method="best")
    board = final.leaderboard_path(cfg)
    with pytest.raises(ValueError, match="takes the study's leader"):
        final.resolve_method(cfg)
    board.parent.mkdir(parents=True)
    rows = [("heads", "ce", "0", False, 0.70), ("heads", "confidence", "0", False, 0.72),
            ("heads", "ignore_missing", "0", True, 0.80), ("finetune", "ce", "0", False, 0.90),
            ("heads", "an", "0.5", False, 0.99)]
    frame = pd.DataFrame([{"stage": st, "method": m, "name": "shown only", "protocol": p,
                           "oracle": o, "runs": 4,
                           "mean": v, "metric": "mAP"} for st, m, p, o, v in rows])
    frame.drop(columns=["method"]).to_csv(board, index=False)
    with pytest.raises(ValueError, match="names no method ids"):
        final.resolve_method(cfg)
    frame.to_csv(board, index=False)
    assert final.resolve_method(cfg)[0] == "confidence"
    assert final.resolve_method(dataclasses.replace(cfg,
                                                    model=dataclasses.replace(cfg.model,
                                                                              hide=0.5)))[0] == "an"
    with pytest.raises(ValueError, match="no heads method at protocol '0.75'"):
        final.resolve_method(dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, protocol="0.75")))


def test_bad_model_settings_are_named(tmp_path):
    with pytest.raises(ValueError, match="is an oracle"):
        final.check(study_config(tmp_path, method="ignore_missing"))
    with pytest.raises(ValueError, match="'cee' is no method"):
        final.check(study_config(tmp_path, method="cee"))
    with pytest.raises(ValueError, match="model.validation = 0.0"):
        study_config(tmp_path, validation=0.0)
    with pytest.raises(ValueError, match="model.folds = 1"):
        study_config(tmp_path, folds=1)


def test_a_damaged_incomplete_or_foreign_model_directory_is_named_and_a_refit_mends_it(study, tmp_path):
    cfg, _ = study
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, dir=str(tmp_path / "m"), folds=0))
    made = final.fit(cfg)
    manifest = made / "model.json"
    meta = json.loads(manifest.read_text())
    for edit, message in ((lambda m: m.update(version=99), "contract version 99"),
                          (lambda m: m.update(complete=False), "is incomplete"),
                          (lambda m: m.pop("format"), "is not a cbwce-model manifest")):
        changed = dict(meta)
        edit(changed)
        manifest.write_text(json.dumps(changed))
        with pytest.raises(ValueError, match=message):
            directory.load(made)
    manifest.write_text(json.dumps(meta))
    with open(made / "head.npz", "r+b") as fh:
        fh.seek(200)
        fh.write(b"\xff\xff")
    with pytest.raises(ValueError, match="head.npz differs from the sha256"):
        directory.load(made)
    manifest.write_text("{not json")
    with pytest.raises(ValueError, match="model.json is damaged"):
        directory.load(made)
    with pytest.raises(ValueError, match="is damaged"):
        final.fit(cfg)
    final.fit(cfg, force=True)
    assert directory.load(made).meta["complete"]
    with pytest.raises(ValueError, match="no out-of-fold predictions"):
        directory.out_of_fold(directory.load(made))
    with pytest.raises(ValueError, match="does not exist"):
        directory.load(tmp_path / "absent")

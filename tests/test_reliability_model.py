"""Reliability and security, round 4: the model directory, prediction on bad images, suggestions,
review files and label files under hostile input. One test per finding, each asserting the named
message (or, for valid but unusual input, the right result)."""
import csv
import io
import itertools
import json
import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from PIL import Image

import artifacts
import configs
import splits
from analysis import figures, tables
from extract import images
from features import importer
from features import store as features_store
from heads import trainer
from model import __main__ as model_cli
from model import directory, export, final, predict, review, review_page
from splits import datasets, folds
from tests.helpers import fitted_demo_model, make_features, write_config

HOSTILE_CLASSES = ["=cmd|' /C calc'!A0", "+sum", "-2+3", "@SUM(A1)", "a;b", "plain"]


def random_model(path: Path, classes=("a", "b", "c"), feat_dim: int = 6, out_of_fold: dict | None = None,
                 seed: int = 0, backbone: str = "imported") -> Path:
    """A model directory of random weights on imported features, or on a store of `backbone`'s
    (no training)."""
    rng = np.random.default_rng(seed)
    sizes = (feat_dim, 4, len(classes))
    weights = [rng.normal(0, 1, (a, b)).astype(np.float32) for a, b in itertools.pairwise(sizes)]
    biases = [np.zeros(b, np.float32) for b in sizes[1:]]
    meta = {"method": "ce", "display": "CE", "params": {}, "learning_rate": 0.1, "epoch": 1,
            "head": {"type": "paper_mlp", "hidden": [4], "activation": "sigmoid"}, "feat_dim": feat_dim,
            "classes": list(classes), "thresholds": {"global": 0.5, "class": [0.5] * len(classes)},
            "features": {"backbone": backbone, "source": "table.csv", "dtype": "float32"}, "training": {}}
    return directory.write(path, meta, weights, biases, {"test": seed}, out_of_fold=out_of_fold)


def out_of_fold(ids, n_classes: int, seed: int = 0, **attrs) -> dict:
    """out_of_fold.h5's arrays for `random_model`: half of the positives hidden."""
    rng = np.random.default_rng(seed)
    labels = (rng.random((len(ids), n_classes)) < 0.4).astype(np.uint8)
    observed = labels * (rng.random(labels.shape) < 0.5)
    return {"ids": np.asarray(ids, object), "observed": observed.astype(np.uint8), "labels": labels,
            "probabilities": rng.uniform(0.05, 0.95, labels.shape).astype(np.float32),
            "fold": np.arange(len(ids), dtype=np.int8) % 2,
            "attrs": {"missing_rate": 0.5, "hidden": True, **attrs}}


def cli(capsys, *argv) -> tuple[int, str]:
    """`python -m model ...` in process: its exit code and its one-line error (asserted one line)."""
    code = model_cli.main([str(a) for a in argv])
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and err.count("\n") == 0, err
    return code, err


def cells(path: Path) -> list[str]:
    """Every cell of a CSV file, header included, as written."""
    with open(path, newline="") as fh:
        return [cell for row in csv.reader(fh) for cell in row]


def runs_formula(cell: str) -> bool:
    """Whether a spreadsheet would run a cell as a formula (a number, -1 among them, is a number)."""
    try:
        float(cell)
    except ValueError:
        return cell.startswith(("=", "+", "-", "@", "\t", "\r"))
    return False


@pytest.fixture(scope="module")
def imaged(tmp_path_factory):
    """A model on demo_cnn features of 96 synthetic images (`fitted_demo_model`), and a grey
    picture of 96 x 96 pixels with values in 0..255."""
    cfg, _ = fitted_demo_model(tmp_path_factory.mktemp("imaged"))
    y, x = np.mgrid[0:96, 0:96]
    grey = (127.5 + 127.5 * np.sin(x / 7.0) * np.cos(y / 11.0)).round()
    return cfg, grey


# data lost -------------------------------------------------------------------------------------------------


def test_export_never_deletes_or_writes_into_what_is_at_out(tmp_path, capsys, monkeypatch):
    model = random_model(tmp_path / "model")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    afile = tmp_path / "notes.txt"
    afile.write_text("notes")
    work = tmp_path / "work"
    work.mkdir()
    (work / "keep.txt").write_text("keep")
    monkeypatch.chdir(work)
    for out, message in ((mine, "holds other files than an export of this project"),
                         (afile, "exists and is not a folder"),
                         (model, "is the model directory"),
                         (tmp_path, "is the model directory"),
                         (Path("."), "is the current directory")):
        code, err = cli(capsys, "export", "--model", model, "--out", out)
        assert code == 2 and f"--out {out} " in err and message in err
    assert (mine / "thesis.tex").read_text() == "years of work" and afile.read_text() == "notes"
    assert (work / "keep.txt").is_file() and directory.load(model).classes == ["a", "b", "c"]
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())
    # a new path, then the same again (an earlier export: replaced), and an empty folder
    saved = export.export(model, out=str(tmp_path / "saved"))
    assert export.is_export(saved)
    assert export.export(model, out=str(saved)) == saved and export.is_export(saved)
    (tmp_path / "empty").mkdir()
    assert export.is_export(export.export(model, out=str(tmp_path / "empty")))


def test_a_fit_and_a_reader_of_the_same_model_refuse_each_other(tmp_path, capsys):
    cfg = configs.load(write_config(tmp_path / "a.toml", tmp_path, model={"method": "ce", "folds": 0}))
    make_features(cfg)
    random_model(cfg.model_dir, feat_dim=24)
    np.save(tmp_path / "x.npy", np.zeros((3, 24), np.float32))
    with artifacts.claim(cfg.model_dir):  # what a fit holds while it makes the model
        code, err = cli(capsys, "predict", "--model", cfg.model_dir, "--features", tmp_path / "x.npy",
                        "--out", tmp_path / "x.csv")
        assert code == 2 and f"{cfg.model_dir.resolve()} is being made by process {os.getpid()}" in err
        for command in ("export", "suggest"):
            code, err = cli(capsys, command, "--model", cfg.model_dir)
            assert code == 2 and "is being made by process" in err
    assert not (tmp_path / "x.csv").exists()
    with directory.reading(cfg.model_dir):  # what predict, suggest and export hold
        with pytest.raises(ValueError, match="model is being read by another process; wait for it"):
            final.fit(cfg, force=True)
        with directory.reading(cfg.model_dir):  # readers share
            pass
    assert directory.load(cfg.model_dir).meta["provenance"] == {"test": 0}


def test_16_bit_and_float_tiffs_are_scaled_into_0_255_not_clipped(imaged, tmp_path):
    cfg, grey = imaged
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(grey.astype(np.uint8)).save(folder / "grey8.png")
    Image.fromarray((grey * 257).astype(np.uint16)).save(folder / "grey16.tif")
    Image.fromarray((grey / 255).astype(np.float32)).save(folder / "float.tif")
    Image.fromarray((grey * 257).astype(np.uint16)).save(folder / "grey16.png")
    eight = images.pil_load(str(folder / "grey8.png"), 96)
    for name in ("grey16.tif", "float.tif"):
        np.testing.assert_allclose(images.pil_load(str(folder / name), 96), eight, atol=0.51, err_msg=name)
    table = pd.read_csv(predict.predict(cfg.model_dir, images=str(folder), out=str(tmp_path / "p.csv")))
    probabilities = table.set_index("key")[directory.load(cfg.model_dir).classes]
    for name in ("grey16.tif", "float.tif", "grey16.png"):
        np.testing.assert_allclose(probabilities.loc[name], probabilities.loc["grey8.png"], atol=2e-3,
                                   err_msg=name)


def test_an_id_list_mixing_quoted_and_bare_ids_keeps_every_id(tmp_path):
    labels = tmp_path / "data.csv"
    pd.DataFrame({"path": ["a.png", "b.png"], "label": ["['/m/000', /m/001]", '["/m/002"]'],
                  "label_neg": ["", "/m/000 /m/001"]}).to_csv(labels, index=False)
    manifest = datasets.from_csv(labels, id_lists=("label", "label_neg"))
    assert manifest.classes == ["/m/000", "/m/001", "/m/002"]
    np.testing.assert_array_equal(manifest.labels, [[1, 1, 0], [0, 0, 1]])
    np.testing.assert_array_equal(manifest.known, [[1, 1, 0], [1, 1, 1]])
    pd.DataFrame({"path": ["a.png"], "label": ["['/m/000, /m/001]"], "label_neg": [""]}).to_csv(labels,
                                                                                               index=False)
    with pytest.raises(ValueError, match=r"data.csv: row 'a.png' column 'label': the ids .* hold a ' that "
                                         "does not close"):
        datasets.from_csv(labels, id_lists=("label", "label_neg"))


def test_an_image_of_more_pixels_than_the_limit_is_listed_unreadable(imaged, tmp_path, monkeypatch):
    cfg, grey = imaged
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(grey.astype(np.uint8)).save(folder / "small.png")
    Image.new("L", (300, 200)).save(folder / "bomb.png")
    monkeypatch.setattr(images, "MAX_PIXELS", 100 * 100)
    out = predict.predict(cfg.model_dir, images=str(folder), out=str(tmp_path / "p.csv"))
    assert list(pd.read_csv(out)["key"]) == ["small.png"]
    unreadable = pd.read_csv(tmp_path / "p.unreadable.csv")
    assert list(unreadable["key"]) == ["bomb.png"]
    assert "300 x 200 pixels, more than the 10,000 an image may have: downscale it" in unreadable["reason"][0]


def test_predict_never_writes_over_its_input(tmp_path, capsys):
    model = random_model(tmp_path / "model")
    mine = tmp_path / "mine.csv"
    pd.DataFrame(np.ones((4, 6))).to_csv(mine, index=False)
    before = mine.read_bytes()
    code, err = cli(capsys, "predict", "--model", model, "--features", mine, "--out", mine)
    assert code == 2 and f"would write {mine}, which is the input {mine}" in err
    assert mine.read_bytes() == before
    store = tmp_path / "features.h5"
    with h5py.File(store, "w") as h5:
        h5["features"] = np.ones((4, 6), np.float32)
    code, err = cli(capsys, "predict", "--model", model, "--features", mine, "--out", store)
    assert code == 2 and f"--out {store}: the predictions are a CSV; give a path ending in .csv" in err
    with h5py.File(store, "r") as h5:
        assert h5["features"].shape == (4, 6)
    assert cli(capsys, "predict", "--model", model, "--features", mine, "--out", tmp_path / "p.csv")[0] == 0


# bounded memory -------------------------------------------------------------------------------------------


def test_predict_features_streams_a_npy_and_a_store_a_block_at_a_time(tmp_path, monkeypatch):
    cfg = configs.load(write_config(tmp_path / "a.toml", tmp_path))
    make_features(cfg)
    store = features_store.path(cfg)
    model = directory.load(random_model(tmp_path / "model", feat_dim=24, backbone="synthetic"))
    rows = features_store.FeatureReader(store).rows(np.arange(120))
    np.save(tmp_path / "rows.npy", rows)
    assert not importer.memory_mapped(tmp_path / "rows.npy").flags.owndata  # a view of the mapped file
    monkeypatch.setattr(predict, "BLOCK_ROWS", 50)
    read = []
    monkeypatch.setattr(directory.Model, "probabilities", lambda self, x: read.append(len(x)) or np.full(
        (len(x), 3), 0.5, np.float32) + x[:, :3])
    for source in (tmp_path / "rows.npy", store):
        read.clear()
        out = predict.predict(model.path, features=str(source), out=str(tmp_path / f"{source.stem}.csv"))
        assert read == [50, 50, 20]
        np.testing.assert_allclose(pd.read_csv(out)[model.classes].to_numpy(), 0.5 + rows[:, :3], atol=1e-5)
    rows[70, 4] = np.inf
    np.save(tmp_path / "rows.npy", rows)
    with pytest.raises(ValueError, match="rows.npy: row '70' feature column 4 holds inf"):
        predict.predict(model.path, features=str(tmp_path / "rows.npy"), out=str(tmp_path / "bad.csv"))
    assert not (tmp_path / "bad.csv").exists() and not list(tmp_path.glob(".bad.csv.*"))


def test_predict_features_streams_a_csv_a_block_at_a_time_with_its_checks(tmp_path, monkeypatch):
    model = directory.load(random_model(tmp_path / "model", feat_dim=6))
    rng = np.random.default_rng(4)
    x = rng.normal(0, 1, (120, 6))
    table = pd.DataFrame(x, columns=[f"f{j}" for j in range(6)])
    table.insert(0, "name", [f"img {i}" for i in range(120)])
    table["label"] = rng.integers(0, 2, 120)
    table.to_csv(tmp_path / "rows.csv", index=False)
    dataset = configs.Dataset(id_column="name", n_labels=1)
    whole = predict.predict(model.path, features=str(tmp_path / "rows.csv"), out=str(tmp_path / "whole.csv"),
                            dataset=dataset)
    monkeypatch.setattr(predict, "BLOCK_ROWS", 50)
    read = []
    monkeypatch.setattr(pd, "read_csv", lambda *a, _read=pd.read_csv, **k: read.append(k.get("chunksize"))
                        or _read(*a, **k))
    out = predict.predict(model.path, features=str(tmp_path / "rows.csv"), out=str(tmp_path / "blocks.csv"),
                          dataset=dataset)
    assert read[-1] == 50 and None not in read[1:]  # the header alone, then blocks of 50 rows
    assert out.read_bytes() == whole.read_bytes()
    assert pd.read_csv(out)["key"].tolist() == [f"img {i}" for i in range(120)]
    np.testing.assert_allclose(pd.read_csv(out)[model.classes].to_numpy(),
                               model.probabilities(x.astype(np.float32)), atol=1e-5)
    table.loc[[20, 110], "name"] = "twice"
    table.to_csv(tmp_path / "rows.csv", index=False)
    with pytest.raises(ValueError, match="rows.csv: duplicate row key 'twice'; keys must be unique"):
        predict.predict(model.path, features=str(tmp_path / "rows.csv"), out=str(tmp_path / "bad.csv"),
                        dataset=dataset)
    table.loc[110, "name"] = "img 110"
    table = table.astype({"f2": object})
    table.loc[70, "f2"] = "n/a"
    table.to_csv(tmp_path / "rows.csv", index=False)
    with pytest.raises(ValueError, match=r"row 'img 70 \(line 72\)' column 'f2' holds 'n/a', not a number"):
        predict.predict(model.path, features=str(tmp_path / "rows.csv"), out=str(tmp_path / "bad.csv"),
                        dataset=dataset)
    assert not (tmp_path / "bad.csv").exists() and not list(tmp_path.glob(".bad.csv.*"))


# silently wrong results and tracebacks from an edited model.json -------------------------------------------


def edit(meta: dict, key: str, value) -> None:
    """Set (or with value None, remove) a key of model.json, dotted for a nested one."""
    *parents, last = key.split(".")
    for parent in parents:
        meta = meta[parent]
    if value is None:
        meta.pop(last)
    else:
        meta[last] = value


@pytest.mark.parametrize("key, value, message", [
    ("classes", ["b", "a", "c"], "model.json differs from the sha256 written with it"),
    ("classes", ["a", "a", "c"], "classes is [\"a\", \"a\", \"c\"]; class 'a' appears 2 times"),
    ("classes", "abc", "classes is \"abc\"; it must be the list of the model's class names"),
    ("thresholds.global", float("nan"), "thresholds.global is NaN; it must be a number in [0, 1]"),
    ("thresholds.global", 1.5, "thresholds.global is 1.5; it must be a number in [0, 1]"),
    ("thresholds.class", [0.5, 0.5],
     "thresholds.class is [0.5, 0.5]; it must list one threshold per class (3)"),
    ("thresholds.class", [0.5, -0.1, 0.5], "thresholds.class[1] is -0.1; it must be a number in [0, 1]"),
    ("thresholds", "0.5", "thresholds is \"0.5\"; it must be {\"global\": t"),
    ("thresholds", None, "thresholds is null"),
    ("features", None, "features is null; it must describe the features"),
    ("head", [4], "head is [4]; it must be {type, hidden"),
    ("backbone", "../../elsewhere/model.ckpt", "backbone is \"../../elsewhere/model.ckpt\"; it is \"\""),
    ("files", {"head.npz": "0" * 64, "../../etc/passwd": "0" * 64}, "files is \"../../etc/passwd\""),
])
def test_an_edited_model_json_is_refused_naming_the_key_and_value(tmp_path, capsys, key, value, message):
    model = random_model(tmp_path / "model")
    np.save(tmp_path / "x.npy", np.zeros((2, 6), np.float32))
    manifest = model / "model.json"
    meta = json.loads(manifest.read_text())
    edit(meta, key, value)
    manifest.write_text(json.dumps(meta))
    for command in (["predict", "--features", tmp_path / "x.npy", "--threshold", "class"], ["export"]):
        code, err = cli(capsys, command[0], "--model", model, *command[1:])
        assert code == 2 and str(manifest) in err and message in err, err
        assert "restore the model.json" in err or "refit it" in err
    assert not (model / "predictions").exists() and not (model / "saved_model").exists()


@pytest.mark.parametrize("change, message", [
    (lambda oof: oof["attrs"].pop("missing_rate"), "has missing_rate None, not the share of positives"),
    (lambda oof: oof.update(observed=oof["observed"][:, :2]),
     "holds observed of shape (5, 2), not (5, 3): 5 rows by the model's 3 classes"),
    (lambda oof: oof.pop("probabilities"), "holds no 'probabilities'"),
])
def test_a_damaged_out_of_fold_file_is_named(tmp_path, capsys, change, message):
    oof = out_of_fold([f"r{i}" for i in range(5)], 3)
    change(oof)
    model = random_model(tmp_path / "model", out_of_fold=oof)
    code, err = cli(capsys, "suggest", "--model", model)
    assert code == 2 and f"{model / 'out_of_fold.h5'} {message}" in err and "refit it" in err
    assert not (model / "suggestions.csv").exists()


# tracebacks or raw library messages ------------------------------------------------------------------------


def test_suggest_from_a_study_names_predictions_missing_or_made_from_other_splits(tmp_path, capsys):
    path = write_config(tmp_path / "a.toml", tmp_path, heads={"methods": ["ce"]})
    cfg = configs.load(path)
    make_features(cfg)
    code, err = cli(capsys, "suggest", "--config", path, "--protocol", "0.5", "--method", "ce")
    assert code == 2 and "predictions.h5 does not exist: --method ce scores each row" in err
    assert "run the study's heads first: python -m heads train" in err
    trainer.train(cfg)
    assert cli(capsys, "suggest", "--config", path, "--protocol", "0.5", "--method", "ce")[0] == 0
    resplit = write_config(tmp_path / "a.toml", tmp_path, heads={"methods": ["ce"]},
                           dataset={"n_images": 100})
    splits.make(configs.load(resplit), force=True)
    code, err = cli(capsys, "suggest", "--config", resplit, "--protocol", "0.5", "--method", "ce")
    assert code == 2 and "was made from other splits than" in err and "(the study was split again)" in err


def test_a_report_draws_class_names_with_dollars_as_text_and_escapes_markdown_cells(tmp_path):
    names = ["price $5-$10", "$x^{2$", "a|b", "`code`"]  # mathtext would parse both, and fail on the second
    labels = np.array([[1, 0, 1, 0], [0, 1, 1, 1], [1, 1, 0, 0]], np.uint8)
    assert figures.cooccurrence(labels, names, tmp_path / "fig4")[0].is_file()
    frame = pd.DataFrame({"stage": ["heads"], "method": ["ce"], "protocol": ["0.5"]})
    per_class = {0: {"class_positives": labels.sum(0), "class_tp": labels.sum(0) // 2}}
    assert figures.true_positives(frame, per_class, names, "0.5", 4, tmp_path / "fig3")[0].is_file()
    markdown = tables.to_markdown(pd.DataFrame({"class": names, "n": [1, 2, 3, 4]})).splitlines()
    assert markdown[5] == r"| \`code\` | 4 |" and markdown[4] == r"| a\|b | 3 |"
    assert all(line.replace(r"\|", "").count("|") == 3 for line in markdown)


def test_one_image_given_as_images_is_predicted(imaged, tmp_path, capsys):
    cfg, grey = imaged
    photo = tmp_path / "my photo é.png"
    Image.fromarray(grey.astype(np.uint8)).convert("RGBA").save(photo)
    code, err = cli(capsys, "predict", "--model", cfg.model_dir, "--images", photo, "--out",
                    tmp_path / "p.csv")
    assert code == 0, err
    assert list(pd.read_csv(tmp_path / "p.csv")["key"]) == ["my photo é.png"]


def test_an_image_whose_file_name_is_not_utf8_is_listed_unreadable(imaged, tmp_path, capsys):
    cfg, grey = imaged
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(grey.astype(np.uint8)).save(folder / "good.png")
    try:
        shutil.copy(folder / "good.png", os.fsdecode(bytes(folder) + b"/caf\xe9.png"))
    except OSError:
        pytest.skip("this file system refuses names that are not UTF-8")
    code, err = cli(capsys, "predict", "--model", cfg.model_dir, "--images", folder, "--out",
                    tmp_path / "p.csv")
    assert code == 0, err
    assert list(pd.read_csv(tmp_path / "p.csv")["key"]) == ["good.png"]
    unreadable = pd.read_csv(tmp_path / "p.unreadable.csv")
    assert list(unreadable["key"]) == ["caf\\xe9.png"]
    assert unreadable["reason"][0] == "its file name is not UTF-8: rename it to read it"


def test_an_object_npy_is_one_error_naming_the_file(tmp_path, capsys):
    model = random_model(tmp_path / "model")
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    code, err = cli(capsys, "predict", "--model", model, "--features", tmp_path / "objects.npy")
    assert code == 2 and f"{tmp_path / 'objects.npy'}: the features are not a NumPy array of numbers" in err


def test_more_validation_parts_than_rows_is_named():
    labels = np.array([[1, 0], [0, 1], [1, 1]], np.uint8)
    with pytest.raises(ValueError, match=r"model.validation = 0.2 holds out one of 5 stratified parts of the "
                                         r"rows, and 3 row\(s\) cannot make 5"):
        folds.held_out(labels, 0.2, 0, "model.validation")
    with pytest.raises(ValueError, match=r"splits.validation = 0.2 holds out one of 5 .* 1 row\(s\)"):
        folds.validation_rows(labels[:2], np.array([0, 1]), 0.2, 0)
    with pytest.raises(ValueError, match="3 images cannot make 5 folds; give more rows, or fewer folds"):
        folds.make_folds(labels, 5, 0)


# injection -------------------------------------------------------------------------------------------------


def test_keys_and_class_names_are_text_in_the_prediction_and_suggestion_csvs(tmp_path, capsys):
    keys = ["=1+2", "\tcmd", "-3", "@x", "'quoted", "plain"]
    oof = out_of_fold(keys, len(HOSTILE_CLASSES))
    model = random_model(tmp_path / "model", classes=HOSTILE_CLASSES, out_of_fold=oof)
    table = pd.DataFrame(np.random.default_rng(0).normal(0, 3, (6, 6)))
    table.insert(0, "id", keys)
    table.to_csv(tmp_path / "new.csv", index=False)
    code, err = cli(capsys, "predict", "--model", model, "--features", tmp_path / "new.csv", "--id-column",
                    "id", "--top-k", 6, "--out", tmp_path / "p.csv")
    assert code == 0, err
    written = cells(tmp_path / "p.csv")
    assert not any(runs_formula(cell) for cell in written)
    frame = pd.read_csv(tmp_path / "p.csv", dtype=str, keep_default_na=False)
    assert [artifacts.plain(k) for k in frame["key"]] == keys
    assert [artifacts.plain(c) for c in frame.columns[2:]] == HOSTILE_CLASSES
    for cell in frame["tags"]:  # the docstring's rule reads every class back, "a;b" as one
        assert next(csv.reader(io.StringIO(artifacts.plain(cell)), delimiter=";")) == HOSTILE_CLASSES
    code, err = cli(capsys, "suggest", "--model", model, "--max-per-image", "6")
    assert code == 0, err
    listed = pd.read_csv(model / "suggestions.csv", dtype=str, keep_default_na=False)
    assert not any(runs_formula(cell) for cell in cells(model / "suggestions.csv")) and len(listed)
    assert {artifacts.plain(k) for k in listed["key"]} <= set(keys)
    assert {artifacts.plain(c) for c in listed["class"]} <= set(HOSTILE_CLASSES)


def review_files(cfg, keys, classes) -> dict:
    """A model of `keys` x `classes` at cfg's [model] dir and a review.json of two suggestions."""
    model = random_model(cfg.model_dir, classes=classes, out_of_fold=out_of_fold(keys, len(classes)))
    oof = directory.out_of_fold(directory.load(model))
    (i, j), (k, m) = np.argwhere(oof["observed"] == 0)[:2]
    fingerprint = directory.load(model).meta["fingerprint"]
    suggested = [{"key": keys[i], "class": classes[j], "score": 0.9, "rank": 1},
                 {"key": keys[k], "class": classes[m], "score": 0.8, "rank": 2}]
    exported = {"format": review.FORMAT, "version": review.VERSION, "review": "ab" * 32, "model": fingerprint,
                "model_dir": str(model), "classes": classes, "source": "model", "suggestions": suggested,
                "complete": True}
    (model / "review").mkdir()
    (model / "review" / review.MANIFEST).write_text(json.dumps(exported))
    return exported


def test_review_csvs_write_keys_and_classes_as_text_and_the_next_fit_reads_them_back(tmp_path):
    cfg = configs.from_dict({"experiment": {"name": "v", "runs_dir": str(tmp_path)}}, source="test")
    keys = ["=1+2", "+x", "-y", "@z", "plain"]
    exported = review_files(cfg, keys, HOSTILE_CLASSES)
    decided = [(s["key"], s["class"], d) for s, d in zip(exported["suggestions"], ("accept", "reject"))]
    decisions = tmp_path / "decisions.json"
    decisions.write_text(json.dumps({"format": review_page.DECISIONS_FORMAT,
                                     "version": review_page.DECISIONS_VERSION, "review": exported["review"],
                                     "model": exported["model"],
                                     "decisions": [{"key": k, "class": c, "decision": d}
                                                   for k, c, d in decided]}))
    folder = review.import_decisions(cfg, str(decisions))
    for name in ("labels.csv", "decisions.csv"):
        assert not any(runs_formula(cell) for cell in cells(folder / name)), name
    manifest = datasets.Manifest(keys, [""] * len(keys), HOSTILE_CLASSES,
                                 np.zeros((len(keys), len(HOSTILE_CLASSES)), np.uint8), "test")
    reviewed = datasets.apply_reviewed(manifest, folder / "labels.csv")
    (key, cls, _), (other_key, other_cls, _) = decided
    assert reviewed.labels[keys.index(key), HOSTILE_CLASSES.index(cls)] == 1
    assert reviewed.known[keys.index(other_key), HOSTILE_CLASSES.index(other_cls)]
    assert reviewed.labels[keys.index(other_key), HOSTILE_CLASSES.index(other_cls)] == 0


def test_a_review_id_that_is_a_path_is_refused(tmp_path):
    cfg = configs.from_dict({"experiment": {"name": "v", "runs_dir": str(tmp_path)}}, source="test")
    exported = review_files(cfg, ["a", "b", "c"], ["x", "y"])
    exported["review"] = "../../../../escape"
    (cfg.model_dir / "review" / review.MANIFEST).write_text(json.dumps(exported))
    with pytest.raises(ValueError, match=r"review.json: review is \"../../../../escape\"; the file was"):
        review.import_decisions(cfg, str(tmp_path / "decisions.json"))
    assert not (tmp_path / "escape").exists()


# a kill in the middle of the model swap ------------------------------------------------------------------


def test_a_kill_during_the_model_swap_leaves_the_old_model_named_and_the_next_fit_restores_it(
        tmp_path, capsys, monkeypatch):
    cfg = configs.load(write_config(tmp_path / "a.toml", tmp_path, model={"method": "ce", "folds": 0}))
    make_features(cfg)
    made = final.fit(cfg)
    head = (made / "head.npz").read_bytes()
    # as a kill -9 between the swap's two renames leaves it: the old model aside, the new one staged
    aside = made.with_name(".model.old-4242")
    os.replace(made, aside)
    (made.with_name(".model.x1y2.tmp") / "head.npz").parent.mkdir()
    (made.with_name(".model.x1y2.tmp") / "head.npz").write_bytes(b"partial")
    code, err = cli(capsys, "predict", "--model", made, "--features", tmp_path / "x.npy")
    assert code == 2 and "a fit replacing it was interrupted, and the previous model is in" in err
    assert str(aside) in err and "rerun the fit (it restores or replaces it)" in err
    final.fit(cfg)
    assert "restored the previous model from .model.old-4242" in capsys.readouterr().out
    assert (made / "head.npz").read_bytes() == head and not aside.exists()
    assert sorted(p.name for p in tmp_path.joinpath("r").iterdir() if p.name.startswith(".model")) == []
    # a rename that fails in the middle of the swap puts the old model back
    real = os.replace

    def failing(source, target):  # the rename of the new model into place
        if Path(source).is_dir() and Path(source).name.endswith(".tmp"):
            raise OSError(5, "Input/output error")
        real(source, target)

    monkeypatch.setattr(artifacts.files.os, "replace", failing)
    with pytest.raises(ValueError, match="model: writing failed"):
        final.fit(cfg, force=True)
    monkeypatch.undo()
    assert (made / "head.npz").read_bytes() == head and directory.load(made).meta["complete"]


def test_the_model_manifest_checksum_covers_what_is_read_back(tmp_path):
    model = random_model(tmp_path / "model")
    meta = json.loads((model / "model.json").read_text())
    assert meta[directory.MANIFEST_SHA256] == directory.manifest_digest(meta)
    assert meta["version"] == directory.VERSION == 2
    (model / "model.json").write_text(json.dumps(meta, indent=4))  # reformatted, same content: still valid
    assert directory.load(model).meta == meta


def test_images_that_are_grey_rgba_cmyk_or_palette_predict_as_their_rgb(imaged, tmp_path):
    cfg, grey = imaged
    folder = tmp_path / "modes"
    folder.mkdir()
    rgb = Image.fromarray(np.stack([grey, grey[::-1], grey.T], axis=2).astype(np.uint8))
    rgb.save(folder / "rgb.png")
    rgb.convert("RGBA").save(folder / "rgba.png")
    rgb.convert("CMYK").save(folder / "cmyk.jpg", quality=100)
    rgb.convert("RGB").save(folder / "rgb.jpg", quality=100)
    table = pd.read_csv(predict.predict(cfg.model_dir, images=str(folder), out=str(tmp_path / "p.csv")))
    probabilities = table.set_index("key")[directory.load(cfg.model_dir).classes]
    np.testing.assert_allclose(probabilities.loc["rgba.png"], probabilities.loc["rgb.png"], atol=1e-6)
    np.testing.assert_allclose(probabilities.loc["cmyk.jpg"], probabilities.loc["rgb.jpg"], atol=0.02)


"""Prediction from images and features, the SavedModel in a process that cannot import the project,
and what bad input does."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from model import __main__ as model_cli
from model import directory, export, predict
from splits import store as splits_store
from tests.helpers import fitted_demo_model


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A model on demo_cnn features of 96 synthetic images, with a folder of 10 of them and a
    file that is no image."""
    root = tmp_path_factory.mktemp("fitted")
    cfg, store = fitted_demo_model(root)
    sf = splits_store.load(splits_store.path(cfg))
    folder = root / "new"
    (folder / "sub").mkdir(parents=True)
    for i, path in enumerate(sf.image_paths[:10]):
        shutil.copy(path, folder / ("sub" if i % 2 else "") / Path(path).name)
    (folder / "broken.png").write_bytes(b"not an image")
    return cfg, store, folder, sf


def frame(path):
    return pd.read_csv(path)


def test_predictions_from_images_equal_predictions_from_their_extracted_features(fitted, tmp_path):
    cfg, store, folder, sf = fitted
    from_images = frame(predict.predict(cfg.model_dir, images=str(folder), out=str(tmp_path / "i.csv")))
    from_features = frame(predict.predict(cfg.model_dir, features=str(store), out=str(tmp_path / "f.csv")))
    classes = directory.load(cfg.model_dir).classes
    assert len(from_images) == 10 and set(from_images["key"]) >= {"00000.png", "sub/00001.png"}
    names = {Path(path).name: key for key, path in zip(sf.ids, sf.image_paths)}
    keys = [names[Path(key).name] for key in from_images["key"]]
    expected = from_features.set_index("key").loc[keys, classes].to_numpy()
    np.testing.assert_allclose(from_images[classes].to_numpy(), expected, atol=2e-6)  # the CSV's 6 digits
    unreadable = frame(tmp_path / "i.unreadable.csv")
    assert list(unreadable["key"]) == ["broken.png"] and "cannot identify" in unreadable["reason"][0]
    thresholds = directory.load(cfg.model_dir).thresholds("global")
    predicted = from_images[classes].to_numpy() >= thresholds[None]
    assert [";".join(np.array(classes)[row]) for row in predicted] == list(from_images["tags"].fillna(""))
    top = frame(predict.predict(cfg.model_dir, images=str(folder), out=str(tmp_path / "t.csv"), top_k=2))
    assert all(len(tags.split(";")) == 2 for tags in top["tags"])


def test_a_list_file_and_a_features_table_predict_the_same_rows(fitted, tmp_path):
    cfg, store, folder, _ = fitted
    listing = tmp_path / "list.txt"
    listing.write_text("# two images\n"
                       + "\n".join(str(folder / name) for name in ("00000.png", "sub/00001.png")))
    listed = frame(predict.predict(cfg.model_dir, images=str(listing), out=str(tmp_path / "l.csv")))
    reader = predict.feature_store.FeatureReader(store)
    x = reader.rows(np.arange(4))
    np.save(tmp_path / "x.npy", x)
    table = frame(predict.predict(cfg.model_dir, features=str(tmp_path / "x.npy"),
                                  out=str(tmp_path / "x.csv")))
    classes = directory.load(cfg.model_dir).classes
    np.testing.assert_allclose(table[classes].to_numpy()[:2], listed[classes].to_numpy(), atol=2e-6)


def test_the_saved_model_gives_the_same_probabilities_in_a_process_without_the_project(fitted, tmp_path):
    cfg, store, folder, _ = fitted
    saved = export.export(cfg.model_dir, out=str(tmp_path / "saved"))
    predicted = frame(predict.predict(cfg.model_dir, images=str(folder), out=str(tmp_path / "p.csv")))
    images = np.stack([np.asarray(Image.open(folder / key).convert("RGB"), np.float32)
                       for key in predicted["key"]])
    features = predict.feature_store.FeatureReader(store).rows(np.arange(5))
    np.save(tmp_path / "images.npy", images)
    np.save(tmp_path / "features.npy", features)
    code = f"""
import numpy as np, tensorflow as tf
try:
    import heads
except ImportError:
    pass
else:
    raise SystemExit("the project is importable here")
loaded = tf.saved_model.load({str(saved)!r})
for name in ("images", "features"):
    x = tf.constant(np.load({str(tmp_path)!r} + "/" + name + ".npy"))
    out = loaded.signatures[name](**{{name: x}})["probabilities"].numpy()
    np.save({str(tmp_path)!r} + "/out_" + name + ".npy", out)
"""
    done = subprocess.run([sys.executable, "-I", "-c", code], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    fitted_model = directory.load(cfg.model_dir)
    np.testing.assert_allclose(np.load(tmp_path / "out_images.npy"),
                               predicted[fitted_model.classes].to_numpy(),
                               atol=1e-5)
    np.testing.assert_allclose(np.load(tmp_path / "out_features.npy"),
                               fitted_model.probabilities(features), atol=1e-5)
    assert json.loads((saved / "cbwce_model.json").read_text())["classes"] == fitted_model.classes


def cli(capsys, *argv):
    code = model_cli.main(list(argv))
    return code, capsys.readouterr().err


def test_bad_input_is_one_named_error_and_nothing_is_left_as_complete(fitted, tmp_path, capsys):
    cfg, _, folder, _ = fitted
    model_dir = str(cfg.model_dir)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images here")
    code, err = cli(capsys, "predict", "--model", model_dir, "--images", str(empty), "--out",
                    str(tmp_path / "e.csv"))
    assert code == 2 and f"{empty} holds no image" in err and not (tmp_path / "e.csv").exists()
    np.save(tmp_path / "narrow.npy", np.zeros((3, 5), np.float32))
    code, err = cli(capsys, "predict", "--model", model_dir, "--features", str(tmp_path / "narrow.npy"))
    assert code == 2 and "narrow.npy has 5 features per row" in err and "reads 128" in err
    # 128 features, 3 label columns
    pd.DataFrame(np.zeros((3, 131))).to_csv(tmp_path / "labelled.csv", index=False)
    code, err = cli(capsys, "predict", "--model", model_dir, "--features", str(tmp_path / "labelled.csv"))
    assert code == 2 and "has 131 features per row" in err and "give --n-labels 3" in err
    code, err = cli(capsys, "predict", "--model", model_dir, "--images", str(folder), "--top-k", "17")
    assert code == 2 and "--top-k 17: the model has 16 classes" in err
    code, err = cli(capsys, "predict", "--model", model_dir, "--images", str(folder), "--threshold", "high")
    assert code == 2 and "--threshold 'high'" in err
    code, err = cli(capsys, "predict", "--model", str(tmp_path / "none"), "--images", str(folder))
    assert code == 2 and "is no model directory" in err
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.png").write_bytes(b"x")
    (broken / "b.jpg").write_bytes(b"y")
    code, err = cli(capsys, "predict", "--model", model_dir, "--images", str(broken), "--out",
                    str(tmp_path / "b.csv"))
    assert code == 2 and "2 of 2 images are unreadable" in err and not (tmp_path / "b.csv").exists()
    assert not (tmp_path / "b.features.h5").exists()
    Image.new("RGB", (40, 30), (200, 10, 10)).save(broken / "a.png")  # the fix: one readable image
    code, err = cli(capsys, "predict", "--model", model_dir, "--images", str(broken), "--out",
                    str(tmp_path / "b.csv"))
    assert code == 0, err
    assert list(frame(tmp_path / "b.csv")["key"]) == ["a.png"]


def test_a_feature_store_of_another_network_is_refused_naming_both(fitted, tmp_path):
    cfg, store, _, _ = fitted
    other = tmp_path / "other.h5"
    shutil.copy(store, other)
    import h5py
    with h5py.File(other, "r+") as h5:
        h5.attrs["pooling"] = "avg"
    with pytest.raises(ValueError, match="pooling: 'avg' vs the model's 'max'"):
        predict.predict(cfg.model_dir, features=str(other))

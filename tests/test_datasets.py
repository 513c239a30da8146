import json

import numpy as np
import pandas as pd
import pytest

from splits import datasets, synthetic


def test_csv_adapter_and_min_labels(tmp_path):
    frame = pd.DataFrame({"path": ["a.jpg", "b.jpg", "c.jpg"], "cat": [1, 1, 0], "dog": [1, 0, 1],
                          "car": [1, 0, 1]})
    frame.to_csv(tmp_path / "labels.csv", index=False)
    manifest = datasets.from_csv(tmp_path / "labels.csv")
    assert manifest.classes == ["cat", "dog", "car"]
    assert manifest.paths[0] == str(tmp_path / "a.jpg")
    kept = datasets.filter_min_labels(manifest, 2)
    assert kept.ids == ["a.jpg", "c.jpg"]


@pytest.mark.parametrize("column, values, message", [
    ("cat", [1, 2, 0], "row 'b.jpg' label column 'cat' holds 2; labels are coded 0/1"),
    ("path", ["a.jpg", "./a.jpg", "c.jpg"], "duplicate key 'a.jpg'"),  # one image, spelt two ways
    ("dog", [1, "yes", 0],
     "row 'b.jpg' column 'dog' holds 'yes'; class columns must hold a label of the coding"),
    ("dog", [1, "", 0], "row 'b.jpg' label column 'dog' is empty .* it has no unknowns"),
])
def test_csv_bad_input(tmp_path, column, values, message):
    frame = pd.DataFrame({"path": ["a.jpg", "b.jpg", "c.jpg"], "cat": [1, 1, 0], "dog": [1, 0, 1]})
    frame[column] = values
    frame.to_csv(tmp_path / "labels.csv", index=False)
    with pytest.raises(ValueError, match=message):
        datasets.from_csv(tmp_path / "labels.csv")


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ValueError, match="nowhere.csv does not exist"):
        datasets.from_csv(tmp_path / "nowhere.csv")
    with pytest.raises(ValueError, match="is a directory; point it at the file"):
        datasets.from_csv(tmp_path)


def test_classes_and_rows_without_positives_are_dropped_and_counted(tmp_path):
    frame = pd.DataFrame({"path": ["a.jpg", "b.jpg", "c.jpg"], "cat": [1, 1, 0], "dog": [0, 0, 0],
                          "car": [1, 1, 0]})
    frame.to_csv(tmp_path / "labels.csv", index=False)
    kept = datasets.filter_min_labels(datasets.from_csv(tmp_path / "labels.csv"), 1)
    assert kept.ids == ["a.jpg", "b.jpg"] and kept.classes == ["cat", "car"]
    assert kept.dropped_rows == 1 and kept.dropped_classes == ("dog",)


def test_coco_adapter_orders_classes_by_category_id(tmp_path):
    coco = {"images": [{"id": 9, "file_name": "9.jpg"}, {"id": 3, "file_name": "3.jpg"}],
            "categories": [{"id": 5, "name": "dog"}, {"id": 1, "name": "person"}],
            "annotations": [{"image_id": 9, "category_id": 5}, {"image_id": 9, "category_id": 5},
                            {"image_id": 3, "category_id": 1}]}
    (tmp_path / "instances.json").write_text(json.dumps(coco))
    manifest = datasets.from_coco(tmp_path / "instances.json", tmp_path / "img")
    assert manifest.classes == ["person", "dog"] and manifest.ids == [3, 9]
    np.testing.assert_array_equal(manifest.labels, [[1, 0], [0, 1]])


def test_nuswide_adapter(tmp_path):
    (tmp_path / "ImageList").mkdir()
    (tmp_path / "ImageList" / "Imagelist.txt").write_text("C:\\ImageData\\actor\\0001_2124494179.jpg\n"
                                                          "animal\\0002_174174086.jpg\n")
    (tmp_path / "Concepts81.txt").write_text("airport\nanimal\n")
    (tmp_path / "AllTags81.txt").write_text("1 0\n1 1\n")
    manifest = datasets.from_nuswide(tmp_path, "/images")
    assert manifest.ids == ["0001_2124494179", "0002_174174086"]
    assert manifest.paths[1] == "/images/animal/0002_174174086.jpg"


def test_synthetic_labels_are_deterministic_and_realistic(tmp_path):
    a = synthetic.sample_labels(2400, np.random.default_rng(0))
    np.testing.assert_array_equal(a, synthetic.sample_labels(2400, np.random.default_rng(0)))
    assert a.sum(1).min() >= synthetic.MIN_LABELS
    freq = a.mean(0)
    assert freq.max() > 0.7 and freq.min() < 0.1  # imbalanced like MSCOCO
    path = synthetic.write(tmp_path, n_images=20, seed=0)
    frame = pd.read_csv(path)
    assert list(frame.columns[1:]) == synthetic.CLASS_NAMES and len(frame) == 20
    from PIL import Image
    image = Image.open(tmp_path / frame.path[0])
    assert image.size == (96, 96) and image.mode == "RGB"


def test_a_single_class_is_refused_by_name(tmp_path):
    from splits import datasets
    manifest = datasets.Manifest(["a", "b", "c"], ["", "", ""], ["x", "y"],
                                 np.array([[1, 0], [1, 0], [0, 0]]),
                                 "labels.csv")
    with pytest.raises(ValueError,
                       match=r"labels.csv: 1 class\(es\) with a positive .* need at least 2 classes"):
        datasets.filter_min_labels(manifest, 0)


@pytest.mark.parametrize("escape", ["../outside.png", "absolute", "link.png"])
def test_image_paths_outside_the_root_are_refused_unless_allowed(tmp_path, escape):
    import configs
    from splits import datasets
    root, outside = tmp_path / "images", tmp_path / "outside.png"
    root.mkdir()
    outside.write_bytes(b"")
    (root / "in.png").write_bytes(b"")
    (root / "link.png").symlink_to(outside)
    path = {"absolute": str(outside)}.get(escape, escape)
    (root / "labels.csv").write_text(f"path,a,b\nin.png,1,0\n{path},0,1\n")
    raw = {"experiment": {"name": "r", "runs_dir": str(tmp_path / "runs")},
           "dataset": {"adapter": "csv", "annotations": str(root / "labels.csv"), "min_labels": 0}}
    with pytest.raises(ValueError, match=r"leads outside the image root .* allow_outside_root = true"):
        datasets.load(configs.from_dict(raw, source="test"))
    raw["dataset"]["allow_outside_root"] = True
    assert len(datasets.load(configs.from_dict(raw, source="test")).ids) == 2

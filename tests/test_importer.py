"""Precomputed features and labels from files: every format, every bad input, the shipped real
sets, and a whole grid from an import with the ordinary commands."""
import os
import re

import h5py
import numpy as np
import pytest
import scipy.io
import scipy.sparse

import configs
import splits
from features import __main__ as features_cli
from features import importer
from features import store as feature_store
from splits import store as splits_store
from tests.conftest import SHARED, shared_or_skip

REAL = SHARED / "real"


def table_config(root, **dataset):
    return configs.from_dict({"experiment": {"name": "t", "runs_dir": str(root)},
                              "dataset": {"adapter": "table", "min_labels": 1, **dataset},
                              "splits": {"ratios": [0.0, 0.5]},
                              "heads": {"head": "linear", "epochs": 2, "batch_size": 16, "learning_rate": 0.5,
                                        "methods": ["ce", "ignore_missing",
                                                    "confidence_prior"]}}, source="test")


def random_table(n=60, d=7, n_labels=4, seed=0):
    rng = np.random.default_rng(seed)
    labels = (rng.random((n, n_labels)) < 0.4).astype(np.uint8)
    labels[np.arange(n), rng.integers(0, n_labels, n)] = 1
    x = (labels @ rng.normal(0, 1, (n_labels, d)) + rng.normal(0, 0.3, (n, d))).astype(np.float32)
    return x, labels


def write_arff(path, x, labels, sparse=False, labels_first=False, relation="t"):
    names = [f"f{j}" for j in range(x.shape[1])]
    label_names = [f"L{j}" for j in range(labels.shape[1])]
    attributes = [f"@attribute {n} numeric" for n in names]
    label_attributes = [f"@attribute {n} {{0,1}}" for n in label_names]
    header = label_attributes + attributes if labels_first else attributes + label_attributes
    rows = np.hstack([labels, x]) if labels_first else np.hstack([x, labels])
    lines = [f"@relation {relation}", *header, "@data"]
    for row in rows:
        if sparse:
            lines.append("{" + ", ".join(f"{j} {v:.9g}" for j, v in enumerate(row) if v != 0) + "}")
        else:
            lines.append(",".join(f"{v:.9g}" for v in row))
    path.write_text("\n".join(lines) + "\n")
    return path


def imported(cfg):
    return feature_store.FeatureReader(importer.import_features(cfg))


def test_npy_features_and_labels_run_a_complete_grid_with_the_ordinary_commands(tmp_path):
    from analysis import report
    from heads import trainer
    x, labels = random_table(n=80)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", labels)
    cfg = table_config(tmp_path, features=str(tmp_path / "x.npy"), labels=str(tmp_path / "y.npy"))
    reader = imported(cfg)
    np.testing.assert_array_equal(reader.rows(np.arange(80)), x)  # the store equals the source rows
    assert list(reader.ids) == [str(i) for i in range(80)] and not reader.sparse
    with h5py.File(reader.path) as h5:
        np.testing.assert_array_equal(h5["labels"][:], labels)
        assert h5.attrs["imported"] and h5.attrs["source_sha256"] and h5.attrs["complete"]
    splits.make(cfg)
    trainer.train(cfg)
    text = report.report(cfg).read_text()
    assert "none: the grid is complete" in text


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("labels_first", [False, True])
def test_mulan_and_meka_arff_dense_and_sparse(tmp_path, sparse, labels_first):
    x, labels = random_table()
    x[x < 0.5] = 0  # zeros that a sparse ARFF leaves out
    path = write_arff(tmp_path / "d.arff", x, labels, sparse, labels_first)
    reader = imported(table_config(tmp_path, features=str(path), n_labels=4, labels_first=labels_first))
    assert reader.sparse == sparse
    np.testing.assert_allclose(reader.rows(np.arange(len(x))), x, rtol=1e-6)
    classes, stored, _ = reader.labels()
    assert classes == ["L0", "L1", "L2", "L3"]
    np.testing.assert_array_equal(stored, labels)


def test_meka_header_names_the_label_count(tmp_path):
    x, labels = random_table()
    path = write_arff(tmp_path / "m.arff", x, labels, labels_first=True, relation="'t: -C 4'")
    _, stored, _ = imported(table_config(tmp_path, features=str(path))).labels()
    np.testing.assert_array_equal(stored, labels)


def test_sparse_npz_stays_sparse_until_a_batch(tmp_path):
    from heads.trainer import InMemory, Streamed
    x, labels = random_table(n=50, d=40)
    x[x < 1.0] = 0
    scipy.sparse.save_npz(tmp_path / "x.npz", scipy.sparse.csr_matrix(x))
    np.save(tmp_path / "y.npy", labels)
    reader = imported(table_config(tmp_path, features=str(tmp_path / "x.npz"),
                                   labels=str(tmp_path / "y.npy")))
    assert reader.sparse and scipy.sparse.issparse(reader.window(np.arange(10, 20)))
    held = InMemory(reader, np.array([3, 1, 2]))
    assert scipy.sparse.issparse(held.x)
    [(_positions, batch)] = list(held.batches([np.array([0, 2])]))
    np.testing.assert_allclose(batch, x[[3, 2]])
    [(_, streamed)] = list(Streamed(reader, np.arange(50), 16).batches([np.array([1, 20, 40])]))
    np.testing.assert_allclose(streamed, x[[1, 20, 40]])
    none = InMemory(reader, np.array([], int))  # the final model's held-out part
    assert none.x.shape == (0, 40) and not list(none.blocks())


def test_csv_with_named_label_columns_an_id_column_and_no_header(tmp_path):
    x, labels = random_table(n=20, d=3, n_labels=2)
    lines = ["key,a,b,c,yes,no"] + [f"r{i},{x[i, 0]},{x[i, 1]},{x[i, 2]},{labels[i, 0]},{labels[i, 1]}"
                                    for i in range(20)]
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")
    reader = imported(table_config(tmp_path, features=str(tmp_path / "t.csv"), id_column="key",
                                   label_columns=["yes", "no"]))
    assert list(reader.ids[:2]) == ["r0", "r1"]
    np.testing.assert_allclose(reader.rows(np.arange(20)), x, rtol=1e-6)
    (tmp_path / "n.tsv").write_text("\n".join("\t".join(line.split(",")[1:]) for line in lines[1:]) + "\n")
    reader = imported(table_config(tmp_path / "n", features=str(tmp_path / "n.tsv"), header=False,
                                   n_labels=2))
    np.testing.assert_array_equal(reader.labels()[1], labels)


def test_matlab_labels_stored_classes_by_rows_coded_minus_one_one(tmp_path, capsys):
    x, labels = random_table()
    scipy.io.savemat(tmp_path / "e.mat", {"data": x, "target": (2 * labels.T.astype(np.int16) - 1)})
    reader = imported(table_config(tmp_path, features=str(tmp_path / "e.mat"), label_coding="-1/1"))
    assert "labels stored as (classes, rows) = (4, 60); read transposed" in capsys.readouterr().out
    np.testing.assert_array_equal(reader.labels()[1], labels)
    with h5py.File(tmp_path / "f.h5", "w") as h5:
        h5["emb"], h5["tags"] = x, labels
    reader = imported(table_config(tmp_path / "h", features=str(tmp_path / "f.h5"), features_key="emb",
                                   labels_key="tags"))
    np.testing.assert_array_equal(reader.rows(np.arange(60)), x)


def bad_csv(tmp_path, cell_row, column, value):
    x, labels = random_table(n=10, d=2, n_labels=2)
    rows = [[f"{v:g}" for v in x[i]] + [str(v) for v in labels[i]] for i in range(10)]
    rows[cell_row][column] = value
    path = tmp_path / "bad.csv"
    path.write_text("a,b,y1,y2\n" + "\n".join(",".join(r) for r in rows) + "\n")
    return path


@pytest.mark.parametrize("cell, value, message", [
    ((3, 2), "2", r"row '3' label column 'y1' holds 2; labels are coded 0/1"),
    ((4, 3), "-1", r"row '4' label column 'y2' holds -1; labels are coded 0/1"),
    ((5, 0), "nan", r"row '5 \(line 7\)' column 'a' holds 'nan', not a number"),
    ((7, 0), "abc", r"row '7 \(line 9\)' column 'a' holds 'abc', not a number"),
    ((2, 1), "", r"row '2 \(line 4\)' column 'b' holds '', not a number"),
])
def test_bad_cells_are_named_and_nothing_is_marked_complete(tmp_path, cell, value, message):
    path = bad_csv(tmp_path, *cell, value)
    cfg_file = tmp_path / "c.toml"
    cfg_file.write_text(f"[experiment]\nruns_dir = '{tmp_path}'\n[dataset]\nadapter = 'table'\n"
                        f"features = '{path}'\nn_labels = 2\n")
    cfg = configs.load(cfg_file)
    with pytest.raises(ValueError, match=message) as err:
        importer.import_features(cfg)
    assert str(path) in str(err.value)
    assert features_cli.main(["import", "--config", str(cfg_file)]) == 2
    assert not feature_store.path(cfg).exists()
    good = bad_csv(tmp_path, *cell, "1" if cell[1] >= 2 else "0.5")
    assert good == path and features_cli.main(["import", "--config", str(cfg_file)]) == 0  # fixed: it works


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf, 1e39, -1e39])
def test_non_finite_features_are_named(tmp_path, value):
    x, labels = random_table()
    x = x.astype(np.float64)
    x[6, 1] = value  # 1e39: finite in float64, inf in the float32 store
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", labels)
    cfg = table_config(tmp_path, features=str(tmp_path / "x.npy"), labels=str(tmp_path / "y.npy"))
    with pytest.raises(ValueError, match=rf"x.npy: row '6' feature column 1 holds {re.escape(f'{value:g}')}; "
                                         "features must be finite"):
        importer.import_features(cfg)
    assert not feature_store.path(cfg).exists()


def test_rows_ids_and_empty_files(tmp_path):
    x, labels = random_table()
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "short.npy", labels[:-3])
    with pytest.raises(ValueError, match=r"x.npy has 60 rows but .*short.npy has 57 label rows"):
        importer.import_features(table_config(tmp_path, features=str(tmp_path / "x.npy"),
                                              labels=str(tmp_path / "short.npy")))
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(ValueError, match="empty.csv is empty"):
        importer.import_features(table_config(tmp_path, features=str(tmp_path / "empty.csv"), n_labels=1))
    (tmp_path / "dup.csv").write_text("k,a,y\nr1,0.5,1\nr1,0.7,0\n")
    with pytest.raises(ValueError, match="dup.csv: duplicate row key 'r1'"):
        importer.import_features(table_config(tmp_path, features=str(tmp_path / "dup.csv"), id_column="k",
                                              n_labels=1))
    np.save(tmp_path / "y.npy", labels)
    with pytest.raises(ValueError, match="dataset.n_labels"):
        importer.import_features(table_config(tmp_path, features=str(tmp_path / "dup.csv")))


def test_rows_and_classes_without_positives_are_dropped_by_min_labels_and_counted(tmp_path, capsys):
    from splits import __main__ as splits_cli
    x, labels = random_table(n=80)
    labels[:5] = 0
    labels[:, 3] = 0
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", labels)
    cfg = table_config(tmp_path, features=str(tmp_path / "x.npy"), labels=str(tmp_path / "y.npy"))
    importer.import_features(cfg)
    [path] = splits.make(cfg)
    sf = splits_store.load(path)
    kept = labels.sum(1) >= 1
    assert len(sf.ids) == kept.sum() < 75 and len(sf.classes) == 3 and "label_3" not in sf.classes
    splits_cli.main(["describe", str(path)])
    assert f"{80 - kept.sum()} rows, 1 classes without a positive (label_3)" in capsys.readouterr().out


SHIPPED = [
    ("corel5k.mat", {}, (5000, 499, 374), False),
    ("enron.mat", {"label_coding": "-1/1"}, (1702, 1001, 53), False),
    ("yeast.csv.gz", {"n_labels": 14}, (2417, 103, 14), False),
    ("emotions.arff", {"n_labels": 6}, (593, 72, 6), False),
    ("bibtex.arff", {"n_labels": 159}, (7395, 1836, 159), True),
]


@pytest.mark.parametrize("name, keys, shape, sparse", SHIPPED)
def test_every_shipped_real_set_imports(tmp_path, name, keys, shape, sparse):
    path = shared_or_skip(REAL / name)
    reader = imported(table_config(tmp_path, features=str(path), **keys))
    _classes, labels, _ = reader.labels()
    assert (reader.shape[0], reader.shape[1], labels.shape[1]) == shape and reader.sparse == sparse


def test_shipped_real_configs_load_and_point_at_the_shared_files():
    from pathlib import Path
    for name in ("corel5k", "yeast", "enron", "emotions"):
        cfg = configs.load(Path(configs.__file__).parent / f"{name}.toml")
        assert cfg.dataset.adapter == "table" and len(cfg.experiment.seeds) == 3
        assert Path(cfg.dataset.features).name.startswith(name)


@pytest.mark.parametrize("kind", ["external storage", "external link", "soft link"])
def test_hdf5_inputs_that_read_other_files_are_refused(tmp_path, kind):
    other = tmp_path / "secret.bin"
    other.write_bytes(np.arange(40, dtype=np.float32).tobytes())
    path = tmp_path / "table.h5"
    with h5py.File(path, "w") as h5:
        h5["labels"] = (np.arange(40).reshape(10, 4) % 3 == 0).astype(np.uint8)
        if kind == "external storage":
            h5.create_dataset("features", shape=(10, 4), dtype=np.float32, external=[(str(other), 0, 160)])
        elif kind == "external link":
            with h5py.File(tmp_path / "elsewhere.h5", "w") as target:
                target["x"] = np.ones((10, 4), np.float32)
            h5["features"] = h5py.ExternalLink(str(tmp_path / "elsewhere.h5"), "/x")
        else:
            h5["data"] = np.ones((10, 4), np.float32)
            h5["features"] = h5py.SoftLink("/data")
    cfg = configs.from_dict({"experiment": {"name": "h", "runs_dir": str(tmp_path / "runs")},
                             "dataset": {"adapter": "table", "features": str(path),
                                         "min_labels": 0}}, source="test")
    name = {"external storage": "external raw storage", "external link": "ExternalLink",
            "soft link": "SoftLink"}[kind]
    with pytest.raises(ValueError, match=f"{path}: .*{name}"):
        importer.import_features(cfg)
    assert not feature_store.path(cfg).exists()


def test_a_features_file_changed_after_the_import_stops_every_later_stage(tmp_path):
    from analysis import report
    from heads import trainer
    x, labels = random_table()
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", labels)
    cfg = table_config(tmp_path, features=str(tmp_path / "x.npy"), labels=str(tmp_path / "y.npy"))
    importer.import_features(cfg)
    splits.make(cfg)
    os.utime(tmp_path / "x.npy")  # touched, same content: still the same file
    splits.make(cfg)
    np.save(tmp_path / "x.npy", x + 1)  # same path and size, new content
    for stage in (lambda: splits.make(cfg, force=True), lambda: trainer.train(cfg),
                  lambda: report.report(cfg)):
        with pytest.raises(ValueError,
                           match=r"was imported from .*x.npy, which has changed .* rerun the import"):
            stage()

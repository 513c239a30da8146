import gzip
import shutil

import numpy as np
import pandas as pd
import pytest

import splits
from splits import paper, store
from tests.conftest import PAPER_SPLITS, shared_or_skip


def test_import_mscoco(coco_splits):
    sf = store.load(coco_splits)
    assert sf.labels.shape == (33052, 80)
    assert np.bincount(sf.test_fold).tolist() == [8321, 8274, 8240, 8217]
    np.testing.assert_allclose(sf.ratios, [0, 0.25, 0.5, 0.75])
    np.testing.assert_allclose(sf.hidden_share[0], [0, 0.254, 0.482, 0.746], atol=1e-3)
    # hidden masks equal the zeros of the published negative_weights files, read independently
    folder = PAPER_SPLITS / "labels_balanced_4labels" / "missing_labels0.5"
    published = pd.read_csv(folder / "negative_weights1_0.5.csv.gz", index_col=0)
    rows = pd.Series(np.arange(len(sf.ids)), index=sf.ids.astype(int))[published.index].to_numpy()
    hidden = (sf.labels[rows] == 1) & (sf.observed(0, 0.5)[rows] == 0)
    np.testing.assert_array_equal(hidden, published.to_numpy() == 0)


def test_import_nuswide(tmp_path):
    directory = shared_or_skip(PAPER_SPLITS / "labels_balanced_nus")
    sf = store.load(splits.import_to(directory, tmp_path / "nus.h5"))
    assert sf.labels.shape == (24624, 81)
    assert np.bincount(sf.test_fold).tolist() == [6171, 6158, 6218, 6077]
    assert "0325_510889886" in set(sf.ids)


def _tiny_layout(root, n=40, n_classes=5, seed=0):
    """A published-layout directory in plain .csv, as the paper's repository has it."""
    rng = np.random.default_rng(seed)
    labels = (rng.random((n, n_classes)) < 0.5).astype(int)
    labels[:, 0] = 1
    keys = np.arange(100, 100 + n)
    fold = np.arange(n) % 4
    columns = [f"c{j}" for j in range(n_classes)]
    for name in paper.FOLDERS:
        folder = root / f"missing_labels{name}"
        folder.mkdir(parents=True)
        for k in range(4):
            test, train = fold == k, fold != k
            hide = (rng.random(labels.shape) < paper.FOLDERS[name]) & (labels == 1)
            pd.DataFrame(labels[test], index=keys[test],
                         columns=columns).to_csv(folder / f"test{k + 1}_{name}.csv")
            pd.DataFrame((labels * ~hide)[train], index=keys[train], columns=columns).to_csv(
                folder / f"train{k + 1}_{name}.csv")
            pd.DataFrame((~hide).astype(int)[train], index=keys[train], columns=columns).to_csv(
                folder / f"negative_weights{k + 1}_{name}.csv")
    return labels


def test_plain_and_gzipped_csv_import_alike(tmp_path):
    labels = _tiny_layout(tmp_path / "plain")
    shutil.copytree(tmp_path / "plain", tmp_path / "gz")
    for path in (tmp_path / "gz").rglob("*.csv"):
        with open(path, "rb") as src, gzip.open(str(path) + ".gz", "wb") as dst:
            shutil.copyfileobj(src, dst)
        path.unlink()
    a = store.load(splits.import_to(tmp_path / "plain", tmp_path / "a.h5"))
    b = store.load(splits.import_to(tmp_path / "gz", tmp_path / "b.h5"))
    np.testing.assert_array_equal(a.labels, labels)
    np.testing.assert_array_equal(a.observed(2, 0.75), b.observed(2, 0.75))


def test_import_errors_name_file_and_row(tmp_path):
    _tiny_layout(tmp_path)
    train = tmp_path / "missing_labels0.5" / "train2_0.5.csv"
    frame = pd.read_csv(train, index_col=0)
    test = pd.read_csv(tmp_path / "missing_labels0.0" / "test1_0.0.csv", index_col=0)
    key = test.index[0]
    column = test.columns[(test.loc[key] == 0).to_numpy()][0]  # a true negative of a fold-1 image
    frame.loc[key, column] = 1
    frame.to_csv(train)
    with pytest.raises(ValueError, match=rf"train2_0.5.csv: row '{key}' observes '{column}'"):
        splits.import_to(tmp_path, tmp_path / "out.h5")
    assert not (tmp_path / "out.h5").exists() and not (tmp_path / "out.h5.tmp").exists()


def test_import_names_a_missing_file(tmp_path):
    _tiny_layout(tmp_path)
    (tmp_path / "missing_labels0.8" / "test3_0.8.csv").unlink()
    with pytest.raises(ValueError, match="test3_0.8.csv"):
        paper.import_paper(tmp_path)


def test_import_rejects_overlapping_test_folds(tmp_path):
    _tiny_layout(tmp_path)
    first = tmp_path / "missing_labels0.0"
    one = pd.read_csv(first / "test1_0.0.csv", index_col=0)
    two = pd.read_csv(first / "test2_0.0.csv", index_col=0)
    pd.concat([two, one.iloc[:1]]).to_csv(first / "test2_0.0.csv")
    with pytest.raises(ValueError, match="two test folds"):
        paper.import_paper(tmp_path)

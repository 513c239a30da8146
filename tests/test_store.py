import h5py
import numpy as np
import pytest

import configs
import splits
from features import store as feature_store
from splits import __main__ as cli
from splits import store


@pytest.fixture(scope="module")
def tiny_cfg(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    return configs.from_dict({"experiment": {"name": "tiny", "runs_dir": str(root)},
                              "dataset": {"n_images": 120},
                              "splits": {"validation": 0.1}}, source="tiny")


def test_make_writes_the_contract_and_skips_when_complete(tiny_cfg, capsys):
    [path] = splits.make(tiny_cfg)
    sf = store.load(path)
    assert sf.labels.shape == (120, 16) and sf.labels.dtype == np.uint8
    assert sf.protocols == ["0", "0.25", "0.5", "0.75"]
    assert sf.observed(1, 0.5).shape == (120, 16)
    assert sf.missing_rate(1, "0.25") == 0.25
    with h5py.File(path) as h5:
        assert h5["observed"].shape == (4, 4, 120, 16)
        assert h5.attrs["complete"] and "heads" in h5.attrs["config"]
    validation = sf.validation(1)
    assert validation.any() and not (validation & (sf.test_fold == 1)).any()
    assert not np.isin(sf.train_rows(1), np.flatnonzero(validation)).any()
    splits.make(tiny_cfg)
    assert "already done" in capsys.readouterr().out


def test_load_refuses_incomplete_file(tmp_path):
    with h5py.File(tmp_path / "half.h5", "w") as h5:
        h5.attrs["complete"] = False
    with pytest.raises(ValueError, match="incomplete"):
        store.load(tmp_path / "half.h5")
    with pytest.raises(ValueError, match="does not exist; run `make splits`"):
        store.load(tmp_path / "none.h5")


def test_describe_cli(tiny_cfg, capsys):
    assert cli.main(["describe", str(store.path(tiny_cfg))]) == 0
    out = capsys.readouterr().out
    assert "120 rows x 16 classes" in out and "hidden share" in out
    assert cli.main(["describe", "/nowhere/splits.h5"]) == 2


def test_protocol_folders_are_distinct_for_distinct_ratios():
    keys = [store.protocol_key(r) for r in (0.0, 0.25, 0.5, 0.75, 0.121, 0.124, 0.999, 0.1)]
    folders = [store.protocol_dir(k) for k in keys]
    assert folders[:4] == ["ratio0.00", "ratio0.25", "ratio0.50", "ratio0.75"]  # the layout of earlier runs
    assert len(set(folders)) == len(folders) and folders[6] == "ratio0.999"


def test_a_ratio_that_hides_every_positive_is_said(tmp_path, capsys):
    cfg = configs.from_dict({"experiment": {"name": "all", "runs_dir": str(tmp_path)},
                             "dataset": {"n_images": 80},
                             "splits": {"ratios": [0.0, 0.999]}}, source="test")
    splits.make(cfg)
    said = capsys.readouterr().out
    assert "warning: test: splits.ratios holds 0.999: " in said
    assert "fold(s) 1, 2, 3, 4 an observed positive" in said
    assert "splits.ratios holds 0.0" not in said


def test_describe_names_a_store_of_the_other_kind(tiny_cfg, tmp_path, capsys):
    from features import __main__ as features_cli
    from features import store as feature_store
    [path] = splits.make(tiny_cfg)
    assert features_cli.main(["describe", str(path)]) == 2
    assert "is not a feature store" in capsys.readouterr().err
    features = tmp_path / "f.h5"
    feature_store.create(features, ["a"], 2, "float32", 1, {}, {})
    assert cli.main(["describe", str(features)]) == 2
    err = capsys.readouterr().err
    assert "is not a splits.h5" in err and "python -m features describe" in err and "older version" not in err


def test_damaged_splits_arrays_are_refused(tiny_cfg, tmp_path):
    import shutil
    [path] = splits.make(tiny_cfg)
    damaged = shutil.copy(path, tmp_path / "splits.h5")
    with h5py.File(damaged, "r") as h5:
        offset = h5["test_fold"].id.get_offset()
    with open(damaged, "r+b") as fh:  # 8 bytes of the (uncompressed) test folds, the metadata untouched
        fh.seek(offset)
        fh.write(bytes([7] * 8))
    assert store.load(path).fingerprint  # the original reads
    with pytest.raises(ValueError, match=r"splits.h5 is damaged: its arrays differ from the checksum"):
        store.load(damaged)


def test_a_damaged_store_is_named_by_every_reader_that_checks_it(tmp_path):
    """Values changed inside a complete store (a disk's damage: the checksum is not rewritten)
    make `check_sources`, which heads, splits and the report call, a named error."""
    path = tmp_path / "f.h5"
    feature_store.write_table(path, ["a", "b", "c"], np.arange(12, dtype=np.float32).reshape(3, 4),
                      np.eye(3, dtype=np.uint8), ["x", "y", "z"], {}, {"recipe": 1})
    feature_store.FeatureReader(path).check_sources()
    with h5py.File(path, "r+") as h5:
        h5["features"][1, 2] = 99.0
    with pytest.raises(ValueError, match="f.h5 is damaged: its arrays differ from the checksum"):
        feature_store.FeatureReader(path).check_sources()

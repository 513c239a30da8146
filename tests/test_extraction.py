import h5py
import numpy as np
import pytest
from PIL import Image

from extract import extraction
from features import store
from tests.helpers import assert_same_file, demo_config, save_random_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_random_checkpoint("demo_cnn", 96, tmp_path_factory.mktemp("ckpt") / "model.ckpt")


def test_interrupt_and_resume_equals_one_run(tmp_path, checkpoint):
    whole = extraction.extract_features(demo_config(tmp_path / "one", checkpoint))

    class Interrupt(Exception):
        pass

    def stop_after_two(chunk):
        if chunk == 1:
            raise Interrupt

    cfg = demo_config(tmp_path / "two", checkpoint)
    with pytest.raises(Interrupt):
        extraction.extract_features(cfg, on_chunk=stop_after_two)
    partial = store.path(cfg).with_name(store.path(cfg).name + ".tmp")
    assert store.pending_chunks(partial) == [2]
    done = []
    resumed = extraction.extract_features(cfg, on_chunk=done.append)
    assert done == [2]
    assert_same_file(whole, resumed, ignore={"config", "provenance", "fingerprint"})  # other image paths


def test_shards_merged_equal_one_run(tmp_path, checkpoint):
    whole = extraction.extract_features(demo_config(tmp_path / "one", checkpoint, n_images=100))
    cfg = demo_config(tmp_path / "sharded", checkpoint, n_images=100)
    shards = [extraction.extract_features(cfg, shard=(i, 3)) for i in range(3)]
    with pytest.raises(ValueError, match="missing shards"):
        store.merge(shards[:2], tmp_path / "bad.h5")
    merged = store.merge(shards[::-1], tmp_path / "merged.h5")
    assert_same_file(whole, merged, ignore={"config", "provenance", "fingerprint"})


def test_float16_store_error_below_1e3_relative(tmp_path, checkpoint):
    half = extraction.extract_features(demo_config(tmp_path / "h", checkpoint))
    full = extraction.extract_features(demo_config(tmp_path / "f", checkpoint, dtype="float32"))
    a = store.FeatureReader(half).rows(np.array([5, 3, 3, 40]))
    b = store.FeatureReader(full).rows(np.array([5, 3, 3, 40]))
    assert a.dtype == np.float32 and a.shape == (4, 4608)
    big = np.abs(b) > 1e-2  # relative error is meaningless next to 0
    assert (np.abs(a - b)[big] / np.abs(b)[big]).max() < 1e-3
    np.testing.assert_allclose(a[1], a[2])


def test_bad_images_are_flagged_not_fatal(tmp_path, checkpoint):
    root = tmp_path / "imgs"
    root.mkdir()
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 255, (80, 70), dtype=np.uint8)
    rgb = rng.integers(0, 255, (80, 70, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(root / "rgb.png")
    Image.fromarray(np.dstack([rgb, np.full((80, 70), 120, np.uint8)])).save(root / "rgba.png")
    Image.fromarray(grey).save(root / "grey.png")
    Image.fromarray(np.dstack([grey] * 3)).save(root / "grey_as_rgb.png")
    Image.fromarray(rgb).convert("CMYK").save(root / "cmyk.jpg")
    Image.fromarray(rgb).save(root / "good.jpg")
    (root / "truncated.jpg").write_bytes((root / "good.jpg").read_bytes()[:300])
    (root / "corrupt.png").write_bytes(b"not an image at all")
    names = ["rgb.png", "rgba.png", "grey.png", "grey_as_rgb.png", "cmyk.jpg", "good.jpg",
             "truncated.jpg", "corrupt.png", "absent.jpg"]
    rows = [f"{n},1,1" for n in names]
    (root / "labels.csv").write_text("path,a,b\n" + "\n".join(rows) + "\n")
    import splits
    from configs import from_dict
    cfg = from_dict({"experiment": {"name": "bad", "runs_dir": str(tmp_path / "runs")},
                     "dataset": {"adapter": "csv", "annotations": str(root / "labels.csv"), "min_labels": 1},
                     "splits": {"n_folds": 2},
                     "extract": {"checkpoint": str(checkpoint), "batch_size": 4,
                                 "chunk_rows": 4}}, source="t")
    splits.make(cfg)
    path = extraction.extract_features(cfg)
    with h5py.File(path, "r") as h5:
        valid = dict(zip(h5["ids"].asstr()[:], h5["valid"][:]))
        errors = dict(zip(h5["error_ids"].asstr()[:], h5["error_messages"].asstr()[:]))
        features = dict(zip(h5["ids"].asstr()[:], h5["features"][:]))
    assert [n for n in names if not valid[n]] == ["truncated.jpg", "corrupt.png", "absent.jpg"]
    assert set(errors) == {"truncated.jpg", "corrupt.png", "absent.jpg"}
    assert "truncated" in errors["truncated.jpg"].lower() and "No such file" in errors["absent.jpg"]
    np.testing.assert_array_equal(features["rgba.png"], features["rgb.png"])  # alpha dropped
    np.testing.assert_array_equal(features["grey.png"], features["grey_as_rgb.png"])  # grey -> RGB
    assert np.abs(features["cmyk.jpg"]).sum() > 0 and not features["corrupt.png"].any()


def test_a_write_that_fails_mid_chunk_is_named_and_a_rerun_completes(tmp_path, checkpoint, monkeypatch):
    """Fault injection: HDF5 raises ENOSPC while the third chunk's features are written."""
    import errno
    whole = extraction.extract_features(demo_config(tmp_path / "one", checkpoint))
    cfg = demo_config(tmp_path / "full", checkpoint)
    original, calls = h5py.Dataset.__setitem__, []

    def failing(self, key, value):
        if self.name == "/features":
            calls.append(key)
            if len(calls) == 3:
                raise OSError(errno.ENOSPC, "No space left on device")
        return original(self, key, value)

    monkeypatch.setattr(h5py.Dataset, "__setitem__", failing)
    out = store.path(cfg)
    with pytest.raises(ValueError,
                       match=r"writing failed \(No space left on device; [\d,.]+ MiB free there\); "
                                         "nothing was marked complete"):
        extraction.extract_features(cfg)
    assert not out.exists() and store.pending_chunks(out.with_name(out.name + ".tmp")) == [2]
    monkeypatch.setattr(h5py.Dataset, "__setitem__", original)
    resumed = extraction.extract_features(cfg)
    assert_same_file(whole, resumed, ignore={"config", "provenance", "fingerprint"})


def test_extraction_refuses_to_start_without_room_for_its_store(tmp_path, checkpoint, monkeypatch):
    import shutil
    cfg = demo_config(tmp_path / "small", checkpoint)
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=1 << 20))
    with pytest.raises(ValueError, match=r"will write about \d+ MiB, but only 1 MiB are free there"):
        extraction.extract_features(cfg)
    assert not store.path(cfg).exists()

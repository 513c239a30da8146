"""Helpers every test module shares: small data, small configs, reading outputs back."""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import tensorflow as tf

import configs
import splits
from extract import registry
from features import store as feature_store
from heads import predictions


def save_random_checkpoint(name: str, size: int, prefix: Path, seed: int = 0, drop: str = "",
                           reshape: str = "") -> Path:
    """Save randomly initialised weights of a backbone in Slim (V2) format.

    `drop`: leave out the variables whose name contains it; `reshape`: save that one with a
    wrong shape. Both exist to test the restore errors.
    """
    spec = registry.get(name)
    with tf.Graph().as_default() as graph:
        tf.compat.v1.set_random_seed(seed)
        spec.build(tf.compat.v1.placeholder(tf.float32, [1, size, size, 3]))
        variables = [v for v in tf.compat.v1.global_variables() if not (drop and drop in v.op.name)]
        with tf.compat.v1.Session(graph=graph) as session:
            session.run(tf.compat.v1.global_variables_initializer())
            values = {v.op.name: session.run(v) for v in variables}
    with tf.Graph().as_default() as graph:
        stored = []
        for key, value in values.items():
            if reshape and reshape in key:
                value = np.zeros(value.shape[:-1] + (value.shape[-1] + 1,), value.dtype)
            stored.append(tf.compat.v1.Variable(value, name=key))
        with tf.compat.v1.Session(graph=graph) as session:
            session.run(tf.compat.v1.global_variables_initializer())
            prefix.parent.mkdir(parents=True, exist_ok=True)
            tf.compat.v1.train.Saver(stored).save(session, str(prefix), write_meta_graph=False)
    return prefix


def demo_config(root: Path, checkpoint: Path, n_images: int = 96, **extract) -> configs.Config:
    """A config on a small synthetic set with demo_cnn, writing under `root`, its splits made."""
    import splits

    cfg = configs.from_dict({
        "experiment": {"name": "t", "runs_dir": str(root)},
        "dataset": {"n_images": n_images, "min_labels": 0},
        "extract": {"checkpoint": str(checkpoint), "batch_size": 16, "chunk_rows": 32, **extract},
    }, source="test")
    splits.make(cfg)
    return cfg


def fitted_demo_model(root: Path) -> tuple[configs.Config, Path]:
    """(config, feature store) of a CE model (no out-of-fold folds, a fifth of the rows for
    validation) on demo_cnn features of 96 synthetic images, all under `root`."""
    import dataclasses

    from extract import extraction
    from model import final

    checkpoint = save_random_checkpoint("demo_cnn", 96, root / "ckpt" / "model.ckpt", seed=3)
    cfg = demo_config(root, checkpoint, pooling="max")
    cfg = dataclasses.replace(cfg,
                              heads=dataclasses.replace(cfg.heads, hidden=(16,), epochs=2, methods=("ce",)),
                              model=dataclasses.replace(cfg.model, method="ce", folds=0, validation=0.2))
    store = extraction.extract_features(cfg)
    final.fit(cfg)
    return cfg, store


def make_features(cfg, n_features=24, noise=0.6, seed=0, scale=None):
    """A splits.h5 from the config's synthetic labels and a feature store of a noisy linear map
    (`scale`: each feature's (factor, offset), raw measurements' units)."""
    [sf_path] = splits.make(cfg)
    from splits import store
    sf = store.load(sf_path)
    rng = np.random.default_rng(seed)
    mixing = rng.normal(0, 1, (sf.labels.shape[1], n_features))
    x = sf.labels @ mixing + rng.normal(0, noise, (len(sf.ids), n_features))
    if scale is not None:
        x = x * scale[0] + scale[1]
    path = feature_store.path(cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    recipe = {"features": "a noisy linear map of the labels", "seed": seed, "noise": noise}
    feature_store.create(tmp, sf.ids, n_features, "float32", 64, {"backbone": "synthetic"}, recipe)
    for chunk in feature_store.pending_chunks(tmp):
        rows = slice(chunk * 64, (chunk + 1) * 64)
        feature_store.commit_chunk(tmp, chunk, x[rows].astype(np.float32), np.ones(len(x[rows]), bool), [])
    feature_store.finish(tmp, path, recipe)
    return sf


def small_config(root, **heads):
    """A config of 400 synthetic rows and a small paper head: most heads tests' grid."""
    return configs.from_dict({
        "experiment": {"name": "h", "runs_dir": str(root)},
        "dataset": {"n_images": 400},
        "heads": {"head": "paper_mlp", "hidden": [16, 8], "optimizer": "adadelta", "learning_rate": 1.0,
                  "epochs": 3, "batch_size": 32, **heads},
    }, source="test")


def probabilities(cfg, run):
    """A run's test probabilities, read back from its predictions.h5."""
    with h5py.File(predictions.file(cfg, run), "r") as h5:
        return h5["probabilities"][:]


def write_config(path: Path, runs: Path, **sections) -> Path:
    """A small demo config file: 120 images, 2 folds, the linear head for 1 epoch."""
    tables = {"experiment": {"name": "r", "runs_dir": str(runs)}, "dataset": {"n_images": 120},
              "splits": {"n_folds": 2, "ratios": [0.0, 0.5]},
              "heads": {"head": "linear", "epochs": 1, "methods": ["ce", "ignore_missing"]}}
    for name, values in sections.items():
        tables.setdefault(name, {}).update(values)

    def value(v):
        return repr(v).replace("'", '"') if not isinstance(v, bool) else str(v).lower()

    text = "".join(f"[{name}]\n" + "".join(f"{k} = {value(v)}\n" for k, v in table.items()) for name,
                   table in tables.items())
    path.write_text(text)
    return path


def children(pid: int) -> set[int]:
    """Every descendant process of `pid`, from /proc."""
    found, todo = set(), [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            text = (task / "children").read_text() if (task / "children").exists() else ""
            for child in map(int, text.split()):
                if child not in found:
                    found.add(child)
                    todo.append(child)
    return found


def alive(pid: int) -> bool:
    """Whether process `pid` runs (a zombie does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def read_all(path):
    """Every dataset and attribute of an HDF5 file."""
    with h5py.File(path, "r") as h5:
        data = {name: h5[name][:] for name in h5}
        attrs = {k: np.asarray(v).tolist() for k, v in h5.attrs.items()}
    return data, attrs


def assert_same_file(a, b, ignore=()):
    """Two HDF5 files hold the same arrays and attributes (but `ignore`)."""
    data_a, attrs_a = read_all(a)
    data_b, attrs_b = read_all(b)
    assert data_a.keys() == data_b.keys()
    for name in data_a:
        np.testing.assert_array_equal(data_a[name], data_b[name], err_msg=name)
    for key in set(attrs_a) | set(attrs_b):
        if key not in ignore:
            assert attrs_a.get(key) == attrs_b.get(key), key


def study_config(root, **model_settings):
    """A searched study of three methods with a [model]: the final model's tests."""
    return configs.from_dict({
        "experiment": {"name": "s", "runs_dir": str(root)},
        "dataset": {"n_images": 400},
        "splits": {"validation": 0.2},
        "heads": {"head": "paper_mlp", "hidden": [16], "optimizer": "adam", "learning_rate": 0.01,
                  "epochs": 4,
                  "methods": ["ce", "confidence", "an"], "search": {"lr": [0.003, 0.01]}},
        "model": {"method": "confidence", **model_settings},
    }, source="test")

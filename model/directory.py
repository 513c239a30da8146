"""The model directory: a final model, as `python -m model fit` (and `python -m finetune train
--final`) writes it and `model predict`, `model suggest` and `model export` read it. This module
owns its contract; nothing else opens these files.

    model.json       format = "cbwce-model", version = VERSION, complete = true (written last), and
        method, display, params (the chosen grid point's parameters), learning_rate, epoch
        head         {type, hidden, activation}: sigmoid hidden layers, then L logits
        feat_dim     the width of the features the head reads
        classes      (L,) class names, the columns of every output
        thresholds   {"global": t, "class": [t_1 .. t_L]}: chosen on the validation rows' labels
                     as trained (observed, never truth; `metrics.thresholds`); 0.5 is the paper's
        features     what produced the features the head was trained on: backbone, endpoint,
                     image_size, preprocessing, pooling, checkpoint_sha256 (a finetuned model:
                     its own backbone's), feat_shape; an imported table: backbone = "imported"
        backbone     "" (the checkpoint named by `features`), or "backbone/model.ckpt": the
                     trained backbone a finetuned model carries, named as the backbone's checkpoint
        training     what the model was trained on: rows, validation rows, protocol, hide,
                     missing_rate, fold ("all", or the study's fold it reproduces), seed, the
                     validation score of the chosen point
        provenance, fingerprint; files: {name: sha256} of every other file listed below
        manifest_sha256  the sha256 of model.json's own content (every other key, as canonical
                     JSON): an edited class list or threshold is refused like a damaged head.npz
    head.npz         w0 (d, h_1), b0 (h_1,), ..., w<n> (h_n, L), b<n> (L,) float32
    backbone/        finetune --final only: model.ckpt.index / .data-* (tf.train.Saver, V2)
    out_of_fold.h5   with [model] folds > 0: ids (N,) str, observed (N, L) uint8 (the labels the
                     model trained on), labels (N, L) uint8 (the labels as given: the truth of the
                     hidden entries when [model] hide > 0), probabilities (N, L) float32 (each row
                     predicted by the fold model that did not train on it; NaN for rows without
                     readable features), fold (N,) int8, and known (N, L) bool for three-state
                     labels (the labels the dataset knows); attributes missing_rate, hidden
                     (bool: `labels` hold positives `observed` lacks)
A directory is written under a temporary name beside its place and renamed into place once
complete; a complete model is replaced only with --force, and only by a complete one (the old
one is renamed aside to .<name>.old-<pid> first and removed once the new one is in place: a fit
killed between the two renames leaves it there, the next fit restores it (`recover`) and
readers name it). Its maker holds an exclusive claim (`artifacts.claim`) on it, its readers
(predict, suggest, export, review) a shared one (`reading`): a fit is refused while a reader
works on the model, a reader while a fit makes it. Reading checks the format, the version,
completeness, every key readers use (`check_manifest`: class names a list of distinct names,
thresholds numbers in [0, 1], one per class, ..., `backbone` "" or "backbone/model.ckpt", file
names inside the directory), model.json's own sha256 and every file's: a model directory that
is incomplete, of another version, edited or damaged is a ValueError naming it, the key and
value, and what to do.
"""
from __future__ import annotations

import glob
import hashlib
import itertools
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.special import expit

import artifacts

FORMAT, VERSION = "cbwce-model", 2  # 2: model.json carries its own sha256 (manifest_sha256)
MANIFEST = "model.json"
MANIFEST_SHA256 = "manifest_sha256"
HEAD = "head.npz"
OUT_OF_FOLD = "out_of_fold.h5"
BACKBONE = "backbone/model.ckpt"
THRESHOLD_RULES = ("global", "class", "0.5")
REFIT = "refit it: python -m model fit --config C --force (make model FORCE=1)"
DTYPES = ("float16", "float32")  # the feature stores' dtypes (`[extract] dtype`)
NETWORK_KEYS = ("endpoint", "image_size", "preprocessing", "pooling")  # what extracting images needs


@dataclass(frozen=True)
class Model:
    """A loaded model directory (see the module docstring)."""
    path: Path
    meta: dict  # model.json
    weights: tuple  # (d, h_1), ..., (h_n, L) float32
    biases: tuple  # (h_1,), ..., (L,) float32

    @property
    def classes(self) -> list[str]:
        return list(self.meta["classes"])

    @property
    def feat_dim(self) -> int:
        return int(self.meta["feat_dim"])

    @property
    def features(self) -> dict:
        return dict(self.meta["features"])

    @property
    def from_backbone(self) -> bool:
        """Whether a backbone of this project made the features (its network recorded in
        `features`): only then can the model read images (an imported table, or a store made
        otherwise, has no network to run)."""
        contract = self.features
        return contract.get("backbone") != "imported" and all(key in contract for key in NETWORK_KEYS)

    @property
    def backbone_checkpoint(self) -> Path | None:
        """The trained backbone this model carries (finetune --final), else None."""
        return self.path / self.meta["backbone"] if self.meta.get("backbone") else None

    def probabilities(self, x: np.ndarray, batch_size: int = 8192) -> np.ndarray:
        """(n, L) float32 for features x (n, feat_dim): sigmoid hidden layers, sigmoid of the logits."""
        x = np.asarray(x, np.float32)
        if x.ndim != 2 or x.shape[1] != self.feat_dim:
            raise ValueError(f"features of shape {x.shape}; {self.path} reads (n, {self.feat_dim})")
        out = np.empty((len(x), len(self.classes)), np.float32)
        for start in range(0, len(x), batch_size):
            net = x[start:start + batch_size]
            for layer, (w, b) in enumerate(zip(self.weights, self.biases)):
                net = net @ w + b
                if layer < len(self.weights) - 1:
                    net = expit(net)
            out[start:start + batch_size] = expit(net)
        return out

    def thresholds(self, rule: str) -> np.ndarray:
        """(L,) the thresholds of a rule: "global", "class", "0.5", or a number in (0, 1)."""
        n_classes = len(self.classes)
        if rule == "global":
            return np.full(n_classes, float(self.meta["thresholds"]["global"]))
        if rule == "class":
            return np.asarray(self.meta["thresholds"]["class"], np.float64)
        try:
            value = float(rule)
        except ValueError:
            value = None
        if value is None or not 0 < value < 1:
            raise ValueError(f"--threshold {rule!r}: one of {', '.join(THRESHOLD_RULES)}, or a number in (0, "
                             "1)")
        return np.full(n_classes, value)


FEATURE_KEYS = ("backbone", "endpoint", "image_size", "preprocessing", "pooling", "checkpoint_sha256")


def feature_contract(reader) -> dict:
    """What produced a feature store's features (`FEATURE_KEYS`), with the checkpoint's path,
    the stored dtype and shape per row, or for an imported table its source: what a model
    records, and what a store it predicts must match (`mismatch`)."""
    def plain(value):
        return value.tolist() if hasattr(value, "tolist") else value

    attrs = reader.attrs
    contract = {key: plain(attrs[key]) for key in (*FEATURE_KEYS, "checkpoint", "feat_shape") if key in attrs}
    contract["dtype"] = reader.dtype
    if attrs.get("imported"):
        contract.update(backbone="imported", source=str(attrs.get("source", "")))
    return contract


def mismatch(model: Model, contract: dict) -> list[str]:
    """How a feature store's contract differs from the one `model` was trained on: "key: the
    store's value vs the model's" for each of `FEATURE_KEYS` (an imported store: its width)."""
    expected = model.features
    if expected.get("backbone") == "imported" or contract.get("backbone") == "imported":
        keys = ("backbone",)
    else:
        keys = FEATURE_KEYS
    return [f"{key}: {contract.get(key)!r} vs the model's {expected.get(key)!r}" for key in keys
            if contract.get(key) != expected.get(key)]


def head_arrays(weights, biases) -> dict:
    """head.npz's arrays: w<k>, b<k> float32 per layer."""
    arrays = {}
    for k, (w, b) in enumerate(zip(weights, biases)):
        arrays[f"w{k}"] = np.asarray(w, np.float32)
        arrays[f"b{k}"] = np.asarray(b, np.float32).reshape(-1)
    return arrays


def write(directory: Path, meta: dict, weights, biases, provenance: dict, out_of_fold: dict | None = None,
          backbone: Path | None = None) -> Path:
    """Write a complete model directory at `directory` (replacing a complete one only once this
    one is complete). `meta`: model.json's content besides the contract keys; `out_of_fold`:
    out_of_fold.h5's arrays and attributes ({"attrs": {...}, name: array}); `backbone`: the
    prefix of a trained backbone's checkpoint (finetune --final), copied in. Called under the
    maker's claim on `directory` (`artifacts.claim`): what an interrupted write left is cleared
    first (`recover`)."""
    directory = Path(directory)
    artifacts.writable(directory.parent)
    recover(directory)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", suffix=".tmp", dir=directory.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(staging, 0o777 & ~umask)  # a plain new directory's permissions, not mkdtemp's 0700
    try:
        files = {HEAD: _write_head(staging / HEAD, weights, biases)}
        if out_of_fold is not None:
            files[OUT_OF_FOLD] = _write_out_of_fold(staging / OUT_OF_FOLD, out_of_fold)
        if backbone is not None:
            (staging / BACKBONE).parent.mkdir()
            for part in Path(backbone).parent.glob(Path(backbone).name + ".*"):
                shutil.copyfile(part, (staging / BACKBONE).parent / part.name.replace(Path(backbone).name,
                                                                                    Path(BACKBONE).name, 1))
            files.update({str(p.relative_to(staging)): artifacts.file_sha256(p)
                          for p in sorted((staging / BACKBONE).parent.iterdir())})
        manifest = json.loads(json.dumps(
            {**meta, "backbone": BACKBONE if backbone is not None else "", "files": files, "format": FORMAT,
             "version": VERSION, "provenance": provenance, "fingerprint": artifacts.fingerprint(provenance),
             "complete": True}, default=str))
        manifest[MANIFEST_SHA256] = manifest_digest(manifest)
        artifacts.write_text(staging / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True))
        artifacts.replace_directory(staging, directory)
    except OSError as err:
        raise artifacts.write_failed(directory, err) from None
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return directory


def _write_head(path: Path, weights, biases) -> str:
    with open(path, "wb") as fh:
        np.savez(fh, **head_arrays(weights, biases))
    return artifacts.file_sha256(path)


def _write_out_of_fold(path: Path, arrays: dict) -> str:
    with artifacts.open_h5(path, "w") as h5:
        artifacts.write_arrays(h5, {k: v for k, v in arrays.items() if k != "attrs"})
        h5.attrs.update(arrays.get("attrs", {}))
    return artifacts.file_sha256(path)


def manifest_digest(meta: dict) -> str:
    """The sha256 of model.json's content but its own `manifest_sha256`, as canonical JSON."""
    content = {key: value for key, value in meta.items() if key != MANIFEST_SHA256}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def recover(directory: Path) -> None:
    """What an interrupted write left, cleared by the model's maker under its claim: a previous
    model set aside by a swap that was killed is restored when no model is in place (else
    removed); the staging directories of killed writes are removed."""
    directory = Path(directory)
    aside = artifacts.set_aside(directory)
    if aside and not directory.exists():
        os.replace(aside[0], directory)
        print(f"{directory}: restored the previous model from {aside[0].name} (a fit replacing it was "
              "interrupted)")
        aside = aside[1:]
    staging = directory.parent.glob(f".{glob.escape(directory.name)}.*.tmp")
    for leftover in [*aside, *(p for p in staging if p.is_dir())]:
        shutil.rmtree(leftover)


def reading(directory):
    """The shared claim a command holds on a model directory while it reads it and writes into or
    beside it (`artifacts.claim`): refused while a fit makes the model; a fit is refused meanwhile."""
    return artifacts.claim(Path(directory).resolve(), shared=True)


def manifest_path(directory: Path) -> Path:
    return Path(directory) / MANIFEST


def load(directory) -> Model:
    """A complete model directory, checked (module docstring); ValueError naming what is wrong."""
    meta = read_manifest(directory)
    directory = Path(directory)
    check_files(directory, meta)
    with np.load(directory / HEAD, allow_pickle=False) as npz:
        layers = sorted(int(name[1:]) for name in npz.files if name.startswith("w"))
        weights = tuple(npz[f"w{k}"] for k in layers)
        biases = tuple(npz[f"b{k}"] for k in layers)
    shapes = [meta["feat_dim"], *meta["head"]["hidden"], len(meta["classes"])]
    expected = list(itertools.pairwise(shapes))
    if [w.shape for w in weights] != expected or [b.shape for b in biases] != [(b,) for _, b in expected]:
        raise ValueError(f"{directory / HEAD} holds layers {[w.shape for w in weights]}, not the {expected} "
                         "of "
                         f"{directory / MANIFEST}; the directory is damaged: {REFIT}")
    return Model(directory, meta, weights, biases)


def read_manifest(directory) -> dict:
    """model.json of a complete model directory of this contract version; ValueError otherwise."""
    directory = Path(directory)
    path = directory / MANIFEST
    if not directory.is_dir():
        aside = artifacts.set_aside(directory)
        if aside and not directory.exists():
            raise ValueError(f"{directory} does not exist: a fit replacing it was interrupted, and the "
                             f"previous model is in {aside[0]}; rerun the fit (it restores or replaces it), "
                             f"or rename {aside[0].name} back to {directory.name}")
        raise ValueError(f"{directory} is no model directory (it does not exist); make one with "
                         "python -m model fit --config C (make model)")
    if not path.is_file():
        raise ValueError(f"{directory} holds no {MANIFEST}: it is not a model directory, or its fit did not "
                         "finish; "
                         f"{REFIT}")
    try:
        meta = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is damaged ({err}); {REFIT}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{path} is not a {FORMAT} manifest (format "
                         f"{meta.get('format') if isinstance(meta, dict) else None!r})")
    if meta.get("version") != VERSION:
        raise ValueError(f"{directory} was written under model contract version {meta.get('version')!r}; "
                         "this "
                         f"version of the project reads version {VERSION}: {REFIT}")
    if meta.get("complete") is not True:
        raise ValueError(f"{directory} is incomplete (model.json has no complete = true); {REFIT}")
    check_manifest(meta, path)
    if meta.get(MANIFEST_SHA256) != manifest_digest(meta):
        raise ValueError(f"{path} differs from the sha256 written with it ({MANIFEST_SHA256}): it was edited "
                         f"(its classes, thresholds or another key) or damaged; {REFIT}, or restore the "
                         "model.json written with the model")
    return meta


def shown(value) -> str:
    """A value from a user's file as an error message shows it: JSON, at most 60 characters."""
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _number(value, low: float = 0.0, high: float = 1.0) -> bool:
    """Whether `value` is a JSON number (not a boolean) in [low, high] (NaN is not)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and low <= value <= high


def _inside(name) -> bool:
    """Whether a file name of model.json is a relative path that stays inside the directory."""
    return isinstance(name, str) and bool(name) and not Path(name).is_absolute() \
        and ".." not in Path(name).parts


def check_manifest(meta: dict, path: Path) -> None:
    """ValueError naming the first key of model.json (`path`) a reader cannot take as it is, its
    value and what to do (module docstring). Thresholds may be 0 or 1: a sigmoid in float32
    reaches both, so a fitted model can hold them."""
    def refuse(key: str, value, expected: str):
        raise ValueError(f"{path}: {key} is {shown(value)}; {expected}. The file was edited or damaged: "
                         f"{REFIT}, or restore the model.json written with the model")

    classes = meta.get("classes")
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) and c for c in classes):
        refuse("classes", classes, "it must be the list of the model's class names")
    repeated = [c for c in dict.fromkeys(classes) if classes.count(c) > 1]
    if repeated:
        refuse("classes", classes, f"class {repeated[0]!r} appears {classes.count(repeated[0])} times")
    feat_dim = meta.get("feat_dim")
    if not isinstance(feat_dim, int) or isinstance(feat_dim, bool) or feat_dim < 1:
        refuse("feat_dim", feat_dim, "it must be the width of the features, a positive whole number")
    head = meta.get("head")
    hidden = head.get("hidden") if isinstance(head, dict) else None
    if not isinstance(hidden, list) or not all(isinstance(h, int) and not isinstance(h, bool) and h > 0
                                               for h in hidden):
        refuse("head", head, "it must be {type, hidden: [widths of the hidden layers], activation}")
    thresholds = meta.get("thresholds")
    if not isinstance(thresholds, dict):
        refuse("thresholds", thresholds, 'it must be {"global": t, "class": [t_1 .. t_L]}')
    if not _number(thresholds.get("global")):
        refuse("thresholds.global", thresholds.get("global"), "it must be a number in [0, 1]")
    per_class = thresholds.get("class")
    if not isinstance(per_class, list) or len(per_class) != len(classes):
        refuse("thresholds.class", per_class, f"it must list one threshold per class ({len(classes)})")
    bad = [t for t in per_class if not _number(t)]
    if bad:
        refuse(f"thresholds.class[{per_class.index(bad[0])}]", bad[0], "it must be a number in [0, 1]")
    _check_features(meta.get("features"), refuse)
    if meta.get("backbone") not in ("", BACKBONE):
        refuse("backbone", meta.get("backbone"),
               f'it is "" (the checkpoint of `features`) or "{BACKBONE}" (the backbone the model carries), '
               "never another path")
    files = meta.get("files")
    if not isinstance(files, dict) or HEAD not in files:
        refuse("files", files, f"it must map every file of the directory ({HEAD} among them) to its sha256")
    outside = [name for name in files if not _inside(name)]
    if outside:
        refuse("files", outside[0], "a file of the model is named relative to its directory, inside it")
    if not isinstance(meta.get("fingerprint"), str):
        refuse("fingerprint", meta.get("fingerprint"), "it must be the sha256 of the provenance")


def _check_features(contract, refuse) -> None:
    """model.json's `features` (module docstring): what `predict` and `export` read of it."""
    if not isinstance(contract, dict) or not isinstance(contract.get("backbone"), str):
        refuse("features", contract, "it must describe the features the head was trained on (backbone, ...)")
    if contract.get("dtype", "float32") not in DTYPES:
        refuse("features.dtype", contract.get("dtype"), f"it is one of {', '.join(DTYPES)}")
    size = contract.get("image_size", 1)
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        refuse("features.image_size", size, "it must be a positive whole number of pixels")


def check_files(directory: Path, meta: dict) -> None:
    """ValueError naming a file of the directory that is missing or whose sha256 changed."""
    for name, digest in meta.get("files", {}).items():
        path = directory / name
        if path.exists() and not path.resolve().is_relative_to(directory.resolve()):
            raise ValueError(f"{path} leads outside {directory} (a symbolic link); a model's files live in "
                             f"its directory: {REFIT}")
        if not path.is_file():
            raise ValueError(f"{directory}: {name} is missing; the directory is damaged: {REFIT}")
        if artifacts.file_sha256(path) != digest:
            raise ValueError(f"{path} differs from the sha256 recorded in {MANIFEST} (damaged or edited); "
                             f"{REFIT}")


def out_of_fold(model: Model) -> dict:
    """out_of_fold.h5 of a model as {name: array, "attrs": {...}}; ValueError when the model has none."""
    path = model.path / OUT_OF_FOLD
    if OUT_OF_FOLD not in model.meta.get("files", {}):
        raise ValueError(f"{model.path} holds no out-of-fold predictions (it was fitted with [model] folds = "
                         "0); "
                         "suggestions need them: set [model] folds = 4 and refit (make model FORCE=1)")
    with artifacts.open_h5(path) as h5:
        arrays = artifacts.read_arrays(h5, ("ids", "observed", "labels", "probabilities", "fold", "known"))
        arrays["attrs"] = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in h5.attrs.items()}
    _check_out_of_fold(arrays, len(model.classes), path)
    return arrays


def _check_out_of_fold(arrays: dict, n_classes: int, path: Path) -> None:
    """ValueError naming what out_of_fold.h5 lacks or holds in another shape than the model's."""
    def refuse(problem: str):
        raise ValueError(f"{path} {problem}; the directory is damaged: {REFIT}")

    missing = [name for name in ("ids", "observed", "labels", "probabilities", "fold") if name not in arrays]
    if missing:
        refuse(f"holds no {missing[0]!r}")
    n = len(arrays["ids"])
    for name in ("observed", "labels", "probabilities", "known"):
        if name in arrays and arrays[name].shape != (n, n_classes):
            refuse(f"holds {name} of shape {arrays[name].shape}, not ({n}, {n_classes}): {n} rows by the "
                   f"model's {n_classes} classes")
    if arrays["fold"].shape != (n,):
        refuse(f"holds fold of shape {arrays['fold'].shape}, not ({n},)")
    rate = arrays["attrs"].get("missing_rate")
    if not isinstance(rate, int | float) or not 0 <= rate < 1:
        refuse(f"has missing_rate {rate!r}, not the share of positives the labels lack (a number in [0, 1))")

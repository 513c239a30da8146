"""`python -m model predict --model DIR (--images FOLDER|LIST | --features FILE)`: a model's
probabilities and tags for new images or features (`make predict MODEL=... IMAGES=...`).

Inputs, said once:
- `--images`: a folder (every file with an image suffix below it, keys its path relative to
  the folder, in sorted order), or a list file (one image path per line, relative to the list's
  folder; blank lines and lines starting with # skipped; keys as written). The images go through
  the study's extraction (`extract.extraction.Job`: batched, resumable, the GPU when present,
  shard tasks on Dask with --scheduler) with the network the model expects (`model.json`'s
  `features`): the checkpoint must have the sha256 the model recorded (a finetuned model
  carries its own backbone). The features are kept beside the output (<out>.features.h5): a
  rerun resumes or reuses them.
- `--features`: a feature store (`features.store`; its backbone, endpoint, image size,
  preprocessing, pooling and checkpoint must be the model's, else it is refused naming both),
  or a table in any format of `features.importer` (its width must be the model's).
Output (`--out`, default <model>/predictions/<input name>.csv, written atomically; a Parquet
copy beside it when pyarrow is installed): one row per readable image or feature row: `key`,
`tags` (the classes predicted, ";"-separated, by `--threshold` global | class | 0.5 | a number,
default global, or the `--top-k` highest), then each class's probability under its name.
Unreadable images are listed with their reason in <out>.unreadable.csv and counted on the
screen, never dropped silently.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

import artifacts
import configs
import metrics
from features import importer
from features import store as feature_store

from . import directory

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


@dataclass(frozen=True)
class Scored:
    """What a prediction read: keys and probabilities of the readable rows, and the unreadable ones."""
    keys: list[str]
    probabilities: np.ndarray  # (n, L) float32
    unreadable: pd.DataFrame  # key, path, reason


def image_list(source: Path) -> tuple[list[str], list[str]]:
    """(keys, paths) of a folder of images or a list file (module docstring); ValueError when
    it does not exist or names no image."""
    if source.is_dir():
        paths = sorted(p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not paths:
            raise ValueError(f"{source} holds no image (files ending in {', '.join(IMAGE_SUFFIXES)})")
        return [p.relative_to(source).as_posix() for p in paths], [str(p) for p in paths]
    if not source.is_file():
        raise ValueError(f"--images {source} does not exist: give a folder of images or a file listing them")
    lines = [line.strip() for line in source.read_text(errors="replace").splitlines()]
    keys = [line for line in lines if line and not line.startswith("#")]
    if not keys:
        raise ValueError(f"{source} lists no image (one path per line, relative to its folder)")
    repeated = pd.Index(keys)[pd.Index(keys).duplicated()]
    if len(repeated):
        raise ValueError(f"{source} lists {repeated[0]!r} twice; list each image once")
    return keys, [str(source.parent / key) for key in keys]


def checkpoint_for(model: directory.Model, given: str = "") -> tuple[Path, str]:
    """(checkpoint prefix, its sha256) of the backbone the model expects: its own (finetuned),
    `given`, the path the model recorded, or the backbone's official one; ValueError when none
    has the sha256 the model recorded."""
    from extract import checkpoints, registry

    expected = model.features.get("checkpoint_sha256", "")
    own = model.backbone_checkpoint
    if own is not None:
        return own, checkpoints.sha256(own)
    candidates = [given] if given else [model.features.get("checkpoint", "")]
    seen = []
    for candidate in filter(None, candidates):
        if checkpoints.checkpoint_files(Path(candidate)):
            digest = checkpoints.sha256(candidate)
            if digest == expected:
                return Path(candidate), digest
            seen.append(f"{candidate} (sha256 {digest[:12]}...)")
    if not given:
        spec = registry.get(model.features["backbone"])
        if spec.url:
            official = checkpoints.resolve(spec)
            digest = checkpoints.sha256(official)
            if digest == expected:
                return official, digest
            seen.append(f"{official} (sha256 {digest[:12]}...)")
    raise ValueError(f"{model.path} expects the {model.features.get('backbone')} checkpoint with sha256 "
                     f"{expected[:12]}...; " + (f"found {', '.join(seen)}" if seen else "none was found")
                     + "; pass the one the model was trained with: --checkpoint PREFIX")


def from_images(model: directory.Model, source: Path, features_out: Path, checkpoint: str = "",
                scheduler: str | None = None, force: bool = False) -> Scored:
    """The model over the images of `source`, their features extracted into `features_out`."""
    from extract import extraction

    keys, paths = image_list(source)
    contract = model.features
    if contract.get("backbone") == "imported":
        raise ValueError(f"{model.path} was trained on imported features ({contract.get('source')}), not on "
                         "a "
                         "backbone's: predict from features of the same kind (--features FILE)")
    prefix, identity = checkpoint_for(model, checkpoint)
    plan = extraction.Plan(contract["backbone"], contract["endpoint"], int(contract["image_size"]),
                           contract["preprocessing"], contract["pooling"], contract.get("dtype", "float32"))
    cfg = configs.with_scheduler(configs.Config(source=str(source)), scheduler)
    job = extraction.Job(plan, prefix, identity, tuple(keys), tuple(paths), features_out,
                         where=f"--images {source}", max_invalid_share=1.0)
    print(f"{source}: {len(keys)} image(s) through {plan.backbone}:{plan.endpoint} at {plan.image_size}px")
    store = extraction.run(job, force=force, cfg=cfg)
    return from_store(model, store)


def from_store(model: directory.Model, path: Path) -> Scored:
    """The model over a feature store's readable rows (its contract checked against the model's)."""
    reader = feature_store.FeatureReader(path)
    reader.check_data()
    differences = directory.mismatch(model, directory.feature_contract(reader))
    if differences:
        raise ValueError(f"{path} holds other features than {model.path} was trained on ("
                         + "; ".join(differences) + "); extract them with the model's network (--images)")
    check_width(model, reader.shape[1], path)
    rows = np.flatnonzero(reader.valid)
    probabilities = model.probabilities(reader.rows(rows)) if len(rows) else np.zeros((0, len(model.classes)))
    errors = _errors(path)
    unreadable = pd.DataFrame({"key": list(errors), "reason": list(errors.values())})
    return Scored(list(reader.ids[rows]), probabilities, unreadable)


def _errors(path: Path) -> dict:
    with artifacts.open_h5(path) as h5:
        return dict(zip(h5["error_ids"].asstr()[:], h5["error_messages"].asstr()[:]))


def from_table(model: directory.Model, path: Path, dataset) -> Scored:
    """The model over a features table (`features.importer` formats; `dataset`: the [dataset]
    keys that say how to read it)."""
    table = importer.read_features(path, dataset)
    extra = table.features.shape[1] - model.feat_dim
    check_width(model, table.features.shape[1], path,
                f"; if {extra} of its columns are labels, give --n-labels {extra} (and --labels-first when "
                "they "
                "come first)" if extra > 0 else "")
    features = feature_store.dense(table.features)
    empty = pd.DataFrame({"key": [], "reason": []})
    return Scored(list(table.ids), model.probabilities(np.asarray(features, np.float32)), empty)


def is_feature_store(path: Path) -> bool:
    """Whether `path` is this project's feature store (rather than a table that happens to be HDF5)."""
    if importer.suffix(path) not in (".h5", ".hdf5"):
        return False
    with artifacts.open_h5(path) as h5:
        return "valid" in h5 and "ids" in h5 and "feat_dim" in h5.attrs


def check_width(model: directory.Model, width: int, path: Path, hint: str = "") -> None:
    if width != model.feat_dim:
        raise ValueError(f"{path} has {width} features per row; {model.path} reads {model.feat_dim}{hint}")


def tags(model: directory.Model, probabilities: np.ndarray, threshold: str, top_k: int | None) -> list[str]:
    """Each row's predicted classes, ";"-separated: the `top_k` highest, or those at or above
    the threshold rule's (`model.directory.Model.thresholds`)."""
    n_classes = len(model.classes)
    if top_k is not None:
        if not 1 <= top_k <= n_classes:
            raise ValueError(f"--top-k {top_k}: the model has {n_classes} classes; give 1..{n_classes}")
        predicted = metrics.top_k(probabilities, top_k)
    else:
        predicted = probabilities >= model.thresholds(threshold)[None]
    names = np.asarray(model.classes, object)
    return [";".join(names[row]) for row in predicted]


def write(out: Path, scored: Scored, model: directory.Model, threshold: str, top_k: int | None) -> Path:
    """The predictions CSV (and Parquet, with pyarrow), atomically; the unreadable list beside it."""
    columns = {"key": scored.keys, "tags": tags(model, scored.probabilities, threshold, top_k)}
    prefix = "p_" if {"key", "tags"} & set(model.classes) else ""
    frame = pd.DataFrame(columns)
    frame = pd.concat([frame,
                       pd.DataFrame(scored.probabilities,
                                    columns=[prefix + c for c in model.classes])], axis=1)
    artifacts.write_text(out, frame.to_csv(index=False, float_format="%.6g"))
    try:
        import pyarrow  # noqa: F401 (optional: the Parquet copy)
    except ImportError:
        pass
    else:
        with artifacts.replaced(out.with_suffix(".parquet"), ".tmp.parquet") as tmp:
            frame.to_parquet(tmp, index=False)
    unreadable = out.with_name(out.stem + ".unreadable.csv")
    if len(scored.unreadable):
        artifacts.write_text(unreadable, scored.unreadable.to_csv(index=False))
    else:
        unreadable.unlink(missing_ok=True)
    return out


def predict(model_path, images: str = "", features: str = "", out: str = "", threshold: str = "global",
            top_k: int | None = None, checkpoint: str = "", scheduler: str | None = None, dataset=None,
            force: bool = False) -> Path:
    """`python -m model predict` (module docstring): the output CSV's path."""
    # setup: the model, what to predict, where the output goes
    model = directory.load(model_path)
    if bool(images) == bool(features):
        raise ValueError("give one input: --images (a folder or a list file) or --features (a file)")
    source = Path(images or features)
    target = Path(out) if out else model.path / "predictions" / f"{source.stem or source.name}.csv"
    if top_k is None:
        model.thresholds(threshold)  # a bad rule fails before any work
    artifacts.writable(target.parent)

    # score: images through the model's network, or stored features
    if images:
        scored = from_images(model, source, target.with_suffix(".features.h5"), checkpoint, scheduler, force)
    elif not source.is_file():
        raise ValueError(f"--features {source} does not exist (or is not a file)")
    elif is_feature_store(source):
        scored = from_store(model, source)
    else:
        scored = from_table(model, source, dataset or configs.Dataset())

    # save
    write(target, scored, model, threshold, top_k)
    print(f"{target}: {len(scored.keys)} row(s), tags by "
          + (f"the top {top_k}" if top_k else f"threshold {threshold}")
          + (f"; {len(scored.unreadable)} unreadable, listed in {target.stem}.unreadable.csv"
             if len(scored.unreadable) else ""))
    return target

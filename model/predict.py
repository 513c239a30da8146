"""`python -m model predict --model DIR (--images FOLDER|LIST|IMAGE | --features FILE)`: a model's
probabilities and tags for new images or features (`make predict MODEL=... IMAGES=...`).

Inputs, said once:
- `--images`: a folder (every file with an image suffix below it, keys its path relative to
  the folder, in sorted order; a file whose name is not UTF-8 is listed unreadable, not read),
  one image file (its key its name), or a list file (one image path per line, relative to the
  list's folder; blank lines and lines starting with # skipped; keys as written). The images go
  through the study's extraction (`extract.extraction.Job`: batched, resumable, the GPU when
  present, shard tasks on Dask with --scheduler) with the network the model expects
  (`model.json`'s `features`): the checkpoint must have the sha256 the model recorded (a
  finetuned model carries its own backbone). The features are kept beside the output
  (<out>.features.h5): a rerun resumes or reuses them.
- `--features`: a feature store (`features.store`; its backbone, endpoint, image size,
  preprocessing, pooling and checkpoint must be the model's, else it is refused naming both),
  or a table in any format of `features.importer` (its width must be the model's).
Output (`--out`, default <model>/predictions/<input name>.csv, a path ending in .csv that is
none of the input files; written atomically; a Parquet copy beside it when pyarrow is
installed): one row per readable image or feature row: `key`, `tags` (the classes predicted by
`--threshold` global | class | 0.5 | a number, default global, or the `--top-k` highest), then
each class's probability under its name. The `tags` cell is a ";"-separated list written as a
CSV line with ";" as separator: a class name holding ";", a double quote or a line break is in
double quotes (`"a;b";c`), a double quote doubled; `next(csv.reader(io.StringIO(cell),
delimiter=";"))` reads it back. Cells of text (keys, tags) and column names that a spreadsheet
would run as a formula (starting with =, +, -, @, a tab or a carriage return) carry a leading
single quote, as does one starting with a quote (`artifacts.cells`: `artifacts.plain` drops it).
Unreadable images are listed with their reason in <out>.unreadable.csv and counted on the
screen, never dropped silently. The model is claimed for reading meanwhile
(`model.directory.reading`): a fit replacing it is refused until the prediction is written.
"""
from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import os
from collections.abc import Callable, Iterator
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
BLOCK_ROWS = 1 << 16  # rows read, scored and written at a time


@dataclass(frozen=True)
class Scored:
    """What a prediction reads: the readable rows' keys and probabilities a block at a time
    (`blocks()` reads them anew at each call, so a store, CSV or .npy larger than memory streams),
    and the unreadable rows."""
    blocks: Callable[[], Iterator[tuple[list[str], np.ndarray]]]  # (keys, (n, L) float32) per block
    unreadable: pd.DataFrame  # key, reason


def image_list(source: Path) -> tuple[list[str], list[str]]:
    """(keys, paths) of a folder of images, an image, or a list file (module docstring);
    ValueError when it does not exist or names no image. A folder's files whose names are not
    UTF-8 are left out (`unencodable` lists them)."""
    if source.is_dir():
        paths = [p for p in _images_below(source) if _utf8(p)]
        if not paths:
            raise ValueError(f"{source} holds no image (files ending in {', '.join(IMAGE_SUFFIXES)}"
                             + (" whose names are UTF-8" if _images_below(source) else "") + ")")
        return [p.relative_to(source).as_posix() for p in paths], [str(p) for p in paths]
    if not source.is_file():
        raise ValueError(f"--images {source} does not exist: give a folder of images, an image, or a file "
                         "listing them")
    if source.suffix.lower() in IMAGE_SUFFIXES:
        if not _utf8(source):
            raise ValueError(f"--images {unencodable_name(source)}: its file name is not UTF-8; rename it")
        return [source.name], [str(source)]
    lines = [line.strip() for line in source.read_text(errors="replace").splitlines()]
    keys = [line for line in lines if line and not line.startswith("#")]
    if not keys:
        raise ValueError(f"{source} lists no image (one path per line, relative to its folder)")
    repeated = pd.Index(keys)[pd.Index(keys).duplicated()]
    if len(repeated):
        raise ValueError(f"{source} lists {repeated[0]!r} twice; list each image once")
    return keys, [str(source.parent / key) for key in keys]


def _images_below(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _utf8(path: Path) -> bool:
    """Whether a file name decodes as UTF-8 (else Python holds it with surrogate escapes, which
    neither TensorFlow nor the stores can take)."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def unencodable(source: Path) -> pd.DataFrame:
    """The images of a folder whose file names are not UTF-8, as unreadable rows (key: the name
    with its undecodable bytes as \\x escapes, reason)."""
    paths = [p for p in _images_below(source) if not _utf8(p)] if source.is_dir() else []
    keys = [unencodable_name(p.relative_to(source)) for p in paths]
    reason = "its file name is not UTF-8: rename it to read it"
    return pd.DataFrame({"key": keys, "reason": [reason] * len(keys)})


def unencodable_name(path: Path) -> str:
    """A file name that is not UTF-8 as text: its undecodable bytes as \\x escapes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


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
    """The model over the images of `source`, their features extracted into `features_out`; the
    images it could not read listed with their reason (those whose names are not UTF-8 among them)."""
    from extract import extraction

    keys, paths = image_list(source)
    contract = model.features
    if not model.from_backbone:
        made_by = contract.get("source") or contract.get("backbone")
        raise ValueError(f"{model.path} was trained on features no backbone of this project made "
                         f"({made_by}): predict from features of the same kind (--features FILE)")
    prefix, identity = checkpoint_for(model, checkpoint)
    plan = extraction.Plan(contract["backbone"], contract["endpoint"], int(contract["image_size"]),
                           contract["preprocessing"], contract["pooling"], contract.get("dtype", "float32"))
    cfg = configs.with_scheduler(configs.Config(source=str(source)), scheduler)
    job = extraction.Job(plan, prefix, identity, tuple(keys), tuple(paths), features_out,
                         where=f"--images {source}", max_invalid_share=1.0)
    print(f"{source}: {len(keys)} image(s) through {plan.backbone}:{plan.endpoint} at {plan.image_size}px")
    store = extraction.run(job, force=force, cfg=cfg)
    scored = from_store(model, store)
    return dataclasses.replace(scored, unreadable=pd.concat([unencodable(source), scored.unreadable],
                                                            ignore_index=True))


def from_store(model: directory.Model, path: Path) -> Scored:
    """The model over a feature store's readable rows, `BLOCK_ROWS` at a time (its contract
    checked against the model's)."""
    reader = feature_store.FeatureReader(path)
    reader.check_data()
    differences = directory.mismatch(model, directory.feature_contract(reader))
    if differences:
        raise ValueError(f"{path} holds other features than {model.path} was trained on ("
                         + "; ".join(differences) + "); extract them with the model's network (--images)")
    check_width(model, reader.shape[1], path)
    rows = np.flatnonzero(reader.valid)

    def blocks():
        for start in range(0, len(rows), BLOCK_ROWS):
            part = rows[start:start + BLOCK_ROWS]
            yield list(reader.ids[part]), model.probabilities(feature_store.dense(reader.window(part)))

    errors = _errors(path)
    return Scored(blocks, pd.DataFrame({"key": list(errors), "reason": list(errors.values())}))


def _errors(path: Path) -> dict:
    with artifacts.open_h5(path) as h5:
        return dict(zip(h5["error_ids"].asstr()[:], h5["error_messages"].asstr()[:]))


def from_table(model: directory.Model, path: Path, dataset) -> Scored:
    """The model over a features table (`features.importer` formats; `dataset`: the [dataset]
    keys that say how to read it), `BLOCK_ROWS` at a time: a CSV / TSV is read a block at a time
    and a .npy memory-mapped (both stream, each block checked as it is read); every other format
    is read whole by its library."""
    if importer.suffix(path) == ".npy":
        return from_npy(model, path)
    if importer.suffix(path) in importer.CSV_SUFFIXES:
        width, table_blocks = importer.csv_blocks(path, dataset, BLOCK_ROWS)
        check_width(model, width, path, _label_hint(width - model.feat_dim))

        def blocks():
            for keys, features in table_blocks():
                yield keys, model.probabilities(np.asarray(features, np.float32))

        return Scored(blocks, pd.DataFrame({"key": [], "reason": []}))
    table = importer.read_features(path, dataset)
    check_width(model, table.features.shape[1], path, _label_hint(table.features.shape[1] - model.feat_dim))

    def blocks():
        for start in range(0, len(table.ids), BLOCK_ROWS):
            rows = slice(start, start + BLOCK_ROWS)
            features = np.asarray(feature_store.dense(table.features[rows]), np.float32)
            yield list(table.ids[rows]), model.probabilities(features)

    return Scored(blocks, pd.DataFrame({"key": [], "reason": []}))


def _label_hint(extra: int) -> str:
    return (f"; if {extra} of its columns are labels, give --n-labels {extra} (and --labels-first when "
            "they come first)" if extra > 0 else "")


def from_npy(model: directory.Model, path: Path) -> Scored:
    """The model over a memory-mapped .npy, its rows keyed by number (`from_table`)."""
    array = importer.memory_mapped(path)
    check_width(model, array.shape[1], path)

    def blocks():
        for start in range(0, len(array), BLOCK_ROWS):
            block = np.asarray(array[start:start + BLOCK_ROWS], np.float64)
            importer.check_block(block, path, start)
            yield [str(i) for i in range(start, start + len(block))], model.probabilities(block)

    return Scored(blocks, pd.DataFrame({"key": [], "reason": []}))


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
    """Each row's predicted classes as a `tags` cell (module docstring): the `top_k` highest, or
    those at or above the threshold rule's (`model.directory.Model.thresholds`)."""
    n_classes = len(model.classes)
    if top_k is not None:
        if not 1 <= top_k <= n_classes:
            raise ValueError(f"--top-k {top_k}: the model has {n_classes} classes; give 1..{n_classes}")
        predicted = metrics.top_k(probabilities, top_k)
    else:
        predicted = probabilities >= model.thresholds(threshold)[None]
    names = np.asarray(model.classes, object)
    return [tag_cell(names[row]) for row in predicted]


def tag_cell(names) -> str:
    """Class names as one `tags` cell: a CSV line with ";" between them (module docstring)."""
    line = io.StringIO()
    csv.writer(line, delimiter=";", lineterminator="\r\n").writerow(names)
    return line.getvalue()[:-2]


def unreadable_path(out: Path) -> Path:
    return out.with_name(out.stem + ".unreadable.csv")


def check_out(target: Path, source: Path) -> None:
    """ValueError when `--out` is no .csv, or when it (or a file written beside it: the Parquet
    copy, the unreadable list, the images' features) is the input `source`."""
    if target.suffix.lower() != ".csv":
        raise ValueError(f"--out {target}: the predictions are a CSV; give a path ending in .csv")
    beside = (target, target.with_suffix(".parquet"), unreadable_path(target),
              target.with_suffix(".features.h5"))
    for path in beside:
        if path.exists() and source.exists() and path.samefile(source):
            raise ValueError(f"--out {target} would write {path}, which is the input {source}; give another "
                             "--out: the input is never written to")


def write(out: Path, scored: Scored, model: directory.Model, threshold: str, top_k: int | None) -> int:
    """The predictions CSV (and Parquet, with pyarrow), a block at a time into temporary files
    renamed into place once complete, text cells spreadsheet-safe (module docstring); the
    unreadable list beside it. Returns the number of rows predicted."""
    written = 0
    prefix = "p_" if {"key", "tags"} & set(model.classes) else ""
    columns = [prefix + c for c in model.classes]
    header = ["key", "tags", *columns]
    with artifacts.replaced(out) as tmp, open(tmp, "w", encoding="utf-8", newline="") as table, \
            parquet_copy(out, header) as copy:
        table.write(artifacts.csv_text(pd.DataFrame(columns=header)))
        for keys, probabilities in scored.blocks():
            named = pd.DataFrame({"key": keys, "tags": tags(model, probabilities, threshold, top_k)})
            frame = pd.concat([named, pd.DataFrame(probabilities, columns=columns)], axis=1)
            table.write(artifacts.csv_text(frame, header=False, float_format="%.6g"))
            copy(frame)
            written += len(frame)
    unreadable = unreadable_path(out)
    if len(scored.unreadable):
        artifacts.write_csv(unreadable, scored.unreadable)
    else:
        unreadable.unlink(missing_ok=True)
    return written


@contextlib.contextmanager
def parquet_copy(out: Path, header: list[str]):
    """Yields a function that appends a block of predictions (of the columns `header`) to the
    Parquet copy beside `out`, renamed into place when the block ends without error; with
    pyarrow only (else it does nothing)."""
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        yield lambda frame: None
        return
    with artifacts.replaced(out.with_suffix(".parquet"), ".tmp.parquet") as tmp:
        writer = None

        def append(frame: pd.DataFrame) -> None:
            nonlocal writer
            block = pyarrow.Table.from_pandas(frame, preserve_index=False)
            writer = writer or pyarrow.parquet.ParquetWriter(tmp, block.schema)
            writer.write_table(block)

        try:
            yield append
        finally:
            if writer is not None:
                writer.close()
        if writer is None:  # no readable row: the columns alone
            pyarrow.parquet.write_table(pyarrow.table({name: [] for name in header}), tmp)


def predict(model_path, images: str = "", features: str = "", out: str = "", threshold: str = "global",
            top_k: int | None = None, checkpoint: str = "", scheduler: str | None = None, dataset=None,
            force: bool = False) -> Path:
    """`python -m model predict` (module docstring): the output CSV's path."""
    with directory.reading(model_path):
        # setup: the model, what to predict, where the output goes
        model = directory.load(model_path)
        if bool(images) == bool(features):
            raise ValueError("give one input: --images (a folder, an image or a list file) or --features (a "
                             "file)")
        source = Path(images or features)
        target = Path(out) if out else model.path / "predictions" / f"{source.stem or source.name}.csv"
        check_out(target, source)
        if top_k is None:
            model.thresholds(threshold)  # a bad rule fails before any work
        artifacts.writable(target.parent)

        # score: images through the model's network, or stored features
        if images:
            scored = from_images(model, source, target.with_suffix(".features.h5"), checkpoint, scheduler,
                                 force)
        elif not source.is_file():
            raise ValueError(f"--features {source} does not exist (or is not a file)")
        elif is_feature_store(source):
            scored = from_store(model, source)
        else:
            scored = from_table(model, source, dataset or configs.Dataset())

        # save
        written = write(target, scored, model, threshold, top_k)
    print(f"{target}: {written} row(s), tags by "
          + (f"the top {top_k}" if top_k else f"threshold {threshold}")
          + (f"; {len(scored.unreadable)} unreadable, listed in {unreadable_path(target).name}"
             if len(scored.unreadable) else ""))
    return target

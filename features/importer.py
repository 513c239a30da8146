"""Import precomputed features and labels (no images) into the feature store: the `table`
dataset adapter, `python -m features import --config C` (and `make features` for such a config).

Each format is read with the library made for it:
    .npy / .npz      NumPy (a SciPy sparse matrix saved by scipy.sparse.save_npz stays sparse)
    .csv / .tsv      pandas (optionally gzip-compressed; header or not; label columns by name
                     (`label_columns`) or position (`n_labels`, last or `labels_first`))
    .arff            liac-arff, dense rows or sparse {index value, ...} rows (kept sparse), the
                     labels the last `n_labels` attributes, or the first (`labels_first`, or
                     MEKA's "-C n" in the relation name when n_labels is 0)
    .mat             scipy.io (MATLAB v7.3 files, which are HDF5, with h5py); keys by
                     `features_key` / `labels_key`
    .h5 / .hdf5      h5py, dataset names by `features_key` / `labels_key`
Labels are 0/1, or in another coding of `features.labels` (-1/1, or three states with unknowns:
1/0/-1, 1/-1/0, 1/0/nan, `label_coding`); a label matrix stored (L, N) is recognised
by its shape and transposed (and said so). Row keys: the `id_column` of a CSV, else the row
number. The store holds every source row in source order, with its labels; `splits` then drops
rows and classes by `min_labels`. Bad input raises one ValueError naming the file, the row or
column and the value, before anything is written.
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import scipy.io
import scipy.sparse

import artifacts
import configs

from . import store
from .labels import decode

CSV_SUFFIXES = (".csv", ".tsv", ".txt")
MAT_PAIRS = (("X", "y"), ("data", "target"), ("features", "labels"), ("X", "Y"))


@dataclass
class Table:
    ids: list[str]
    features: np.ndarray | scipy.sparse.csr_matrix  # (n, D)
    labels: np.ndarray  # (n, L) as read, before the coding is checked; then 0/1 uint8
    classes: list[str]
    known: np.ndarray | None = None  # (n, L) bool after the check: labels whose state is known; None: all


def suffix(path: Path) -> str:
    """The format suffix, a .gz aside: 'data.csv.gz' -> '.csv'."""
    suffixes = [s.lower() for s in path.suffixes]
    return suffixes[-2] if suffixes and suffixes[-1] == ".gz" and len(suffixes) > 1 else (suffixes
                                                                                          or [""])[-1]


def _require(path: str) -> Path:
    if not path:
        raise ValueError("no file given")
    file = Path(path)
    if not file.is_file():
        raise ValueError(f"{file} does not exist (or is not a file); check [dataset] features / labels")
    if file.stat().st_size == 0:
        raise ValueError(f"{file} is empty")
    return file


def _label_positions(n_columns: int, ds, where: Path, meka: int = 0) -> np.ndarray:
    """Which of n_columns are labels: n_labels first or last (MEKA's -C n when n_labels is 0)."""
    n_labels, first = ds.n_labels, ds.labels_first
    if not n_labels and meka:
        n_labels, first = abs(meka), meka > 0
    if not n_labels:
        raise ValueError(f"{where}: set dataset.n_labels, how many of its {n_columns} columns are labels")
    if n_labels >= n_columns:
        raise ValueError(f"{where}: dataset.n_labels = {n_labels} leaves no feature column of {n_columns}")
    return np.arange(n_labels) if first else np.arange(n_columns - n_labels, n_columns)


def _numeric(frame: pd.DataFrame, where: Path, row_names, empty: bool = False) -> np.ndarray:
    """A frame as float64; ValueError naming the row, column and cell that is not a number (an
    empty cell included, unless `empty`: labels, where it is NaN, an unknown label or an error
    by the coding, `features.labels`)."""
    for column in frame.columns:
        if frame[column].dtype.kind not in "biuf" or frame[column].isna().any():
            numbers = pd.to_numeric(frame[column], errors="coerce")
            bad = np.flatnonzero((numbers.isna() & ~(frame[column].isna() if empty else False)).to_numpy())
            if len(bad):
                value = frame[column].iloc[bad[0]]
                raise ValueError(f"{where}: row {row_names[bad[0]]!r} column {column!r} holds "
                                 f"{'' if pd.isna(value) else value!r}, not a number")
    return frame.to_numpy(np.float64)


def _csv_options(path: Path, ds) -> dict:
    """How pandas reads a CSV / TSV of the [dataset] keys `ds`: every reader of one here."""
    return {"sep": "\t" if suffix(path) == ".tsv" else ",", "header": 0 if ds.header else None,
            "keep_default_na": False, "na_values": [""],
            "dtype": {ds.id_column: str} if ds.id_column else None}


def _check_id_column(path: Path, ds, columns: list[str]) -> None:
    if ds.id_column and ds.id_column not in columns:
        raise ValueError(f"{path}: no column {ds.id_column!r}; columns are {columns[:6]}...")


def _csv(path: Path, ds) -> tuple[list[str], pd.DataFrame, list[str]]:
    """A CSV / TSV as (row keys, the other columns, row names for messages)."""
    frame = pd.read_csv(path, **_csv_options(path, ds))
    if frame.empty:
        raise ValueError(f"{path} holds no rows")
    frame.columns = [str(c) for c in frame.columns]
    _check_id_column(path, ds, list(frame.columns))
    ids = (frame.pop(ds.id_column).astype(str).tolist() if ds.id_column
           else [str(i) for i in range(len(frame))])
    return ids, frame, [f"{key} (line {n + 1 + ds.header})" for n, key in enumerate(ids)]


def read_csv(path: Path, ds, with_labels: bool) -> Table:
    """A CSV / TSV: the id column, the label columns (when `with_labels`), the rest features."""
    ids, frame, row_names = _csv(path, ds)
    if not with_labels:
        return Table(ids, _numeric(frame, path, row_names), np.zeros((len(frame), 0)), [])
    if ds.label_columns:
        missing = [c for c in ds.label_columns if c not in frame.columns]
        if missing:
            raise ValueError(f"{path}: no label column {missing[0]!r}; columns are "
                             f"{list(frame.columns)[:6]}...")
        label_names = list(ds.label_columns)
    else:
        label_names = [frame.columns[i] for i in _label_positions(frame.shape[1], ds, path)]
    labels = _numeric(frame[label_names], path, row_names, empty=True)
    features = _numeric(frame.drop(columns=label_names), path, row_names)
    return Table(ids, features, labels, label_names)


def csv_blocks(path: Path, ds, rows: int) -> tuple[int, Callable[[], Iterator[tuple[list[str], np.ndarray]]]]:
    """A CSV / TSV's features as `read_features` reads them, `rows` rows at a time, for a table
    larger than memory: (the number of feature columns, a function yielding (keys, (m, d)
    float64) per block, anew at each call). Each block is checked as `check_rows` checks a
    table, its keys against every earlier block's."""
    path = _require(str(path))
    options = _csv_options(path, ds)
    columns = [str(c) for c in pd.read_csv(path, nrows=0 if ds.header else 1, **options).columns]
    _check_id_column(path, ds, columns)
    values = [c for c in columns if c != ds.id_column] if ds.id_column else columns
    labels = []
    if ds.label_columns:
        labels = [c for c in ds.label_columns if c in values]
    elif ds.n_labels:
        labels = [values[i] for i in _label_positions(len(values), ds, path)]
    features = [c for c in values if c not in labels]

    def blocks():
        seen, start = set(), 0
        for frame in pd.read_csv(path, chunksize=rows, **options):
            frame.columns = columns
            ids = (frame[ds.id_column].astype(str).tolist() if ds.id_column
                   else [str(i) for i in range(start, start + len(frame))])
            names = [f"{key} (line {start + n + 1 + ds.header})" for n, key in enumerate(ids)]
            block = _numeric(frame[features], path, names)
            check_rows(Table(ids, block, np.zeros((len(block), 0)), []), path)
            repeated = seen.intersection(ids)
            if repeated:
                raise ValueError(f"{path}: duplicate row key {min(repeated)!r}; keys must be unique")
            seen.update(ids)
            start += len(frame)
            yield ids, block
        if not start:
            raise ValueError(f"{path} holds no rows")

    return len(features), blocks


def read_csv_labels(path: Path, ds) -> tuple[np.ndarray, list[str]]:
    """A labels-only CSV / TSV: every column but the id column is a label."""
    _, frame, row_names = _csv(path, ds)
    return _numeric(frame, path, row_names, empty=True), list(frame.columns) if ds.header else []


def _arff_is_sparse(path: Path) -> bool:
    """Whether an ARFF's first data row is sparse ({index value, ...})."""
    with open(path, errors="replace") as fh:
        data = False
        for line in fh:
            text = line.strip()
            if not text or text.startswith("%"):
                continue
            if data:
                return text.startswith("{")
            data = text.lower().startswith("@data")
    return False


def read_arff(path: Path, ds, with_labels: bool = True) -> Table:
    """A MULAN / MEKA ARFF, dense or sparse, read with liac-arff; without labels (a file to
    predict) every attribute is a feature unless n_labels / MEKA's -C say some are labels."""
    import arff

    sparse = _arff_is_sparse(path)
    try:
        with open(path) as fh:
            parsed = arff.load(fh, return_type=arff.COO if sparse else arff.DENSE)
    except arff.ArffException as err:
        raise ValueError(f"{path}: not a readable ARFF file ({err})") from None
    names = [name for name, _ in parsed["attributes"]]
    if not names:
        raise ValueError(f"{path} declares no attribute")
    meka = re.search(r"-C\s+(-?\d+)", parsed.get("relation", "") or "")
    declared = ds.n_labels or meka
    positions = _label_positions(len(names), ds, path, int(meka.group(1)) if meka else 0) \
        if with_labels or declared else np.zeros(0, int)
    if sparse:
        values, rows, columns = parsed["data"]
        n_rows = (max(rows) + 1) if rows else 0
        if not n_rows:
            raise ValueError(f"{path} holds no data rows")
        data = _arff_numbers(values, rows, columns, names, path)
        matrix = scipy.sparse.csr_matrix((data, (rows, columns)), shape=(n_rows, len(names)))
        is_label = np.zeros(len(names), bool)
        is_label[positions] = True
        features = matrix[:, np.flatnonzero(~is_label)]
        labels = matrix[:, positions].toarray()
    else:
        if not parsed["data"]:
            raise ValueError(f"{path} holds no data rows")
        frame = pd.DataFrame(parsed["data"], columns=names, dtype=object)
        labels = _numeric(frame.iloc[:, positions], path, list(range(len(frame))), empty=True)
        features = _numeric(frame.drop(columns=frame.columns[positions]), path, list(range(len(frame))))
    ids = [str(i) for i in range(labels.shape[0])]
    return Table(ids, features, labels, [names[i] for i in positions])


def _arff_numbers(values, rows, columns, names, path) -> np.ndarray:
    """The stored values of a sparse ARFF as float64; ValueError naming one that is not a number."""
    try:
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        for value, row, column in zip(values, rows, columns):
            try:
                float(value)
            except (TypeError, ValueError):
                raise ValueError(f"{path}: row {row} attribute {names[column]!r} holds {value!r}, "
                                 "not a number") from None
        raise


def self_contained(h5, path: Path) -> None:
    """ValueError unless every object of an input HDF5 file lives in that file: no soft or
    external link, no dataset with external raw storage or a virtual layout (each would read
    bytes from another file, which the import's sha256 of this file does not cover)."""
    def visit(group, prefix: str) -> None:
        for name in group:
            link = group.get(name, getlink=True)
            where = f"{prefix}/{name}"
            if type(link) in (h5py.SoftLink, h5py.ExternalLink):
                target = f"{getattr(link, 'filename', path)}:{link.path}"
                raise ValueError(f"{path}: {where} is a {type(link).__name__} to {target}; the import reads "
                                 "only "
                                 "objects stored in the file itself: copy the data in (h5copy, or h5py)")
            item = group[name]
            if isinstance(item, h5py.Group):
                visit(item, where)
            elif item.external or item.is_virtual:
                kind = "external raw storage" if item.external else "a virtual layout"
                raise ValueError(f"{path}: dataset {where} has {kind} (its bytes live in other files); the "
                                 "import "
                                 "reads only data stored in the file itself: copy the data in")

    visit(h5, "")


def _mat(path: Path) -> dict:
    """A .mat file's arrays: scipy.io for MATLAB v4-v7.2, h5py for v7.3 (HDF5)."""
    try:
        return {k: v for k, v in scipy.io.loadmat(path).items() if not k.startswith("__")}
    except NotImplementedError:
        with h5py.File(path, "r") as h5:
            self_contained(h5, path)
            return {k: np.asarray(h5[k]).T for k in h5 if isinstance(h5[k], h5py.Dataset)}
    except ValueError as err:
        raise ValueError(f"{path}: not a readable MATLAB file ({err})") from None


def _pick(arrays: dict, key: str, other: str, path: Path, what: str):
    """arrays[key]; without a key, the array a common pair name gives, else an error listing keys."""
    if key:
        if key not in arrays:
            raise ValueError(f"{path}: no {what} key {key!r}; it holds {', '.join(arrays)}")
        return arrays[key]
    for features_key, labels_key in MAT_PAIRS:
        if features_key in arrays and labels_key in arrays:
            return arrays[features_key if what == "features" else labels_key]
    raise ValueError(f"{path}: say which key holds the {what} (dataset.{other}); it holds "
                     f"{', '.join(arrays)}")


def read_arrays(path: Path, ds, what: str) -> np.ndarray | scipy.sparse.spmatrix:
    """An array from .npy / .npz / .mat / .h5: `what` is "features" or "labels"."""
    key = ds.features_key if what == "features" else ds.labels_key
    other = "features_key" if what == "features" else "labels_key"
    kind = suffix(path)
    if kind == ".npy":
        return _numpy(path, what, lambda: np.load(path, allow_pickle=False))
    if kind == ".npz":
        arrays = _numpy(path, what, lambda: _npz_arrays(path))
        if not isinstance(arrays, dict):
            return arrays
        if len(arrays) == 1 and not key:
            return next(iter(arrays.values()))
        return _pick(arrays, key, other, path, what)
    if kind == ".mat":
        return _pick(_mat(path), key, other, path, what)
    with h5py.File(path, "r") as h5:
        self_contained(h5, path)
        name = key or what
        if name not in h5:
            raise ValueError(f"{path}: no dataset {name!r} (dataset.{other}); it holds {', '.join(h5)}")
        return h5[name][()]


def _numpy(path: Path, what: str, load):
    """`load()` of a NumPy file holding the `what`, never unpickling: ValueError naming the file
    when it holds Python objects (an object array, a pickle) or is no NumPy file."""
    try:
        return load()
    except (ValueError, OSError, EOFError) as err:
        raise ValueError(f"{path}: the {what} are not a NumPy array of numbers ({err}); save them as "
                         "numbers, e.g. np.save(path, np.asarray(x, np.float32))") from None


def _npz_arrays(path: Path):
    """An .npz's arrays by name, or the SciPy sparse matrix it holds (scipy.sparse.save_npz)."""
    with np.load(path, allow_pickle=False) as npz:
        if "indptr" in npz.files and "format" in npz.files:
            return scipy.sparse.load_npz(path)
        return {name: npz[name] for name in npz.files}


def _matrix(array, path: Path, what: str, n_rows: int | None = None):
    """A 2-D array (or sparse matrix) of rows; a (L, N) label matrix turned (N, L), said so."""
    if not scipy.sparse.issparse(array):
        array = np.asarray(array)
        if array.ndim == 1:
            array = array[:, None]
        if array.ndim != 2:
            raise ValueError(f"{path}: the {what} have {array.ndim} dimensions; expected (rows, columns)")
        if array.dtype.kind not in "biuf":
            raise ValueError(f"{path}: the {what} are of type {array.dtype}, not numbers")
    if array.shape[0] == 0:
        raise ValueError(f"{path}: the {what} hold no rows")
    if what == "labels" and n_rows is not None and array.shape[0] != n_rows and array.shape[1] == n_rows:
        print(f"{path}: labels stored as (classes, rows) = {array.shape}; read transposed")
        array = array.T
    return array


def read_table(cfg) -> tuple[Table, list[Path]]:
    """The config's features and labels, read and checked (module docstring); the files read."""
    ds = cfg.dataset
    features_file = _require(ds.features)
    labels_file = _require(ds.labels) if ds.labels else None
    kind = suffix(features_file)
    if kind == ".arff":
        table = read_arff(features_file, ds)
    elif kind in CSV_SUFFIXES:
        table = read_csv(features_file, ds, with_labels=labels_file is None)
    else:
        features = _matrix(read_arrays(features_file, ds, "features"), features_file, "features")
        table = Table([str(i) for i in range(features.shape[0])], features, np.zeros((0, 0)), [])
        if labels_file is None:
            table.labels = _matrix(read_arrays(features_file, ds, "labels"), features_file, "labels",
                                   features.shape[0])
    if labels_file is not None:
        if suffix(labels_file) in CSV_SUFFIXES:
            table.labels, table.classes = read_csv_labels(labels_file, ds)
        else:
            table.labels = _matrix(read_arrays(labels_file, ds, "labels"), labels_file, "labels",
                                   len(table.ids))
    check(table, features_file, labels_file or features_file, ds.label_coding)
    return table, [p for p in (features_file, labels_file) if p is not None]


def read_features(path: Path, ds) -> Table:
    """Features without labels (rows to predict), in any format above: a CSV's columns but the
    id column (and the label columns `label_columns` / `n_labels` name, dropped), an ARFF's
    attributes (labels dropped likewise), the `features_key` array of .npy / .npz / .mat / .h5."""
    path = _require(str(path))
    kind = suffix(path)
    if kind == ".arff":
        table = read_arff(path, ds, with_labels=False)
    elif kind in CSV_SUFFIXES:
        table = read_csv(path, ds, with_labels=bool(ds.label_columns or ds.n_labels))
    else:
        features = _matrix(read_arrays(path, ds, "features"), path, "features")
        table = Table([str(i) for i in range(features.shape[0])], features,
                      np.zeros((features.shape[0], 0)), [])
    check_rows(table, path)
    return table


def memory_mapped(path: Path) -> np.ndarray:
    """The (n, D) rows of a .npy to predict, memory-mapped rather than read (a table larger than
    memory streams): shape and type checked here, values a block at a time by `check_block`."""
    path = _require(str(path))
    return _matrix(_numpy(path, "features", lambda: np.load(path, mmap_mode="r", allow_pickle=False)), path,
                   "features")


def check_block(block: np.ndarray, path: Path, first_row: int) -> None:
    """`check_rows` on a block of rows first_row.. of a table keyed by row number."""
    keys = [str(first_row + i) for i in range(len(block))]
    check_rows(Table(keys, block, np.zeros((len(block), 0)), []), path)


def check_rows(table: Table, features_file: Path) -> None:
    """Unique row keys, and features finite and within float32's range; ValueError naming the
    row, column and value."""
    keys = pd.Index(table.ids)
    if keys.has_duplicates:
        raise ValueError(f"{features_file}: duplicate row key {keys[keys.duplicated()][0]!r}; keys must be "
                         "unique")
    values = table.features.data if scipy.sparse.issparse(table.features) else table.features
    limit = np.finfo(np.float32).max  # the store holds float32: a larger value would become inf
    with np.errstate(invalid="ignore"):
        storable = np.isfinite(values) & (np.abs(values) <= limit)
    if not storable.all():
        if scipy.sparse.issparse(table.features):
            coo = table.features.tocoo()
            bad = np.flatnonzero(~storable)[0]
            i, j, value = coo.row[bad], coo.col[bad], coo.data[bad]
        else:
            i, j = np.argwhere(~storable)[0]
            value = table.features[i, j]
        raise ValueError(f"{features_file}: row {table.ids[i]!r} feature column {j} holds {float(value):g}; "
                         f"features must be finite and within float32's range (|x| <= {limit:.4g})")


def check(table: Table, features_file: Path, labels_file: Path, coding: str) -> None:
    """Row counts, ids, finite features and the label coding; labels recoded to 0/1 uint8."""
    labels = table.labels
    if scipy.sparse.issparse(labels):
        labels = scipy.sparse.csr_matrix(labels).toarray()
    n = table.features.shape[0]
    if labels.shape[0] != n:
        raise ValueError(f"{features_file} has {n} rows but {labels_file} has {labels.shape[0]} label rows; "
                         "they must describe the same rows")
    check_rows(table, features_file)
    table.labels, table.known = decode(labels, coding, labels_file, table.ids, table.classes)
    if not table.classes:
        table.classes = [f"label_{j}" for j in range(labels.shape[1])]


def provenance(cfg, sources: list[Path]) -> dict:
    """What an import is made from: the table keys of [dataset] and the files' hashes."""
    keys = ("adapter", "features", "labels", "n_labels", "labels_first", "label_columns", "id_column",
            "features_key", "labels_key", "label_coding", "header")
    return {**{k: v for k, v in configs.section(cfg, "dataset").items() if k.split(".")[1] in keys},
            "sources": {str(p): artifacts.file_sha256(p) for p in sources}}


def import_features(cfg, force: bool = False) -> Path:
    """Write the config's imported store (features and labels) unless it is done; its path."""
    if cfg.dataset.adapter != "table":
        raise ValueError(f"{cfg.source}: dataset.adapter = {cfg.dataset.adapter!r}; the import reads "
                         "adapter = 'table' datasets (features and labels from files)")
    out = store.path(cfg)
    sources = [_require(p) for p in (cfg.dataset.features, cfg.dataset.labels) if p]
    recipe = provenance(cfg, sources)
    with artifacts.claim(out):
        if not artifacts.must_make(out, recipe, force):
            print(f"{out}: already done (use --force to redo)")
            return out
        table, files = read_table(cfg)
        sparse = scipy.sparse.issparse(table.features)
        attrs = {"backbone": "imported", "imported": True, "source": str(files[0]),
                 "source_sha256": recipe["sources"][str(files[0])], "config": configs.to_json(cfg),
                 "labels_source": str(files[-1]), "labels_sha256": recipe["sources"][str(files[-1])],
                 "source_files": json.dumps({str(p): artifacts.file_identity(p, recipe["sources"][str(p)])
                                             for p in sources})}
        artifacts.writable(out.parent)
        store.write_table(out, table.ids, table.features, table.labels, table.classes, attrs, recipe,
                          table.known)
    density = table.features.nnz / np.prod(table.features.shape) if sparse else None
    print(f"{out}: {len(table.ids)} rows x {table.features.shape[1]} features"
          + (f" (sparse, {100 * density:.1f}% non-zero)" if sparse else "")
          + f", {table.labels.shape[1]} labels, {table.labels.sum(1).mean():.2f} positives per row")
    return out

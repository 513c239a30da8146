"""Experiment configuration: TOML files validated into frozen dataclasses.

Every default lives here, once. A config file only names what differs from these defaults.
`load(path)` checks every key, type and value range and raises `ValueError` naming the file,
the key and what is allowed; it fills [extract]'s empty keys from the backbone's defaults
(`configs.backbones`) and applies `heads.paper_exact`, so the loaded config names every setting
its outputs depend on. Method names and parameters are checked against their registry by
`heads.methods.check` (every stage CLI from heads on, and `make check` before any stage).
Each stage records `to_json(cfg)` and a provenance of the keys it depends on with its output.
"""
from __future__ import annotations

import dataclasses
import json
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path

from . import backbones

DEFAULT_CONFIG = Path(__file__).resolve().parent / "demo.toml"


class ConfigTypeError(TypeError, ValueError):
    """A config value of the wrong type: a TypeError, reported like every user error (ValueError)."""
ADAPTERS = ("coco", "nuswide", "csv", "synthetic", "table")
# label codings (`features.labels`): positive / negative[/ unknown] values of a label file
LABEL_CODINGS = ("0/1", "-1/1", "1/0/-1", "1/-1/0", "1/0/nan")


@dataclass(frozen=True)
class Experiment:
    name: str = "demo"
    seed: int = 0  # folds, hiding, initialisation; also the synthetic data's seed
    seeds: tuple[int, ...] = ()  # repeats: one splits.h5 and head grid per seed under seed<s>/; () = [seed]
    runs_dir: str = "runs"


@dataclass(frozen=True)
class Dataset:
    adapter: str = "synthetic"  # coco | nuswide | csv | synthetic | table
    root: str = ""  # image folder (coco, nuswide, csv) or where synthetic data is written
    annotations: str = ""  # coco: instances_*.json; csv: the labels file; nuswide: its root
    min_labels: int = 3
    n_images: int = 2400  # synthetic only
    image_size: int = 96  # synthetic only
    difficulty: float = 0.0  # synthetic only: 0 (clean drawings) to 1 (small, dim, noisy, with confusers)
    path_column: str = "path"  # csv only
    positive_column: str = ""  # csv: a column listing each row's positive class ids (OpenImages' data.csv: label)
    negative_column: str = ""  # csv: a column listing its verified negative class ids (label_neg); the rest unknown
    allow_outside_root: bool = False  # csv / coco / nuswide: accept image paths that leave `root` (.., links)
    natural_missing_rate: float = 0.0  # share of true positives the annotations lack (0: complete)
    # table: precomputed features and labels from files, no images (python -m features import)
    features: str = ""  # .npy / .npz / .csv / .tsv / .arff / .mat / .h5
    labels: str = ""  # a separate labels file; "" = in the features file (ARFF, MATLAB, CSV, HDF5)
    n_labels: int = 0  # how many attributes / columns are labels (0: all of `labels`, or MEKA's -C)
    labels_first: bool = False  # the labels are the first n_labels attributes / columns (MEKA)
    label_columns: tuple[str, ...] = ()  # CSV: the label columns by name (instead of n_labels)
    id_column: str = ""  # CSV: a column of row keys ("" = the row number)
    features_key: str = ""  # .mat / .npz / .h5: the features' key
    labels_key: str = ""  # .mat / .npz / .h5: the labels' key
    label_coding: str = "0/1"  # 0/1 | -1/1, or three states (positive/negative/unknown): 1/0/-1 | 1/-1/0 | 1/0/nan
    header: bool = True  # CSV / TSV: the first line names the columns


@dataclass(frozen=True)
class Splits:
    n_folds: int = 4
    ratios: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75)
    single_positive: bool = False  # also the single-positive protocol: one observed positive per training row
    # partial labels (three states: positive, verified negative, unknown), simulated on the training rows:
    partial: tuple[float, ...] = ()  # keep this share of each row's labels, positives and negatives alike (Durand'19)
    fpc: tuple[int, ...] = ()  # keep this many positives and as many negatives per class (CSL's FPC)
    rps: tuple[float, ...] = ()  # each label unknown with this probability (CSL's RPS)
    validation: float = 0.0  # share of each fold's training rows held out; 0 = off
    import_dir: str = ""  # the paper's published splits, imported instead of made


@dataclass(frozen=True)
class Extract:
    backbone: str = "demo_cnn"
    endpoint: str = ""  # "" = the backbone's default
    image_size: int = 0  # 0 = the backbone's default
    preprocessing: str = ""  # "" = the backbone's own; paper | inception | vgg
    pooling: str = ""  # "" = the backbone's own; none (flatten, as the paper) | avg | max
    dtype: str = "float16"
    batch_size: int = 32
    chunk_rows: int = 256  # rows committed to HDF5 at once (the resume granularity)
    checkpoint: str = ""  # local checkpoint prefix; "" = the registry's official one
    cache_dir: str = ""  # "" = ~/.cache/cbwce/checkpoints
    max_invalid_share: float = 1.0  # fail when more rows than this share are unreadable (1: only when all are)
    pretrain_images: int = 3000  # demo_cnn pretraining set size
    pretrain_epochs: int = 6


class GridTables(dict):
    """[heads.search.params.<method>] parameter = [values]: the grids a search tries."""


@dataclass(frozen=True)
class Search:
    """[heads.search]: every method's learning rates and declared parameter grids trained as heads
    of one stack, the winner per (seed, fold, protocol, method) chosen on validation rows. The
    table being present turns it on (`enabled = false` keeps it written but off)."""
    enabled: bool = False
    lr: tuple[float, ...] = ()  # () = heads.methods.LR_FACTORS x heads.learning_rate
    methods: tuple[str, ...] = ()  # the methods searched; () = every method of heads.methods
    select: str = "observed"  # observed: validation rows' observed labels (what a user has) | clean: their truth (an oracle)
    params: GridTables = field(default_factory=GridTables)  # overrides of the registry's grids


@dataclass(frozen=True)
class Heads:
    head: str = "paper_mlp"  # paper_mlp | linear
    methods: tuple[str, ...] = ("ce", "ignore_missing", "confidence")
    hidden: tuple[int, ...] = (2048, 1024, 256)
    optimizer: str = "adadelta"  # adadelta | adam | sgd
    learning_rate: float = 0.1
    lr_decay: float = 0.95  # x lr_decay every decay_steps steps (staircase); 1 = constant (the notebooks' in effect)
    decay_steps: int = 1000
    batch_size: int = 32
    epochs: int = 20
    n_jobs: int = 1
    patience: int = 0  # early stopping on validation loss; 0 = off
    features: str = "auto"  # ram | stream | auto (ram when the fold's features fit in free memory)
    shuffle_buffer: int = 65536  # stream: rows read at once; an epoch shuffles windows, then rows in each
    params: dict = field(default_factory=dict)  # [heads.params.<method>] parameter = value (heads.methods)
    paper_exact: bool = False  # the notebooks' training where it differs from ours (PAPER_EXACT)
    standardize: bool = False  # heads on stored features read each z-scored by the fold's training rows; a model folds it in
    scores: str = ""  # Score-PL's score file: a CSV of row keys and one column per class, or an (N, L) array
    search: Search = field(default_factory=Search)  # [heads.search]


@dataclass(frozen=True)
class Finetune:
    """End-to-end training of [extract]'s backbone (endpoint, pooling, checkpoint) with [heads]'
    head on top, from the images, per fold x ratio x method."""
    seeds: tuple[int, ...] = ()  # () = every seed of [experiment]; e.g. [0]: the heads repeat, finetune runs once
    folds: tuple[int, ...] = ()  # 1-based; () = every fold
    ratios: tuple[float, ...] = ()  # () = every two-state protocol of the splits (the ratios, single positive)
    methods: tuple[str, ...] = ("ce", "ignore_missing", "confidence")
    trainable_from: str = ""  # "" = the whole backbone; else the first trainable block, e.g. Mixed_7a
    optimizer: str = "adam"  # adam | momentum | sgd
    backbone_lr: float = 1e-4
    head_lr: float = 1e-3
    batch_size: int = 32
    epochs: int = 5
    batch_norm: str = "train"  # train: batch statistics in trainable blocks | frozen: inference mode throughout
    crop: float = 0.875  # random crop of this share of each side, resized back; 1 = no crop
    flip: bool = True  # random left-right flip


@dataclass(frozen=True)
class Model:
    """[model]: the final model of `python -m model fit` (`model.final`): the method trained on
    every labelled row, with a validation share, written as a model directory (`model.directory`)."""
    method: str = "confidence"  # a registered method, or "best": the study's mAP leader at `protocol`
    protocol: str = ""  # "best" reads this protocol's leaderboard column; "" = the ratio nearest the labels' missing share
    hide: float = 0.0  # share of each row's positives hidden before training (to measure suggestions); 0 = as observed
    validation: float = 0.1  # share of the rows held out: the search's selection, early stopping, thresholds
    folds: int = 4  # out-of-fold predictions of every labelled row, for `model suggest`; 0 = none
    dir: str = ""  # "" = runs/<name>/model


@dataclass(frozen=True)
class Analysis:
    top_classes: int = 15
    figure_ratio: float = 0.5


@dataclass(frozen=True)
class Cluster:
    """Where stages run their tasks (`runtime.cluster`)."""
    scheduler: str = ""  # "" = processes on this machine (joblib); "local" = a Dask LocalCluster; or tcp://host:port
    workers: int = 2  # "local": worker processes (one per GPU on a many-GPU machine)
    retries: int = 0  # times Dask reruns a task whose worker died (0: report it, the rerun redoes it)
    extract_shards: int = 0  # extraction tasks (contiguous shards); 0 = one per worker


@dataclass(frozen=True)
class Config:
    experiment: Experiment = field(default_factory=Experiment)
    dataset: Dataset = field(default_factory=Dataset)
    splits: Splits = field(default_factory=Splits)
    extract: Extract = field(default_factory=Extract)
    heads: Heads = field(default_factory=Heads)
    finetune: Finetune = field(default_factory=Finetune)
    model: Model = field(default_factory=Model)
    analysis: Analysis = field(default_factory=Analysis)
    cluster: Cluster = field(default_factory=Cluster)
    source: str = ""  # the file this was read from

    @property
    def run_dir(self) -> Path:
        return Path(self.experiment.runs_dir) / self.experiment.name

    @property
    def model_dir(self) -> Path:
        """Where `python -m model fit` writes the final model: [model] dir, else runs/<name>/model."""
        return Path(self.model.dir) if self.model.dir else self.run_dir / "model"

    @property
    def seeds(self) -> tuple[int, ...]:
        return self.experiment.seeds or (self.experiment.seed,)

    def seed_dir(self, seed: int) -> Path:
        """Where a seed's splits.h5, heads/ and finetune/ live: runs/<name>/ for a config without
        `seeds` (one seed, today's layout), runs/<name>/seed<s>/ with them."""
        return self.run_dir / f"seed{seed}" if self.experiment.seeds else self.run_dir


# heads.paper_exact: the published notebooks' training where it differs from our defaults
# (docs/notebooks.md, "What the published notebooks computed"): the rate stays at 0.1 (the decay they
# define is never applied) and features are Conv2d_7b_1x1 at 224 x 224, flattened. The third
# difference, positive weights from fold 1's full labels, is applied by the heads.
PAPER_EXACT = {"heads.learning_rate": 0.1, "heads.lr_decay": 1.0, "extract.pooling": "none"}
PAPER_EXACT_IRV2 = {"extract.endpoint": "Conv2d_7b_1x1", "extract.image_size": 224, "extract.preprocessing": "paper"}


def _coerce(value, kind, where: str):
    """`value` as the annotated `kind`, or a ValueError naming `where` and what is allowed."""
    if kind is dict:
        return _parameter_tables(value, where)
    if kind is GridTables:
        return _grid_tables(value, where)
    if dataclasses.is_dataclass(kind):
        if not isinstance(value, dict):
            raise ConfigTypeError(f"{where}: expected a table, got {value!r}")
        return _section(kind, {"enabled": True, **value}, where)
    origin = typing.get_origin(kind)
    if origin is tuple:
        item = typing.get_args(kind)[0]
        if not isinstance(value, list):
            raise ConfigTypeError(f"{where}: expected a list of {item.__name__}, got {value!r}")
        return tuple(_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigTypeError(f"{where}: expected {kind.__name__}, got {type(value).__name__} {value!r}")
    return value


def _parameter_tables(value, where: str) -> dict:
    """{name: {parameter: number}}, as [heads.params.<name>] tables give it."""
    if not isinstance(value, dict):
        raise ConfigTypeError(f"{where}: expected tables [heads.params.<method>], got {value!r}")
    out = {}
    for name, table in value.items():
        if not isinstance(table, dict):
            raise ConfigTypeError(f"{where}.{name}: expected a table of parameter = number, got {table!r}")
        out[name] = {key: _coerce(number, float, f"{where}.{name}.{key}") for key, number in table.items()}
    return out


def _grid_tables(value, where: str) -> GridTables:
    """{name: {parameter: (numbers, ...)}}, as [heads.search.params.<name>] tables give it."""
    if not isinstance(value, dict):
        raise ConfigTypeError(f"{where}: expected tables [heads.search.params.<method>], got {value!r}")
    out = GridTables()
    for name, table in value.items():
        if not isinstance(table, dict):
            raise ConfigTypeError(f"{where}.{name}: expected a table of parameter = [values], got {table!r}")
        out[name] = {key: _coerce(values, tuple[float, ...], f"{where}.{name}.{key}") for key, values in table.items()}
        for key, values in out[name].items():
            if not values:
                raise ValueError(f"{where}.{name}.{key} is empty; list at least one value")
    return out


def _section(cls, table: dict, where: str):
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(table) - known)
    if unknown:
        raise ValueError(f"{where}: unknown key {unknown[0]!r}; allowed: {', '.join(sorted(known))}")
    return cls(**{k: _coerce(v, hints[k], f"{where}.{k}") for k, v in table.items()})


def from_dict(raw: dict, source: str = "<dict>") -> Config:
    sections = {f.name: f.type for f in dataclasses.fields(Config) if f.name != "source"}
    hints = typing.get_type_hints(Config)
    unknown = sorted(set(raw) - set(sections))
    if unknown:
        raise ValueError(f"{source}: unknown section [{unknown[0]}]; allowed: {', '.join(sections)}")
    parts = {}
    for name in sections:
        table = raw.get(name, {})
        if not isinstance(table, dict):
            raise ConfigTypeError(f"{source}: [{name}] must be a table, got {table!r}")
        parts[name] = _section(hints[name], table, f"{source} [{name}]")
    cfg = Config(**parts, source=source)
    _check_values(cfg)
    cfg = _paper_exact(cfg, {f"{s}.{k}" for s, table in raw.items() if isinstance(table, dict) for k in table})
    return _resolve_backbone(cfg)


def _resolve_backbone(cfg: Config) -> Config:
    """[extract] with every empty key filled from the backbone's defaults."""
    ex = cfg.extract
    spec = backbones.defaults(ex.backbone)
    return dataclasses.replace(cfg, extract=dataclasses.replace(
        ex, endpoint=ex.endpoint or spec.endpoint, image_size=ex.image_size or spec.image_size,
        preprocessing=ex.preprocessing or spec.preprocessing, pooling=ex.pooling or spec.pooling))


def _paper_exact(cfg: Config, given: set[str]) -> Config:
    """Apply heads.paper_exact (PAPER_EXACT); a key the file sets to another value is an error."""
    if not cfg.heads.paper_exact:
        return cfg
    fixed = dict(PAPER_EXACT)
    if cfg.extract.backbone == "inception_resnet_v2":
        fixed.update(PAPER_EXACT_IRV2)
    for key, value in fixed.items():
        section, name = key.split(".")
        current = getattr(getattr(cfg, section), name)
        if key in given and current != value:
            raise ValueError(f"{cfg.source}: heads.paper_exact sets {key} = {value!r} (the notebooks'), "
                             f"but the file sets {current!r}; remove one of them")
    for section in ("heads", "extract"):
        values = {k.split(".")[1]: v for k, v in fixed.items() if k.startswith(section + ".")}
        cfg = dataclasses.replace(cfg, **{section: dataclasses.replace(getattr(cfg, section), **values)})
    return cfg


def _check_choices(cfg: Config) -> None:
    allowed = {
        "dataset.adapter": (cfg.dataset.adapter, set(ADAPTERS)),
        "dataset.label_coding": (cfg.dataset.label_coding, set(LABEL_CODINGS)),
        "extract.backbone": (cfg.extract.backbone, set(backbones.BACKBONES)),
        "extract.pooling": (cfg.extract.pooling, {"", *backbones.POOLING}),
        "extract.preprocessing": (cfg.extract.preprocessing, {"", *backbones.PREPROCESSING}),
        "extract.dtype": (cfg.extract.dtype, {"float16", "float32"}),
        "heads.head": (cfg.heads.head, {"paper_mlp", "linear"}),
        "heads.optimizer": (cfg.heads.optimizer, {"adadelta", "adam", "sgd"}),
        "heads.features": (cfg.heads.features, {"auto", "ram", "stream"}),
        "heads.search.select": (cfg.heads.search.select, {"observed", "clean"}),
        "finetune.optimizer": (cfg.finetune.optimizer, {"adam", "momentum", "sgd"}),
        "finetune.batch_norm": (cfg.finetune.batch_norm, {"train", "frozen"}),
    }
    for key, (value, options) in allowed.items():
        if value not in options:
            shown = ", ".join(repr(o) if o == "" else o for o in sorted(options))
            raise ValueError(f"{cfg.source}: {key} = {value!r}; allowed: {shown}")
    scheduler = cfg.cluster.scheduler
    if scheduler not in ("", "local") and "://" not in scheduler:
        raise ValueError(f"{cfg.source}: cluster.scheduler = {scheduler!r}; allowed: '' (this machine), "
                         "'local' (a Dask LocalCluster) or a scheduler address such as tcp://host:8786")


def _check_ranges(cfg: Config) -> None:
    """Every numeric setting inside its range: (key, value, test, what is allowed)."""
    at_least_one = "must be >= 1"
    rules = [
        ("splits.n_folds", cfg.splits.n_folds, lambda v: v >= 2, "need at least 2 folds"),
        ("splits.validation", cfg.splits.validation, lambda v: 0 <= v < 1, "must lie in [0, 1)"),
        ("dataset.natural_missing_rate", cfg.dataset.natural_missing_rate, lambda v: 0 <= v < 1, "must lie in [0, 1)"),
        ("dataset.min_labels", cfg.dataset.min_labels, lambda v: v >= 0, "must be >= 0"),
        ("dataset.n_images", cfg.dataset.n_images, lambda v: v >= cfg.splits.n_folds, "must be >= splits.n_folds"),
        ("dataset.image_size", cfg.dataset.image_size, lambda v: v >= 8, "must be >= 8"),
        ("dataset.difficulty", cfg.dataset.difficulty, lambda v: 0 <= v <= 1, "must lie in [0, 1]"),
        ("dataset.n_labels", cfg.dataset.n_labels, lambda v: v >= 0, "must be >= 0"),
        ("extract.image_size", cfg.extract.image_size, lambda v: v == 0 or v >= 8, "must be 0 (the backbone's) or >= 8"),
        ("extract.batch_size", cfg.extract.batch_size, lambda v: v >= 1, at_least_one),
        ("extract.chunk_rows", cfg.extract.chunk_rows, lambda v: v >= 1 and v % cfg.extract.batch_size == 0,
         "must be a multiple of extract.batch_size (batches stay aligned across resumes)"),
        ("extract.max_invalid_share", cfg.extract.max_invalid_share, lambda v: 0 <= v <= 1, "must lie in [0, 1]"),
        ("extract.pretrain_images", cfg.extract.pretrain_images, lambda v: v >= 1, at_least_one),
        ("extract.pretrain_epochs", cfg.extract.pretrain_epochs, lambda v: v >= 1, at_least_one),
        ("heads.learning_rate", cfg.heads.learning_rate, lambda v: v > 0, "must be > 0"),
        ("heads.lr_decay", cfg.heads.lr_decay, lambda v: 0 < v <= 1, "must lie in (0, 1]"),
        ("heads.decay_steps", cfg.heads.decay_steps, lambda v: v >= 1, at_least_one),
        ("heads.batch_size", cfg.heads.batch_size, lambda v: v >= 1, at_least_one),
        ("heads.epochs", cfg.heads.epochs, lambda v: v >= 1, at_least_one),
        ("heads.n_jobs", cfg.heads.n_jobs, lambda v: v >= 1, at_least_one),
        ("heads.patience", cfg.heads.patience, lambda v: v >= 0, "must be >= 0"),
        ("heads.hidden", cfg.heads.hidden, lambda v: all(w >= 1 for w in v), "every width must be >= 1"),
        ("heads.shuffle_buffer", cfg.heads.shuffle_buffer, lambda v: v >= cfg.heads.batch_size,
         f"must be >= heads.batch_size = {cfg.heads.batch_size}"),
        ("finetune.backbone_lr", cfg.finetune.backbone_lr, lambda v: v > 0, "must be > 0"),
        ("finetune.head_lr", cfg.finetune.head_lr, lambda v: v > 0, "must be > 0"),
        ("finetune.batch_size", cfg.finetune.batch_size, lambda v: v >= 1, at_least_one),
        ("finetune.epochs", cfg.finetune.epochs, lambda v: v >= 1, at_least_one),
        ("finetune.crop", cfg.finetune.crop, lambda v: 0 < v <= 1, "must lie in (0, 1]"),
        ("model.hide", cfg.model.hide, lambda v: 0 <= v < 1, "must lie in [0, 1)"),
        ("model.validation", cfg.model.validation, lambda v: 0 < v < 1,
         "must lie in (0, 1): the model's thresholds and selection need validation rows"),
        ("model.folds", cfg.model.folds, lambda v: v == 0 or v >= 2, "must be 0 (no out-of-fold predictions) or >= 2"),
        ("analysis.top_classes", cfg.analysis.top_classes, lambda v: v >= 1, at_least_one),
        ("cluster.workers", cfg.cluster.workers, lambda v: v >= 1, at_least_one),
        ("cluster.retries", cfg.cluster.retries, lambda v: v >= 0, "must be >= 0"),
        ("cluster.extract_shards", cfg.cluster.extract_shards, lambda v: v >= 0, "must be >= 0"),
    ]
    for key, value, ok, allowed in rules:
        if not ok(value):
            raise ValueError(f"{cfg.source}: {key} = {value!r}; {allowed}")


def _check_lists(cfg: Config) -> None:
    """Grids: non-empty where a stage needs them, without repeats, inside the splits' grid."""
    where = cfg.source
    lists = {"experiment.seeds": cfg.experiment.seeds, "splits.ratios": cfg.splits.ratios,
             "heads.methods": cfg.heads.methods, "finetune.methods": cfg.finetune.methods,
             "finetune.seeds": cfg.finetune.seeds, "finetune.folds": cfg.finetune.folds,
             "finetune.ratios": cfg.finetune.ratios,
             "dataset.label_columns": cfg.dataset.label_columns}
    for key, values in lists.items():
        repeated = sorted({v for v in values if values.count(v) > 1})
        if repeated:
            raise ValueError(f"{where}: {key} names {repeated[0]!r} twice; each may appear once")
    search = cfg.heads.search
    for rate in search.lr:
        if not rate > 0:
            raise ValueError(f"{where}: heads.search.lr holds {rate!r}; every learning rate must be > 0")
    for key, values in (("heads.search.lr", search.lr), ("heads.search.methods", search.methods)):
        repeated = sorted({v for v in values if values.count(v) > 1})
        if repeated:
            raise ValueError(f"{where}: {key} names {repeated[0]!r} twice; each may appear once")
    for name in (*search.methods, *search.params):
        if name not in cfg.heads.methods:
            raise ValueError(f"{where}: [heads.search] names method {name!r}, which is not in heads.methods")
    for key in ("heads.methods", "finetune.methods"):
        if not lists[key]:
            raise ValueError(f"{where}: {key} is empty; name at least one method")
    sp = cfg.splits
    if not (sp.ratios or sp.single_positive or sp.partial or sp.fpc or sp.rps):
        raise ValueError(f"{where}: splits.ratios is empty and splits.single_positive is off: no protocol to train")
    for key, values, ok, allowed in (("splits.partial", sp.partial, lambda v: 0 < v <= 1, "in (0, 1]"),
                                     ("splits.fpc", sp.fpc, lambda v: v >= 1, ">= 1"),
                                     ("splits.rps", sp.rps, lambda v: 0 <= v < 1, "in [0, 1)")):
        for value in values:
            if not ok(value):
                raise ValueError(f"{where}: {key} holds {value}; each must be {allowed}")
        repeated = sorted({v for v in values if values.count(v) > 1})
        if repeated:
            raise ValueError(f"{where}: {key} names {repeated[0]!r} twice; each may appear once")
    for r in cfg.splits.ratios:
        if not 0 <= r < 1:
            raise ValueError(f"{where}: splits.ratios holds {r}; each ratio must lie in [0, 1)")
    for r in cfg.finetune.ratios:
        if not any(abs(r - s) < 1e-9 for s in cfg.splits.ratios):
            raise ValueError(f"{where}: finetune.ratios holds {r}, which is not in splits.ratios "
                             f"{list(cfg.splits.ratios)}")
    for seed in cfg.finetune.seeds:
        if seed not in cfg.seeds:
            raise ValueError(f"{where}: finetune.seeds holds {seed}, which is not among the experiment's seeds "
                             f"{list(cfg.seeds)}")
    for k in cfg.finetune.folds:
        if not 1 <= k <= cfg.splits.n_folds:
            raise ValueError(f"{where}: finetune.folds holds {k}; folds are 1..{cfg.splits.n_folds}")


FORBIDDEN_IN_NAMES = set('<>:"/\\|?*')  # what common file systems refuse in a name, and the separators


def _check_name(cfg: Config) -> None:
    """experiment.name is one folder under runs_dir: no separators, no '.' or '..', no absolute
    path, no character a file system forbids or a control character."""
    name = cfg.experiment.name
    bad = sorted({c for c in name if c in FORBIDDEN_IN_NAMES or ord(c) < 32})
    if not name or name in (".", "..") or bad or name != name.strip():
        shown = f" (it holds {''.join(bad)!r})" if bad else ""
        raise ValueError(f"{cfg.source}: experiment.name = {name!r}{shown}; it must be one folder name under "
                         f"experiment.runs_dir: letters, digits, '.', '-', '_' (no '/', '..', or leading or trailing "
                         "spaces)")


def _check_dataset(cfg: Config) -> None:
    """The keys each adapter needs (their paths are checked when a stage reads them)."""
    ds, where = cfg.dataset, cfg.source
    needs = {"coco": ("annotations", "root"), "nuswide": ("annotations", "root"), "csv": ("annotations",),
             "table": ("features",), "synthetic": ()}[ds.adapter]
    for key in needs:
        if not getattr(ds, key):
            raise ValueError(f"{where}: dataset.adapter = {ds.adapter!r} needs dataset.{key}")
    if bool(ds.positive_column) != bool(ds.negative_column):
        raise ValueError(f"{where}: dataset.positive_column and dataset.negative_column come together (OpenImages' "
                         "label and label_neg)")
    if ds.positive_column and ds.adapter != "csv":
        raise ValueError(f"{where}: dataset.positive_column lists class ids in a csv adapter's file; not with "
                         f"adapter = {ds.adapter!r}")
    if ds.adapter == "table" and cfg.splits.import_dir:
        raise ValueError(f"{where}: splits.import_dir imports the paper's splits of images; not with the table adapter")


def _check_values(cfg: Config) -> None:
    _check_choices(cfg)
    _check_ranges(cfg)
    _check_lists(cfg)
    _check_name(cfg)
    _check_dataset(cfg)


def with_scheduler(cfg: Config, scheduler: str | None) -> Config:
    """The config with [cluster] scheduler set from the command line (`--scheduler`), checked."""
    if scheduler is None:
        return cfg
    cfg = dataclasses.replace(cfg, cluster=dataclasses.replace(cfg.cluster, scheduler=scheduler))
    _check_choices(cfg)
    return cfg


def load(path: str | Path | None = None) -> Config:
    """Read and validate a TOML config (default: configs/demo.toml)."""
    path = Path(path) if path else DEFAULT_CONFIG
    if not path.is_file():
        raise ValueError(f"config file {path} does not exist; the shipped ones are in configs/")
    with open(path, "rb") as fh:
        try:
            raw = tomllib.load(fh)
        except tomllib.TOMLDecodeError as err:
            raise ValueError(f"{path}: not valid TOML: {err}") from err
    return from_dict(raw, source=str(path))


def require_paths(cfg: Config, *keys: str) -> None:
    """Raise ValueError if a `section.key` path of the config does not exist."""
    for key in keys:
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        if not value or not Path(value).exists():
            raise ValueError(f"{cfg.source}: {key} = {value!r} does not exist; "
                             f"point it at the {name} of your data")


def to_json(cfg: Config) -> str:
    """The resolved config as JSON, written beside every output."""
    return json.dumps(dataclasses.asdict(cfg), sort_keys=True)


# Keys added after runs were made: left out of provenance at these values, so those runs stay valid.
SILENT_DEFAULTS = {"heads.standardize": False}


def section(cfg: Config, name: str, exclude: tuple[str, ...] = ()) -> dict:
    """A config section as flat provenance entries {"name.key": value} (SILENT_DEFAULTS left out)."""
    entries = {f"{name}.{key}": value for key, value in dataclasses.asdict(getattr(cfg, name)).items()
               if key not in exclude}
    return {key: value for key, value in entries.items()
            if key not in SILENT_DEFAULTS or value != SILENT_DEFAULTS[key]}

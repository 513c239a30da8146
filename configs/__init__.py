"""Experiment configuration: TOML files validated into frozen dataclasses.

Every default lives here, once. A config file only names what differs from these defaults.
`load(path)` checks every key and type and raises `ValueError` naming the file, the key and
what is allowed; `require_paths` checks, when a stage needs them, that input paths exist.
Each stage writes `to_json(cfg)` beside its output.
"""
from __future__ import annotations

import dataclasses
import json
import sys
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_CONFIG = Path(__file__).resolve().parent / "demo.toml"


@dataclass(frozen=True)
class Experiment:
    name: str = "demo"
    seed: int = 0
    runs_dir: str = "runs"


@dataclass(frozen=True)
class Dataset:
    adapter: str = "synthetic"  # coco | nuswide | csv | synthetic
    root: str = ""  # image folder (coco, nuswide, csv) or where synthetic data is written
    annotations: str = ""  # coco: instances_*.json; csv: the labels file; nuswide: its root
    min_labels: int = 3
    n_images: int = 2400  # synthetic only
    image_size: int = 96  # synthetic only
    path_column: str = "path"  # csv only
    natural_missing_rate: float = 0.0  # share of true positives the annotations lack (0: complete)


@dataclass(frozen=True)
class Splits:
    n_folds: int = 4
    ratios: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75)
    validation: float = 0.0  # share of each fold's training rows held out; 0 = off
    import_dir: str = ""  # the paper's published splits, imported instead of made


@dataclass(frozen=True)
class Extract:
    backbone: str = "demo_cnn"
    endpoint: str = ""  # "" = the backbone's default
    image_size: int = 0  # 0 = the backbone's default
    preprocessing: str = ""  # "" = the backbone's own; paper | inception | vgg
    pooling: str = "none"  # none (flatten, as the paper) | avg | max
    dtype: str = "float16"
    batch_size: int = 32
    chunk_rows: int = 256  # rows committed to HDF5 at once (the resume granularity)
    checkpoint: str = ""  # local checkpoint prefix; "" = the registry's official one
    cache_dir: str = ""  # "" = ~/.cache/cbwce/checkpoints
    pretrain_images: int = 3000  # demo_cnn pretraining set size
    pretrain_epochs: int = 6


@dataclass(frozen=True)
class Heads:
    head: str = "paper_mlp"  # paper_mlp | linear
    methods: tuple[str, ...] = ("ce", "ignore_missing", "confidence")
    hidden: tuple[int, ...] = (2048, 1024, 256)
    optimizer: str = "adadelta"  # adadelta | adam | sgd
    learning_rate: float = 0.1
    lr_decay: float = 0.95
    decay_steps: int = 1000
    batch_size: int = 32
    epochs: int = 20
    n_jobs: int = 1
    patience: int = 0  # early stopping on validation loss; 0 = off
    features: str = "auto"  # ram | stream | auto (ram when the fold's features fit in free memory)
    shuffle_buffer: int = 65536  # stream: rows read at once; an epoch shuffles windows, then rows in each


@dataclass(frozen=True)
class Finetune:
    """End-to-end training of [extract]'s backbone (endpoint, pooling, checkpoint) with [heads]'
    head on top, from the images, per fold x ratio x method."""
    folds: tuple[int, ...] = ()  # 1-based; () = every fold
    ratios: tuple[float, ...] = ()  # () = splits.ratios
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
class Analysis:
    top_classes: int = 15
    figure_ratio: float = 0.5


@dataclass(frozen=True)
class Config:
    experiment: Experiment = field(default_factory=Experiment)
    dataset: Dataset = field(default_factory=Dataset)
    splits: Splits = field(default_factory=Splits)
    extract: Extract = field(default_factory=Extract)
    heads: Heads = field(default_factory=Heads)
    finetune: Finetune = field(default_factory=Finetune)
    analysis: Analysis = field(default_factory=Analysis)
    source: str = ""  # the file this was read from

    @property
    def run_dir(self) -> Path:
        return Path(self.experiment.runs_dir) / self.experiment.name


def _coerce(value, kind, where: str):
    """`value` as the annotated `kind`, or a ValueError naming `where` and what is allowed."""
    origin = typing.get_origin(kind)
    if origin is tuple:
        item = typing.get_args(kind)[0]
        if not isinstance(value, list):
            raise ValueError(f"{where}: expected a list of {item.__name__}, got {value!r}")
        return tuple(_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError(f"{where}: expected {kind.__name__}, got {type(value).__name__} {value!r}")
    return value


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
            raise TypeError(f"{source}: [{name}] must be a table, got {table!r}")
        parts[name] = _section(hints[name], table, f"{source} [{name}]")
    cfg = Config(**parts, source=source)
    _check_values(cfg)
    return cfg


def _check_values(cfg: Config) -> None:
    where = cfg.source
    allowed = {
        "dataset.adapter": (cfg.dataset.adapter, {"coco", "nuswide", "csv", "synthetic"}),
        "extract.pooling": (cfg.extract.pooling, {"none", "avg", "max"}),
        "extract.dtype": (cfg.extract.dtype, {"float16", "float32"}),
        "heads.head": (cfg.heads.head, {"paper_mlp", "linear"}),
        "heads.optimizer": (cfg.heads.optimizer, {"adadelta", "adam", "sgd"}),
        "heads.features": (cfg.heads.features, {"auto", "ram", "stream"}),
        "finetune.optimizer": (cfg.finetune.optimizer, {"adam", "momentum", "sgd"}),
        "finetune.batch_norm": (cfg.finetune.batch_norm, {"train", "frozen"}),
    }
    for key, (value, options) in allowed.items():
        if value not in options:
            raise ValueError(f"{where}: {key} = {value!r}; allowed: {', '.join(sorted(options))}")
    if cfg.splits.n_folds < 2:
        raise ValueError(f"{where}: splits.n_folds = {cfg.splits.n_folds}; need at least 2 folds")
    for r in cfg.splits.ratios:
        if not 0 <= r < 1:
            raise ValueError(f"{where}: splits.ratios holds {r}; each ratio must lie in [0, 1)")
    if not 0 <= cfg.dataset.natural_missing_rate < 1:
        raise ValueError(f"{where}: dataset.natural_missing_rate = {cfg.dataset.natural_missing_rate}; "
                         "must lie in [0, 1)")
    if not 0 <= cfg.splits.validation < 1:
        raise ValueError(f"{where}: splits.validation = {cfg.splits.validation}; must lie in [0, 1)")
    if cfg.heads.shuffle_buffer < cfg.heads.batch_size:
        raise ValueError(f"{where}: heads.shuffle_buffer = {cfg.heads.shuffle_buffer} is smaller than "
                         f"heads.batch_size = {cfg.heads.batch_size}")
    if not 0 < cfg.finetune.crop <= 1:
        raise ValueError(f"{where}: finetune.crop = {cfg.finetune.crop}; must lie in (0, 1]")
    for r in cfg.finetune.ratios:
        if not any(abs(r - s) < 1e-9 for s in cfg.splits.ratios):
            raise ValueError(f"{where}: finetune.ratios holds {r}, which is not in splits.ratios "
                             f"{list(cfg.splits.ratios)}")
    for k in cfg.finetune.folds:
        if not 1 <= k <= cfg.splits.n_folds:
            raise ValueError(f"{where}: finetune.folds holds {k}; folds are 1..{cfg.splits.n_folds}")
    if cfg.dataset.min_labels < 0:
        raise ValueError(f"{where}: dataset.min_labels = {cfg.dataset.min_labels}; must be >= 0")


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


def versions() -> dict:
    """Versions of the packages that shape the results, recorded with every output."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("numpy", "h5py", "scikit-learn", "iterative-stratification", "tensorflow-cpu",
                 "tensorflow", "tf-slim", "tf-keras"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


def run_cli(action) -> int:
    """Run a CLI action; a ValueError (anything a user can cause) prints its message, exit 2."""
    try:
        action()
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0

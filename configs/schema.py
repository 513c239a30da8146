"""Every setting of an experiment, with its default: frozen dataclasses, one per TOML section.

A config file names only what differs from these defaults (`configs.loading` reads it); every
stage reads the loaded `Config`, and records the keys it depends on (`configs.provenance`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

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
    # csv: a column listing each row's positive class ids (OpenImages' data.csv: label)
    positive_column: str = ""
    # csv: a column listing its verified negative class ids (label_neg); the rest unknown
    negative_column: str = ""
    allow_outside_root: bool = False  # csv / coco / nuswide: accept image paths that leave `root` (.., links)
    natural_missing_rate: float = 0.0  # share of true positives the annotations lack (0: complete)
    # a review's labels.csv (python -m model review import): they replace the labels of the rows they name
    reviewed_labels: str = ""
    # table: precomputed features and labels from files, no images (python -m features import)
    features: str = ""  # .npy / .npz / .csv / .tsv / .arff / .mat / .h5
    labels: str = ""  # a separate labels file; "" = in the features file (ARFF, MATLAB, CSV, HDF5)
    n_labels: int = 0  # how many attributes / columns are labels (0: all of `labels`, or MEKA's -C)
    labels_first: bool = False  # the labels are the first n_labels attributes / columns (MEKA)
    label_columns: tuple[str, ...] = ()  # CSV: the label columns by name (instead of n_labels)
    id_column: str = ""  # CSV: a column of row keys ("" = the row number)
    features_key: str = ""  # .mat / .npz / .h5: the features' key
    labels_key: str = ""  # .mat / .npz / .h5: the labels' key
    # 0/1 | -1/1, or three states (positive/negative/unknown): 1/0/-1 | 1/-1/0 | 1/0/nan
    label_coding: str = "0/1"
    header: bool = True  # CSV / TSV: the first line names the columns



@dataclass(frozen=True)
class Splits:
    n_folds: int = 4
    ratios: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75)
    single_positive: bool = False  # also the single-positive protocol: one observed positive per training row
    # partial labels (three states: positive, verified negative, unknown), simulated on the training rows:
    # keep this share of each row's labels, positives and negatives alike (Durand'19)
    partial: tuple[float, ...] = ()
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
    # fail when more rows than this share are unreadable (1: only when all are)
    max_invalid_share: float = 1.0
    pretrain_images: int = 3000  # demo_cnn pretraining set size
    pretrain_epochs: int = 6



class GridTables(dict):
    """[heads.search.params.<method>] parameter = [values]: the grids a search tries."""



@dataclass(frozen=True)
class Search:
    """[heads.search]: every method's learning rates and declared parameter grids trained as heads
    of one stack, chosen on validation rows: one setting and epoch per (method, protocol) from the
    scores pooled over every (seed, fold) of the study (`pool = "study"`), or per run (`"run"`).
    The table being present turns it on (`enabled = false` keeps it written but off)."""
    enabled: bool = False
    lr: tuple[float, ...] = ()  # () = heads.methods.LR_FACTORS x heads.learning_rate
    methods: tuple[str, ...] = ()  # the methods searched; () = every method of heads.methods
    # observed: validation rows' observed labels (what a user has) | clean: their truth (an oracle)
    select: str = "observed"
    params: GridTables = field(default_factory=GridTables)  # overrides of the registry's grids
    # study: one setting per (method, protocol) on the validation scores of every (seed, fold), then
    # each run trains it (heads.search) | run: each (seed, fold, protocol, method) picks its own
    pool: str = "study"
    halving: int = 3  # at each milestone keep the best 1 / halving of a run's grid points; 1 = none
    milestones: tuple[float, ...] = (0.25, 0.5)  # shares of [heads] epochs after which points are dropped
    # a pooled choice leaves the unsearched setting ([heads] values at [heads] epochs) only for a
    # setting whose validation score beats it, paired over the runs, by this many standard errors;
    # 0 = the best mean score
    evidence: float = 3.0



@dataclass(frozen=True)
class Heads:
    head: str = "paper_mlp"  # paper_mlp | linear
    methods: tuple[str, ...] = ("ce", "ignore_missing", "confidence")
    hidden: tuple[int, ...] = (2048, 1024, 256)
    optimizer: str = "adadelta"  # adadelta | adam | sgd
    learning_rate: float = 0.1
    # x lr_decay every decay_steps steps (staircase); 1 = constant (the notebooks' in effect)
    lr_decay: float = 0.95
    decay_steps: int = 1000
    batch_size: int = 32
    epochs: int = 20
    n_jobs: int = 1
    patience: int = 0  # early stopping on validation loss; 0 = off
    features: str = "auto"  # ram | stream | auto (ram when the fold's features fit in free memory)
    shuffle_buffer: int = 65536  # stream: rows read at once; an epoch shuffles windows, then rows in each
    params: dict = field(default_factory=dict)  # [heads.params.<method>] parameter = value (heads.methods)
    paper_exact: bool = False  # the notebooks' training where it differs from ours (PAPER_EXACT)
    # heads on stored features read each z-scored by the fold's training rows; a model folds it in
    standardize: bool = False
    scores: str = ""  # Score-PL's score file: a CSV of row keys and one column per class, or an (N, L) array
    search: Search = field(default_factory=Search)  # [heads.search]



@dataclass(frozen=True)
class Finetune:
    """End-to-end training of [extract]'s backbone (endpoint, pooling, checkpoint) with [heads]'
    head on top, from the images, per fold x ratio x method."""
    # () = every seed of [experiment]; e.g. [0]: the heads repeat, finetune runs once
    seeds: tuple[int, ...] = ()
    folds: tuple[int, ...] = ()  # 1-based; () = every fold
    # () = every two-state protocol of the splits (the ratios, single positive)
    ratios: tuple[float, ...] = ()
    methods: tuple[str, ...] = ("ce", "ignore_missing", "confidence")
    trainable_from: str = ""  # "" = the whole backbone; else the first trainable block, e.g. Mixed_7a
    optimizer: str = "adam"  # adam | momentum | sgd
    backbone_lr: float = 1e-4
    head_lr: float = 1e-3
    batch_size: int = 32
    epochs: int = 5
    # train: batch statistics in trainable blocks | frozen: inference mode throughout
    batch_norm: str = "train"
    crop: float = 0.875  # random crop of this share of each side, resized back; 1 = no crop
    flip: bool = True  # random left-right flip



@dataclass(frozen=True)
class Model:
    """[model]: the final model of `python -m model fit` (`model.final`): the method trained on
    every labelled row, with a validation share, written as a model directory (`model.directory`)."""
    method: str = "confidence"  # a registered method, or "best": the study's mAP leader at `protocol`
    # "best" reads this protocol's leaderboard column; "" = the ratio nearest the labels' missing share
    protocol: str = ""
    # share of each row's positives hidden before training (to measure suggestions); 0 = as observed
    hide: float = 0.0
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
    # "" = processes on this machine (joblib); "local" = a Dask LocalCluster; or tcp://host:port
    scheduler: str = ""
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


PAPER_EXACT_IRV2 = {"extract.endpoint": "Conv2d_7b_1x1", "extract.image_size": 224,
                    "extract.preprocessing": "paper"}

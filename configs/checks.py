"""The value rules of a loaded config: choices, ranges, lists, the experiment name, what each
dataset adapter needs. Each broken rule is a ValueError naming the file, the key, the value and
what is allowed."""
from __future__ import annotations

from . import backbones
from .schema import ADAPTERS, LABEL_CODINGS, Config


def check_choices(cfg: Config) -> None:
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
        "heads.search.pool": (cfg.heads.search.pool, {"study", "run"}),
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
        ("dataset.natural_missing_rate", cfg.dataset.natural_missing_rate, lambda v: 0 <= v < 1,
         "must lie in [0, 1)"),
        ("dataset.min_labels", cfg.dataset.min_labels, lambda v: v >= 0, "must be >= 0"),
        ("dataset.n_images", cfg.dataset.n_images, lambda v: v >= cfg.splits.n_folds,
         "must be >= splits.n_folds"),
        ("dataset.image_size", cfg.dataset.image_size, lambda v: v >= 8, "must be >= 8"),
        ("dataset.difficulty", cfg.dataset.difficulty, lambda v: 0 <= v <= 1, "must lie in [0, 1]"),
        ("dataset.n_labels", cfg.dataset.n_labels, lambda v: v >= 0, "must be >= 0"),
        ("extract.image_size", cfg.extract.image_size, lambda v: v == 0 or v >= 8,
         "must be 0 (the backbone's) or >= 8"),
        ("extract.batch_size", cfg.extract.batch_size, lambda v: v >= 1, at_least_one),
        ("extract.chunk_rows", cfg.extract.chunk_rows, lambda v: v >= 1 and v % cfg.extract.batch_size == 0,
         "must be a multiple of extract.batch_size (batches stay aligned across resumes)"),
        ("extract.max_invalid_share", cfg.extract.max_invalid_share, lambda v: 0 <= v <= 1,
         "must lie in [0, 1]"),
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
        ("model.folds", cfg.model.folds, lambda v: v == 0 or v >= 2,
         "must be 0 (no out-of-fold predictions) or >= 2"),
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
    if search.halving < 1:
        raise ValueError(f"{where}: heads.search.halving = {search.halving}; it must be >= 1 (1: no halving)")
    if not search.evidence >= 0:
        raise ValueError(f"{where}: heads.search.evidence = {search.evidence}; it must be >= 0 (0: the best "
                         "mean score wins)")
    steps = list(search.milestones)
    if any(not 0 < m < 1 for m in steps) or steps != sorted(set(steps)):
        raise ValueError(f"{where}: heads.search.milestones = {steps}; shares of the epochs in (0, 1), "
                         "increasing")
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
        raise ValueError(f"{where}: splits.ratios is empty and splits.single_positive is off: no protocol to "
                         "train")
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
            raise ValueError(f"{where}: finetune.seeds holds {seed}, which is not among the experiment's "
                             "seeds "
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
                         "experiment.runs_dir: letters, digits, '.', '-', '_' (no '/', '..', or leading or "
                         "trailing "
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
        raise ValueError(f"{where}: dataset.positive_column and dataset.negative_column come together "
                         "(OpenImages' "
                         "label and label_neg)")
    if ds.positive_column and ds.adapter != "csv":
        raise ValueError(f"{where}: dataset.positive_column lists class ids in a csv adapter's file; not "
                         "with "
                         f"adapter = {ds.adapter!r}")
    if ds.adapter == "table" and cfg.splits.import_dir:
        raise ValueError(f"{where}: splits.import_dir imports the paper's splits of images; not with the "
                         "table adapter")



def check_values(cfg: Config) -> None:
    check_choices(cfg)
    _check_ranges(cfg)
    _check_lists(cfg)
    _check_name(cfg)
    _check_dataset(cfg)

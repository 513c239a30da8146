"""Labels: dataset adapters -> manifest, folds, hidden labels, loss weights, `splits.h5`.

`make(cfg)` builds `runs/<name>/splits.h5` from the config's dataset (or, when
`splits.import_dir` is set, from the paper's published splits); see `splits.store` for the file.
"""
from __future__ import annotations

from pathlib import Path

import h5py

import configs

from . import datasets, folds, paper, store


def splits_path(cfg) -> Path:
    return cfg.run_dir / "splits.h5"


def is_complete(path: Path) -> bool:
    if not path.is_file():
        return False
    with h5py.File(path, "r") as h5:
        return bool(h5.attrs.get("complete", False))


def make(cfg, force: bool = False, out: Path | None = None) -> Path:
    """Write the config's `splits.h5` unless a complete one exists (or `force`)."""
    out = Path(out) if out else splits_path(cfg)
    if is_complete(out) and not force:
        print(f"{out}: already done (use --force to redo)")
        return out
    seed = cfg.experiment.seed
    if cfg.splits.import_dir:
        parts = paper.import_paper(cfg.splits.import_dir, cfg.splits.n_folds)
        labels, test_fold = parts["labels"], parts["test_fold"]
    else:
        manifest = datasets.load(cfg)
        labels = manifest.labels
        print(f"{manifest.source}: {labels.shape[0]} images x {labels.shape[1]} classes "
              f"(min_labels={cfg.dataset.min_labels}); {cfg.splits.n_folds} folds x "
              f"{len(cfg.splits.ratios)} ratios")
        test_fold = folds.make_folds(labels, cfg.splits.n_folds, seed)
        observed, hidden_share = folds.observed_labels(labels, test_fold, cfg.splits.ratios, seed)
        parts = {"ids": manifest.ids, "classes": manifest.classes, "image_paths": manifest.paths,
                     "labels": labels, "test_fold": test_fold, "observed": observed,
                     "ratios": list(cfg.splits.ratios), "hidden_share": hidden_share, "source": manifest.source}
    validation = None
    if cfg.splits.validation > 0:
        validation = folds.validation_rows(labels, test_fold, cfg.splits.validation, seed)
    store.write(out, **parts, seed=seed, min_labels=cfg.dataset.min_labels,
                config_json=configs.to_json(cfg), versions=configs.versions(), validation=validation)
    print(f"{out}: written")
    return out


def import_to(directory, out, n_folds: int = 4) -> Path:
    """`python -m splits import-paper DIR --out PATH`."""
    parts = paper.import_paper(directory, n_folds)
    return store.write(out, **parts, seed=-1, min_labels=int(parts["labels"].sum(1).min()),
                       config_json="{}", versions=configs.versions())

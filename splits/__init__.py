"""Labels: dataset adapters -> manifest, folds, hidden labels, loss weights, `splits.h5`.

`make(cfg)` builds each seed's `splits.h5` (`store.path`) from the config's dataset (or, when
`splits.import_dir` is set, from the paper's published splits); see `splits.store` for the file.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

import artifacts
import configs

from . import datasets, folds, paper, store


def provenance(cfg, seed: int, sources: list[Path]) -> dict:
    """What a seed's splits.h5 is made from: [dataset] (natural_missing_rate aside: weights
    read it; allow_outside_root too: it only accepts or refuses the image list), [splits], the
    seed, the label files' hashes and the packages that draw folds."""
    return {**configs.section(cfg, "dataset", exclude=("natural_missing_rate", "allow_outside_root")),
            **configs.section(cfg, "splits"),
            "seed": seed, "sources": {str(p): artifacts.file_sha256(p) for p in sources},
            "versions": artifacts.versions("numpy", "iterative-stratification")}


def import_sources(directory: str | Path) -> list[Path]:
    return sorted(p for p in Path(directory).rglob("*") if p.is_file())


def make(cfg, force: bool = False) -> list[Path]:
    """Write every seed's `splits.h5` unless a complete one of the same provenance exists (or
    `force`); one made from other settings is refused (artifacts)."""
    sources = import_sources(cfg.splits.import_dir) if cfg.splits.import_dir else datasets.source_files(cfg)
    written = []
    for seed in cfg.seeds:
        out = store.path(cfg, seed)
        recipe = provenance(cfg, seed, sources)
        with artifacts.claim(out):
            if not artifacts.must_make(out, recipe, force):
                print(f"{out}: already done (use --force to redo)")
            else:
                _write(cfg, seed, out, recipe)
                print(f"{out}: written")
        written.append(out)
    return written


def _write(cfg, seed: int, out: Path, recipe: dict) -> None:
    """Folds, hidden labels and validation rows of one seed, into `out`."""
    sp = cfg.splits
    if sp.import_dir:
        parts = paper.import_paper(sp.import_dir, sp.n_folds)
        labels, test_fold = parts["labels"], parts["test_fold"]
        if sp.single_positive:
            single, share = folds.observed_labels(labels, test_fold, [], seed, single_positive=True)
            parts["observed"] = np.concatenate([parts["observed"], single], axis=1)
            parts["hidden_share"] = np.concatenate([parts["hidden_share"], share], axis=1)
    else:
        manifest = datasets.load(cfg)
        labels = manifest.labels
        print(f"{manifest.source}: {labels.shape[0]} rows x {labels.shape[1]} classes (min_labels="
              f"{cfg.dataset.min_labels}; dropped {manifest.dropped_rows} rows and "
              f"{len(manifest.dropped_classes)} "
              f"classes without a positive)" + (f", {int((~manifest.known).sum())} labels unknown"
                                               if manifest.known is not None else "")
              + f"; {sp.n_folds} folds x {n_protocols(sp)} protocols, seed {seed}")
        test_fold = folds.make_folds(labels, sp.n_folds, seed)
        observed, hidden_share = folds.observed_labels(labels, test_fold, sp.ratios, seed, sp.single_positive,
                                                       manifest.known, sp.partial, sp.fpc, sp.rps)
        check_something_observed(observed, test_fold, sp.ratios, cfg.source)
        parts = {"ids": manifest.ids, "classes": manifest.classes, "image_paths": manifest.paths,
                 "labels": labels,
                 "test_fold": test_fold, "observed": observed, "ratios": list(sp.ratios),
                 "hidden_share": hidden_share, "source": manifest.source,
                 "dropped_rows": manifest.dropped_rows,
                 "dropped_classes": manifest.dropped_classes, "known": manifest.known,
                 "partial_protocols": store.protocol_keys((), False, sp.partial, sp.fpc, sp.rps),
                 "ground_truth": manifest.known is None}
    validation = folds.validation_rows(labels, test_fold, sp.validation, seed) if sp.validation > 0 else None
    store.write(out, **parts, single_positive=sp.single_positive,
                missing_rate=missing_rates(labels, test_fold, parts["ratios"], sp.single_positive,
                                           parts.get("partial_protocols", ()),
                                           parts["hidden_share"]), seed=seed,
                min_labels=cfg.dataset.min_labels, config_json=configs.to_json(cfg),
                versions=artifacts.versions(),
                provenance=recipe, validation=validation)


def n_protocols(sp) -> int:
    return len(sp.ratios) + sp.single_positive + len(sp.partial) + len(sp.fpc) + len(sp.rps)


def check_something_observed(observed: np.ndarray, test_fold: np.ndarray, ratios, where: str) -> None:
    """Say so when a ratio leaves no training row of a fold a single observed positive (round(r n)
    of n positives hidden: r = 0.999 hides all of up to 500): a head learns nothing from it."""
    for r, ratio in enumerate(ratios):
        empty = [k + 1 for k in range(observed.shape[0]) if not (observed[k, r][test_fold != k] == 1).any()]
        if empty:
            print(f"warning: {where}: splits.ratios holds {ratio}: hiding round({ratio} n) of each row's n "
                  "positives "
                  f"leaves no training row of fold(s) {', '.join(map(str, empty))} an observed positive; "
                  "heads "
                  "learn nothing from it (use a smaller ratio)")


def missing_rates(labels: np.ndarray, test_fold: np.ndarray, ratios, single_positive: bool,
                  partial_protocols=(), hidden_share=None) -> np.ndarray:
    """(K, P) the share of a training row's true positives each protocol hides, as the
    estimators should expect it: the ratio; under single positive 1 - 1 / (mean number of true
    positives of the fold's training rows), the one statistic of the truth this protocol uses
    (Cole et al. 2021 take the data set's mean as known too); `partial` q 1 - q, `rps` p p (the
    protocol says it); `fpc` the share it hid (`hidden_share`: it depends on each class's count)."""
    n_folds = int(test_fold.max()) + 1
    first = len(ratios) + int(single_positive)
    rates = np.zeros((n_folds, first + len(partial_protocols)))
    rates[:, :len(ratios)] = ratios
    if single_positive:
        for k in range(n_folds):
            rates[k, first - 1] = 1.0 - 1.0 / labels[test_fold != k].sum(1).mean()
    for p, key in enumerate(partial_protocols, start=first):
        kind, value = store.protocol_kind(key)
        if kind == "fpc":
            rates[:, p] = hidden_share[:, p]
        else:
            rates[:, p] = 1 - value if kind == "partial" else value
    return rates


def import_to(directory, out, n_folds: int = 4) -> Path:
    """`python -m splits import-paper DIR --out PATH`."""
    parts = paper.import_paper(directory, n_folds)
    recipe = {"import_dir": str(directory),
              "sources": {str(p): artifacts.file_sha256(p) for p in import_sources(directory)}}
    rates = missing_rates(parts["labels"], parts["test_fold"], parts["ratios"], False)
    return store.write(out, **parts, single_positive=False, missing_rate=rates, seed=-1,
                       min_labels=int(parts["labels"].sum(1).min()), config_json="{}",
                       versions=artifacts.versions(),
                       provenance=recipe)

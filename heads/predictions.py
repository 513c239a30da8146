"""The predictions store: one `predictions.h5` per run, written by heads and finetune alike,
read by analysis. This module owns the file, where runs live and what determines a run.

A run is one (seed, fold, protocol, method) of a stage ("heads" or "finetune"), in
`runs/<name>/[seed<s>/]<stage>/fold<k>/<protocol dir>/<method>/` (protocol dirs as
`splits.store.protocol_dir`: ratio0.25, single_positive), holding:
    predictions.h5  ids (n_test,) str, labels (n_test, L) uint8 ground truth,
                    probabilities (n_test, L) float32; with validation rows also val_ids,
                    val_observed (n_val, L) uint8 and val_probabilities (n_val, L) float32
                    (val_labels: their truth; val_known (n_val, L) bool under a partial-label
                    protocol: the observed labels that are known, positives and verified
                    negatives); known (n_test, L) bool when the dataset's labels have three
                    states (the test labels it knows: the partial-label evaluation);
                    attributes method, protocol, ratio (NaN under single positive), fold
                    (1-based), seed, head, source (heads | finetune), config (JSON), provenance
                    (JSON), fingerprint, arrays_sha256 (of every array, `artifacts.write_arrays`:
                    `read` checks it), complete; under a search also `search` (JSON: the
                    winning point's lr, searched parameters, epoch and validation scores)
    history.csv     loss per epoch (train, and validation when there is some; the validation
                    score under a search)
    search.csv      under a search: every grid point's settings and validation score per epoch, the
                    test mAP of the points left at the last epoch (and the winner under a per-run
                    search)
    search.json     a pooled search's first pass of the run: its record (complete, provenance);
                    predictions.h5 then comes from the chosen setting (`search.chosen` in its provenance)
    reference.h5, reference_history.csv, reference_timing.json
                    a pooled search's first pass: the run's head at the unsearched setting (always
                    kept by the halving) at [heads] epochs, as predictions.h5, history.csv and
                    timing.json; when the choice is that head they become those files (`promote`)
                    instead of training it again, otherwise they stay as the one recipe's result
    timing.json     seconds, steps and rows
Folds are 1-based in directory names and tables, 0-based in `splits.h5`.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

import artifacts
import configs
from splits import store as splits_store

from . import methods, search

STAGES = ("heads", "finetune")


@dataclass(frozen=True)
class HeadRun:
    seed: int
    fold: int  # 0-based
    protocol: str  # splits.store.protocol_key
    method: str

    @property
    def key(self) -> str:
        """The run's directory below its stage: fold<k>/<protocol dir>/<method>."""
        return f"fold{self.fold + 1}/{splits_store.protocol_dir(self.protocol)}/{self.method}"

    @property
    def label(self) -> str:
        return (f"seed {self.seed}, fold {self.fold + 1}, {splits_store.protocol_label(self.protocol)}, "
                f"{self.method}")

    @property
    def ratio(self) -> float:
        ratio = splits_store.protocol_ratio(self.protocol)
        return math.nan if ratio is None else ratio


def run_dir(cfg, run: HeadRun, stage: str = "heads") -> Path:
    return cfg.seed_dir(run.seed) / stage / run.key


SEARCH_RECORD = "search.json"  # a pooled search's first pass of a run: complete, with its provenance
# the same pass's head at the unsearched setting, trained to [heads] epochs: its predictions.h5,
# history.csv and timing.json under these names, promoted when the pooled choice is that head
REFERENCE = {"predictions.h5": "reference.h5", "history.csv": "reference_history.csv",
             "timing.json": "reference_timing.json"}


def file(cfg, run: HeadRun, stage: str = "heads", output: str = "predictions.h5") -> Path:
    """A run's predictions.h5 (or another of its outputs, `output`, such as its search record)."""
    return run_dir(cfg, run, stage) / output


ARRAYS = ("ids", "labels", "probabilities", "val_ids", "val_observed", "val_probabilities", "val_labels",
          "val_known",
          "known")


class ValidationRows(NamedTuple):
    """What predictions.h5 keeps of a run's validation rows."""
    ids: np.ndarray  # (m,) str
    observed: np.ndarray  # (m, L) uint8: the labels the run's selection and thresholds used
    probabilities: np.ndarray  # (m, L) float32
    labels: np.ndarray | None = None  # (m, L) their truth, where the splits hold it
    known: np.ndarray | None = None  # (m, L) bool: which observed labels are known (a partial-label protocol)


def write(directory: Path, *, ids, labels, probabilities, attrs: dict, provenance: dict,
          validation: ValidationRows | None = None, known=None, name: str = "predictions.h5") -> Path:
    """Write predictions.h5 (or `name`) atomically (ids (n,), labels (n, L) ground truth,
    probabilities (n, L); the validation rows' arrays when given; known (n, L): the test labels a
    three-state dataset knows), with the checksum of its arrays."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / name
    arrays = {"ids": np.array(ids, dtype=object), "labels": np.asarray(labels).astype(np.uint8),
              "probabilities": np.asarray(probabilities).astype(np.float32)}
    if validation is not None:
        arrays.update(val_ids=np.array(validation.ids, dtype=object),
                      val_observed=validation.observed.astype(np.uint8),
                      val_probabilities=validation.probabilities.astype(np.float32))
        if validation.labels is not None:
            arrays["val_labels"] = np.asarray(validation.labels).astype(np.uint8)
        if validation.known is not None:
            arrays["val_known"] = np.asarray(validation.known, bool)
    if known is not None:
        arrays["known"] = np.asarray(known, bool)
    with artifacts.written(target, provenance) as h5:
        artifacts.write_arrays(h5, arrays)
        h5.attrs.update(attrs)
    return target


def promote(directory: Path, provenance: dict, attrs: dict) -> bool:
    """Make a run's predictions.h5, history.csv and timing.json from its search pass's reference
    head (`REFERENCE`) with the run's `provenance` and `attrs` (its `search` attribute) replacing
    the pass's; False, touching nothing, where that pass kept none or one of other inputs (a
    search record from before reference heads were kept, or of another provenance)."""
    source = directory / REFERENCE["predictions.h5"]
    made_by = artifacts.recorded(directory / SEARCH_RECORD)[1]
    if not all((directory / name).is_file() for name in REFERENCE.values()) or \
            artifacts.status(source, made_by) != []:
        return False
    read(source)  # its arrays against their checksum
    for name in ("history.csv", "timing.json"):
        artifacts.write_text(directory / name, (directory / REFERENCE[name]).read_text())
    with artifacts.written(directory / "predictions.h5", provenance, copy_of=source) as h5:
        h5.attrs.update(attrs)  # its arrays and own attributes stay the pass's; the stamp is the run's
    for name in REFERENCE.values():
        artifacts.remove(directory / name)
    return True


def run_attrs(cfg, run: HeadRun, stage: str, head: str, **extra) -> dict:
    """The attributes every predictions.h5 carries (see the module docstring), and `extra`."""
    return {"method": run.method, "protocol": run.protocol, "ratio": run.ratio, "fold": run.fold + 1,
            "seed": run.seed, "head": head, "source": stage, "config": configs.to_json(cfg), **extra}


def write_history(directory: Path, history: list[dict], head: int | None = None,
                  name: str = "history.csv") -> None:
    """history.csv (or `name`): epoch, train_loss[, val_loss]; `head` picks one head's column of a
    stack."""
    def value(record, key):
        return record[key] if head is None else record[key][head]

    has_val = bool(history) and "val_loss" in history[0]
    has_score = bool(history) and "val_score" in history[0]
    lines = ["epoch,train_loss" + (",val_loss" if has_val else "") + (",val_score" if has_score else "")]
    lines += [f"{rec['epoch']},{value(rec, 'train_loss'):.6f}"
              + (f",{value(rec, 'val_loss'):.6f}" if has_val else "")
              + (f",{value(rec, 'val_score'):.6f}" if has_score else "") for rec in history]
    artifacts.write_text(directory / name, "\n".join(lines) + "\n")


def read(path: Path) -> dict:
    """A complete predictions.h5 as {attribute: value, dataset: array}; ValueError if it is not."""
    with artifacts.open_h5(path) as h5:
        if not h5.attrs.get("complete", False):
            raise ValueError(f"{path} is incomplete; rerun its stage")
        out = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in h5.attrs.items()}
        arrays = artifacts.read_arrays(h5, ARRAYS)
        artifacts.check_arrays(h5, ARRAYS, path, arrays)
        out.update(arrays)
        out["provenance"] = json.loads(out.get("provenance", "{}"))
    return out


def grid(cfg, stage: str, n_folds: int, protocols: list[str]) -> list[HeadRun]:
    """Every run of a stage's grid: seeds x folds x protocols x methods."""
    if stage == "heads":
        seeds, folds, methods_ = cfg.seeds, range(n_folds), cfg.heads.methods
    else:
        ft = cfg.finetune
        seeds = ft.seeds or cfg.seeds
        folds = [k - 1 for k in ft.folds] if ft.folds else range(n_folds)
        methods_ = ft.methods
        if ft.ratios:
            protocols = [splits_store.protocol_key(r) for r in ft.ratios]
    return [HeadRun(seed, k, p, m) for seed in seeds for k in folds for p in protocols for m in methods_]


ONLY_KEYS = ("seed", "fold", "ratio", "method")


def parse_only(text: str) -> dict:
    """`--only fold=K,ratio=R,method=M,seed=S` (any of them) as {key: value}; `select` applies it."""
    out = {}
    for part in filter(None, text.split(",")):
        key, _, value = part.partition("=")
        if key not in ONLY_KEYS or not value:
            raise argparse.ArgumentTypeError(f"--only {text!r}: expected fold=K,ratio=R,method=M,seed=S (any "
                                             "of them; "
                                             "ratio=single_positive for that protocol)")
        out[key] = value
    return out


class MergeOnly(argparse.Action):
    """`--only` given more than once: the parts together (`--only fold=1 --only method=ce`); one
    key given two values is an error."""

    def __call__(self, parser, namespace, values, option_string=None):
        merged = dict(getattr(namespace, self.dest) or {})
        for key, value in values.items():
            if merged.get(key, value) != value:
                parser.error(f"--only gives {key} twice ({merged[key]} and {value}); give each key once")
            merged[key] = value
        setattr(namespace, self.dest, merged)


def select(runs: list[HeadRun], only: dict | None, where: str) -> list[HeadRun]:
    """The runs `--only` names (fold=K, ratio=R or single_positive, method=M, seed=S); a value
    outside the grid is an error."""
    only = dict(only or {})
    values = {"seed": lambda run: str(run.seed), "fold": lambda run: str(run.fold + 1),
              "ratio": lambda run: run.protocol, "method": lambda run: run.method}
    if "ratio" in only:
        only["ratio"] = splits_store.protocol_key(only["ratio"])
    for key, wanted in only.items():
        present = sorted({values[key](run) for run in runs})
        if wanted not in present:
            raise ValueError(f"--only {key}={wanted} is not in the {where} grid: {', '.join(present)}")
    return [run for run in runs if all(values[key](run) == wanted for key, wanted in only.items())]


def plan(cfg, runs: list[HeadRun], provenance_of, force: bool = False, stage: str = "heads",
         output: str = "predictions.h5") -> list[HeadRun]:
    """The runs to make: absent or incomplete ones, all with `force` (whose complete outputs stay
    until the new ones replace them); runs made from another provenance (`provenance_of(run)`)
    are refused together, each with its changes."""
    if force:
        return list(runs)
    todo, stale = [], []
    for run in runs:
        differences = artifacts.status(file(cfg, run, stage, output), provenance_of(run))
        if differences is None:
            todo.append(run)
        elif differences:
            stale.append(f"{run.label}: {'; '.join(differences[:4])}")
    if stale:
        raise ValueError(f"{len(stale)} {stage} run(s) were made from other inputs or settings:\n  "
                         + "\n  ".join(stale[:6]) + ("\n  ..." if len(stale) > 6 else "")
                         + f"\nNothing was reused: {artifacts.FORCE_HINT} to redo them, or change "
                           "experiment.name "
                         "to keep both")
    return todo


@contextlib.contextmanager
def claimed(cfg, runs: list[HeadRun], provenance_of, force: bool = False, stage: str = "heads",
            output: str = "predictions.h5"):
    """Lock every run's output (`artifacts.claim`) and yield the runs to make (`plan`); when
    there are none, say so. The locks are held until the block ends."""
    with contextlib.ExitStack() as claims:
        for run in runs:
            claims.enter_context(artifacts.claim(file(cfg, run, stage, output)))
        todo = plan(cfg, runs, provenance_of, force, stage, output)
        if not todo:
            print(f"{cfg.run_dir}: every requested {stage} run is complete (use --force to redo)")
        yield todo


def configured_protocols(cfg) -> list[str]:
    """The protocols of the [heads] grid: the config's ratios, single positive if set, then the
    partial-label protocols."""
    sp = cfg.splits
    return splits_store.protocol_keys(sp.ratios, sp.single_positive, sp.partial, sp.fpc, sp.rps)


def expected_provenance(cfg, stage: str, run: HeadRun, recorded: dict, splits_fingerprint: str,
                        features_fingerprint: str) -> dict:
    """What a run of `stage` would be made from now, for a reader checking a complete one; the
    machine-dependent parts (the batch-order window, the checkpoint identity) are taken from the
    run's `recorded` provenance, as its stage checks them when it runs, and so is a pooled
    search's choice (`search.chosen`: the pooled choice of the runs' own search records)."""
    if stage == "heads":
        expected = head_provenance(cfg, run, splits_fingerprint, features_fingerprint,
                                   recorded.get("batch_order_window"))
        if "search.chosen" in recorded:
            expected["search.chosen"] = recorded["search.chosen"]
        return expected
    return finetune_provenance(cfg, run, splits_fingerprint, recorded.get("checkpoint"))


def head_provenance(cfg, run: HeadRun, splits_fingerprint: str, features_fingerprint: str,
                    window: int) -> dict:
    """What a frozen-feature head's predictions are made from: [heads] (how the grid runs aside),
    the method and its parameters, the seed / fold / protocol, the input files' fingerprints and
    the batch order (`window`: 0 = one permutation of the fold; else streamed windows)."""
    heads = configs.section(cfg, "heads",
                            exclude=("methods", "params", "n_jobs", "features", "shuffle_buffer",
                                                   "search", "scores"))
    if search.enabled(cfg):
        heads["search"] = search.describe(cfg, run.method)
    if methods.get(run.method).pseudo:  # only a method that reads the score file depends on it
        scores = Path(cfg.heads.scores)
        heads["scores"] = {"path": str(scores),
                           "sha256": artifacts.file_sha256(scores) if scores.is_file() else "missing"}
    return {**heads, "method": run.method, "params": methods.configured(cfg, run.method),
            "dataset.natural_missing_rate": cfg.dataset.natural_missing_rate, "seed": run.seed,
            "fold": run.fold + 1,
            "protocol": run.protocol, "splits": splits_fingerprint, "features": features_fingerprint,
            "batch_order_window": window, "versions": artifacts.versions("tensorflow")}


def finetune_provenance(cfg, run: HeadRun, splits_fingerprint: str, checkpoint: str) -> dict:
    """What a finetuned run is made from: [finetune] (its grid aside), [extract]'s network and
    input settings, [heads]' head, the method, seed / fold / protocol, splits and checkpoint."""
    extract = configs.section(cfg, "extract",
                              exclude=("batch_size", "chunk_rows", "cache_dir", "pretrain_images",
                                                       "pretrain_epochs", "dtype", "max_invalid_share",
                                                       "checkpoint"))
    return {**configs.section(cfg, "finetune", exclude=("folds", "ratios", "methods")), **extract,
            "heads.head": cfg.heads.head, "heads.hidden": list(cfg.heads.hidden), "method": run.method,
            "params": methods.configured(cfg, run.method),
            "dataset.natural_missing_rate": cfg.dataset.natural_missing_rate, "seed": run.seed,
            "fold": run.fold + 1,
            "protocol": run.protocol, "splits": splits_fingerprint, "checkpoint": checkpoint,
            "versions": artifacts.versions("tensorflow", "tf-slim")}

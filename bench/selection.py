"""Benchmark: which rule should choose a search's setting, judged on the test labels no rule reads.

    .venv/bin/python bench/selection.py [--config configs/yeast_search.toml]
        [--protocols 0,0.75,single_positive] [--data ../shared/data] [--out docs/results] [--smoke]

Every (seed, fold) stack of the config trains its whole grid (no halving). After each epoch every
head's validation probabilities are scored as the search scores them (mAP on the observed labels;
on the truth for the clean-label oracle) and its test mAP is recorded. Then each rule chooses one
(point, epoch) per (method, protocol) over all runs with `heads.search.choose` itself:

    recipe       the unsearched setting at [heads] epochs (what the study without a search trains)
    best mean    the best mean observed-label score (`evidence = 0`)
    evidence Z   one recipe unless a setting beats it by more than Z standard errors (Z = 1, 2, 3)
    clean        the best mean score on the validation rows' truth (an oracle)
    test         the best mean test mAP (the bound no rule can pass)

Writes selection_<experiment>.csv (rule, protocol, method: the chosen setting, its test mAP over
the runs, the paired difference from one recipe, Wilcoxon p and Holm p over the methods of a
protocol) and prints per protocol and rule the mean over methods, how many methods it lifts and
lowers, and how many are significantly below one recipe. The setting is the config's, run on a
copy in a scratch directory; ../shared/data (or --data) holds the set. Under --smoke: a tiny
stand-in (bench/tiny.py), one seed, three epochs, four methods.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import configs
import metrics
from analysis import tables
from bench import tiny
from features import importer
from features import store as feature_store
from heads import predictions, search, trainer
from splits import make as make_splits
from splits import store as splits_store

ROOT = Path(__file__).resolve().parents[1]
SHARED = "../shared/data"
EVIDENCE = (1.0, 2.0, 3.0)


def study_config(path: Path, data: Path, work: Path, smoke: bool):
    """The config at `path` on the set under `data`, its runs in `work`, its whole grid trained
    (halving = 1; under --smoke: one seed, three epochs, four methods, a small head)."""
    raw = tomllib.loads(path.read_text())
    raw["experiment"]["runs_dir"] = str(work)
    raw["heads"].setdefault("search", {})["halving"] = 1
    features = raw["dataset"]["features"]
    if features.startswith(SHARED):
        raw["dataset"]["features"] = str(data / features[len(SHARED) + 1:])
    if smoke:
        raw["experiment"]["seeds"] = [0]
        raw["heads"].update(epochs=3, hidden=[16], methods=["ce", "an", "asl", "confidence_auto"])
    return configs.from_dict(raw, source=str(path))


def record(cfg, protocols: list[str]) -> pd.DataFrame:
    """Per (seed, fold, method, protocol, point, epoch): the observed-label and clean validation
    scores and the test mAP of every head of the whole grid."""
    frames = []
    grid = search.grid(cfg, cfg.heads.methods)
    for seed in cfg.seeds:
        sf = splits_store.load(splits_store.path(cfg, seed))
        for fold in range(sf.n_folds):
            start = time.perf_counter()
            runs = [r for r in predictions.grid(cfg, "heads", sf.n_folds, protocols)
                    if r.seed == seed and r.fold == fold]
            frames.append(fold_scores(cfg, sf, runs, grid))
            print(f"seed {seed} fold {fold + 1}: {len(frames[-1])} (head, epoch) scores in "
                  f"{time.perf_counter() - start:.0f} s", flush=True)
    return pd.concat(frames, ignore_index=True)


def fold_scores(cfg, sf, runs: list, grid: dict) -> pd.DataFrame:
    """One fold's stack trained on its whole grid, each head scored after every epoch."""
    path = str(feature_store.path(cfg))
    data = trainer.fold_data(cfg, sf, path, runs, grid, True)
    _, x_val, x_test = (np.concatenate([x for _, x in source.blocks()]) for source in data.sources)
    known = trainer.known_validation_labels(data)
    target_of = np.asarray(data.inputs.target_of)
    observed = data.stacked.val_targets[target_of]
    observed_known = None if known is None else known[target_of]
    clean = np.broadcast_to(sf.labels[data.validation], observed.shape)
    test = sf.labels[data.test]
    scores = []

    def observe(epoch, stack):
        val, tested = stack.predict_proba(x_val), stack.predict_proba(x_test)
        scores.append((epoch, metrics.mean_average_precision(observed, val, observed_known),
                       metrics.mean_average_precision(clean, val),
                       metrics.mean_average_precision(np.broadcast_to(test, tested.shape), tested)))

    fit = trainer.fit_fold(cfg, sf, path, runs, grid, True, observe=observe)
    points = [search.points_of(grid, runs[r]).index(point)
              for r, point in zip(fit.data.run_of, fit.data.stacked.points)]
    heads = pd.DataFrame({"seed": runs[0].seed, "fold": runs[0].fold + 1,
                          "method": [runs[r].method for r in fit.data.run_of],
                          "protocol": [runs[r].protocol for r in fit.data.run_of], "point": points})
    return pd.concat([heads.assign(epoch=epoch, observed=obs, clean=cl, test=te)
                      for epoch, obs, cl, te in scores], ignore_index=True)


def chosen(runs: pd.DataFrame, score: str, reference=None, evidence: float = 0.0) -> tuple[int, int]:
    """(point, epoch) `search.choose` picks on the `score` column of one (method, protocol)'s runs."""
    picked = search.choose(runs.rename(columns={score: "score"}), reference, evidence)
    return int(picked["point"]), int(picked["epoch"])


def rules(cfg, scores: pd.DataFrame) -> pd.DataFrame:
    """Each rule's choice per (method, protocol) and the test mAP it gets, paired with one recipe's."""
    rows = []
    for (method, protocol), runs in scores.groupby(["method", "protocol"], sort=False):
        reference = (search.reference(cfg, method), cfg.heads.epochs)
        picks = {"recipe": reference, "best mean": chosen(runs, "observed"),
                 **{f"evidence {z:g}": chosen(runs, "observed", reference, z) for z in EVIDENCE},
                 "clean": chosen(runs, "clean"), "test": chosen(runs, "test")}
        test = runs.set_index(["point", "epoch", "seed", "fold"])["test"].sort_index()
        base = test.loc[reference]
        for rule, key in picks.items():
            got = test.loc[key]
            difference = (got - base).to_numpy()
            rows.append({"rule": rule, "protocol": splits_store.protocol_label(protocol), "method": method,
                         "point": key[0], "epoch": key[1], "runs": len(got), "test mAP": got.mean(),
                         "difference": difference.mean(), "higher": int((difference > 0).sum()),
                         "wilcoxon p": tables.wilcoxon_p(difference)})
    out = pd.DataFrame(rows)
    out["holm p"] = out.groupby(["rule", "protocol"])["wilcoxon p"].transform(
        lambda p: tables.holm(p.to_numpy()))
    return out


def summary(out: pd.DataFrame) -> pd.DataFrame:
    """Per protocol and rule: the mean test mAP over methods, methods lifted / lowered, and those
    significantly below one recipe (Holm p < 0.05)."""
    below = (out["holm p"] < 0.05) & (out["difference"] < 0)
    return out.assign(below=below).groupby(["protocol", "rule"], sort=False).agg(
        mean_mAP=("test mAP", "mean"), lifted=("difference", lambda d: int((d > 0).sum())),
        lowered=("difference", lambda d: int((d < 0).sum())), significantly_below=("below", "sum"),
        methods=("method", "size"))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default=str(ROOT / "configs" / "yeast_search.toml"))
    p.add_argument("--protocols", default="0,0.75,single_positive")
    p.add_argument("--out", default=str(ROOT / "docs" / "results"))
    tiny.add_arguments(p)
    args = p.parse_args(argv)
    data = tiny.data_root(args)
    with tempfile.TemporaryDirectory(prefix="bench-selection-") as scratch:
        cfg = study_config(Path(args.config), data, Path(scratch), args.smoke)
        importer.import_features(cfg)
        make_splits(cfg)
        protocols = ["0.75"] if args.smoke else args.protocols.split(",")
        out = rules(cfg, record(cfg, protocols))
    pd.set_option("display.width", 200)
    print(summary(out).to_string(float_format=lambda v: f"{v:.4f}"))
    if not args.smoke:
        target = Path(args.out) / f"selection_{cfg.experiment.name}.csv"
        out.to_csv(target, index=False, float_format="%.6g")
        print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

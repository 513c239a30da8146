"""Benchmark: what a review of the suggestions buys, with a simulated reviewer, and the suggestions'
ranking beside cleanlab's.

    .venv/bin/python bench/review.py [--sets demo,corel5k,yeast,enron] [--seeds 0,1,2] [--out DIR] [--smoke]

Per set and seed: one of 4 stratified folds is the test set; the other rows (the pool) keep half
of each row's positives (the rest hidden). CE is trained on the pool's observed labels (the
baseline), IM-WCE knowing which entries are hidden (the oracle). Then rounds of review: the
model's out-of-fold suggestions (`model.suggest`'s model source, 4 inner folds) are reviewed by a
reviewer who answers from the truth (a hidden positive is accepted, anything else rejected), the
accepted ones become positives and the rejected ones verified negatives, and CE is fitted again,
until 0.5, 1 and 2 reviews per pool row are spent. Beside it: reviewing random unobserved entries
and the class prior's ranking (how many hidden positives a review finds), and self-training (the
same suggestions accepted without a reviewer, refitted). Test mAP on the test fold's truth.
The heads are the project's (`heads.trainer.fit_fold` through `model.final`'s rows); every fit
has the set's recipe below. The ranking against cleanlab (2.9, bench-only: bench/requirements.txt)
on the same out-of-fold probabilities: AP, precision at 1 and 5 per image of hidden positives
among unobserved entries, cleanlab's per-class label quality (lowest quality of an observed 0
first), and its `find_multilabel_issues_per_class` flags (precision and recall).
Writes review_rounds.csv (every fit), review_summary.csv (means and spread over seeds),
review_cleanlab.csv and docs/review_map.png (with --out).
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import configs
import metrics
from bench import tiny
from features import importer
from features import store as feature_store
from heads import search
from heads.predictions import HeadRun
from model import final, suggest
from splits import datasets, folds
from splits import store as splits_store

ROOT = Path(__file__).resolve().parents[1]
BUDGETS = (0.5, 1.0, 2.0)  # reviews per pool row, cumulative
HIDE = 0.5
RECIPES = {  # the set's heads: its study config's recipe
    "demo": {"head": "paper_mlp", "hidden": [256], "optimizer": "adam", "learning_rate": 0.003, "epochs": 10,
             "batch_size": 32},
    "corel5k": {"head": "paper_mlp", "hidden": [512], "optimizer": "adam", "learning_rate": 0.001,
                "epochs": 30,
                "batch_size": 64},
    "yeast": {"head": "paper_mlp", "hidden": [256], "optimizer": "adam", "learning_rate": 0.001, "epochs": 40,
              "batch_size": 64},
    "enron": {"head": "paper_mlp", "hidden": [256], "optimizer": "adam", "learning_rate": 0.001, "epochs": 40,
              "batch_size": 64},
}
CONFIGS = {"corel5k": "corel5k.toml", "yeast": "yeast.toml", "enron": "enron.toml"}


# data: a set's features as a store and its labels


def table_set(name: str, data: Path, work: Path):
    """(features store path, ids, classes, labels) of a shipped real set, imported as its config says."""
    cfg = configs.load(ROOT / "configs" / CONFIGS[name])
    ds = dataclasses.replace(cfg.dataset, features=str(data / "real" / Path(cfg.dataset.features).name))
    cfg = dataclasses.replace(cfg, dataset=ds,
                              experiment=dataclasses.replace(cfg.experiment, runs_dir=str(work)))
    importer.import_features(cfg)
    manifest = datasets.load(cfg)
    return feature_store.path(cfg), np.asarray(manifest.ids, str), manifest.classes, manifest.labels


def demo_set(work: Path, smoke: bool):
    """The demo's features (runs/demo after `make demo`), or under --smoke a synthetic stand-in."""
    if smoke:
        rng = np.random.default_rng(0)
        labels = tiny.labels(240, 16, rng)
        return write_store(work / "demo.h5", [f"r{i}" for i in range(240)], tiny.features(labels, 16, rng)), \
            np.array([f"r{i}" for i in range(240)]), [f"c{j}" for j in range(16)], labels
    cfg = configs.load(ROOT / "configs" / "demo.toml")
    path, sf_path = feature_store.path(cfg), splits_store.path(cfg, cfg.seeds[0])
    if not path.is_file() or not sf_path.is_file():
        return None
    sf = splits_store.load(sf_path)
    return path, np.asarray(sf.ids, str), sf.classes, sf.labels


def write_store(path: Path, ids, x: np.ndarray) -> Path:
    """A feature store of `x` (n, d) float32 for the rows `ids`."""
    tmp = path.with_name(path.name + ".tmp")
    recipe = {"features": "bench/review.py stand-in"}
    feature_store.create(tmp, ids, x.shape[1], "float32", 64, {"backbone": "synthetic"}, recipe)
    for chunk in feature_store.pending_chunks(tmp):
        rows = slice(chunk * 64, (chunk + 1) * 64)
        feature_store.commit_chunk(tmp, chunk, x[rows], np.ones(len(x[rows]), bool), [])
    feature_store.finish(tmp, path, recipe)
    return path


# fits: the project's heads on the pool, predicting the test rows and the pool out of fold


class Study:
    """One set and seed: the test fold, the pool with half its positives hidden, the fits."""

    def __init__(self, name, store, ids, classes, labels, seed: int, smoke: bool):
        self.name, self.store, self.ids, self.classes = name, store, ids, classes
        self.truth, self.seed = labels, seed
        test_fold = folds.make_folds(labels, 4, seed)
        self.test = test_fold == 0
        rng = np.random.default_rng([seed, 40_000])
        hidden = folds.hide_positives(labels, HIDE, rng) & ~self.test[:, None]
        self.observed0 = np.where(hidden, 0, labels).astype(np.uint8)
        recipe = dict(RECIPES[name], epochs=2, hidden=[16]) if smoke else RECIPES[name]
        self.cfg = configs.from_dict({"experiment": {"name": f"review-{name}", "seed": seed},
                                      "heads": {**recipe, "methods": ["ce", "ignore_missing"]},
                                      "model": {"method": "ce", "validation": 0.1, "folds": 4}},
                                     source=f"bench/review.py ({name})")
        pool = np.flatnonzero(~self.test)
        inner = np.full(len(labels), 4, np.int8)  # the test rows: held out of the final fit (fold 4)
        inner[pool] = folds.make_folds(self.observed0[pool], 4, seed + 1)
        self.inner = inner
        self.held = np.zeros((5, len(labels)), bool)
        val = folds.held_out(self.observed0[pool], 0.1, seed + 2)
        for k in range(5):
            self.held[k, pool[val]] = True
            if k < 4:
                self.held[k, self.test] = True  # an out-of-fold model never trains on test rows

    def fit(self, observed: np.ndarray, verified: np.ndarray, method: str = "ce", out_of_fold: bool = True):
        """(test mAP of the final fit, the pool's out-of-fold probabilities or None)."""
        known = (observed == 1) | verified
        rows = final.LabelledRows(Path("bench"), self.ids, self.classes, self.truth, observed, self.inner,
                                  self.held, "0", f"review-{self.name}-{self.seed}",
                                  known if verified.any() else None,
                                  ground_truth=True)
        grid = {method: [search.points(self.cfg, method)[0]]}
        folds_to_fit = range(5) if out_of_fold else [4]
        fitted = {k: final.fit_task(self.cfg, rows, str(self.store),
                                    HeadRun(self.seed, k, "0", method), grid, 0,
                                    True) for k in folds_to_fit}
        test = fitted[4]
        test_map = float(metrics.mean_average_precision(self.truth[test.test], test.probabilities))
        if not out_of_fold:
            return test_map, None
        probabilities = np.full(self.truth.shape, np.nan, np.float32)
        for k in range(4):
            probabilities[fitted[k].test] = fitted[k].probabilities
        return test_map, probabilities

    def suggestion_scores(self, probabilities, observed, accepted: int) -> np.ndarray:
        """P(hidden positive) of every entry from out-of-fold probabilities (NaN on test rows)."""
        pool = ~self.test
        rate = missing_share(observed[pool], accepted, self.observed0[pool])
        scores = np.full(self.truth.shape, np.nan)
        scores[pool] = suggest.model_scores(probabilities[pool], observed[pool], rate)
        return scores


def missing_share(observed: np.ndarray, accepted: int, observed0: np.ndarray) -> float:
    """The share of true positives still missing, as `model.review` estimates it: the expected
    missing count at the start (observed x HIDE / (1 - HIDE)) less what was accepted."""
    expected = observed0.sum() * HIDE / (1 - HIDE)
    return max(expected - accepted, 1.0) / (observed0.sum() + expected)


def reviewed(study: Study, scores: np.ndarray, observed, verified, budget: int, accept_all: bool = False):
    """The top `budget` suggestions (at most 3 a row) decided: by the truth, or all accepted."""
    pool = ~study.test
    s = np.where(pool[:, None], scores, np.nan)
    rows, classes = suggest.pick(s, observed, 3, budget, verified)
    hits = study.truth[rows, classes] == 1
    observed, verified = observed.copy(), verified.copy()
    if accept_all:
        observed[rows, classes] = 1
    else:
        observed[rows[hits], classes[hits]] = 1
        verified[rows[~hits], classes[~hits]] = True
    return observed, verified, int(hits.sum()), len(rows)


def random_review(study: Study, observed, verified, budget: int, rng) -> int:
    """Hidden positives among `budget` random unobserved pool entries."""
    candidates = np.argwhere((observed == 0) & ~verified & ~study.test[:, None])
    picked = candidates[rng.choice(len(candidates), min(budget, len(candidates)), replace=False)]
    return int((study.truth[picked[:, 0], picked[:, 1]] == 1).sum())


def prior_review(study: Study, observed, verified, budget: int) -> int:
    """Hidden positives among the `budget` unobserved pool entries the class prior ranks first."""
    pool = ~study.test
    prior = np.tile(observed[pool].mean(0), (len(observed), 1)).astype(np.float64)
    prior[~pool] = np.nan
    rows, classes = suggest.pick(prior, observed, 3, budget, verified)
    return int((study.truth[rows, classes] == 1).sum())


def rounds(study: Study) -> list[dict]:
    """Every fit of one set and seed: the baseline, the oracle, each review round, self-training."""
    n_pool = int((~study.test).sum())
    none = np.zeros(study.truth.shape, bool)
    base_map, probabilities = study.fit(study.observed0, none)
    oracle_map, _ = study.fit(study.observed0, none, "ignore_missing", out_of_fold=False)
    out = [{"fit": "CE on observed labels", "reviews_per_row": 0.0, "test_mAP": base_map},
           {"fit": "IM-WCE (oracle)", "reviews_per_row": 0.0, "test_mAP": oracle_map}]
    rng = np.random.default_rng([study.seed, 41])
    for variant in ("reviewer", "self-training"):
        observed, verified, probs, spent, found, accepted = study.observed0, none, probabilities, 0, 0, 0
        for budget in BUDGETS:
            step = round(budget * n_pool) - spent
            scores = study.suggestion_scores(probs, observed, accepted)
            if variant == "reviewer":
                random_found = random_review(study, observed, verified, step, rng)
                prior_found = prior_review(study, observed, verified, step)
            observed, verified, hits, listed = reviewed(study, scores, observed, verified, step,
                                                        accept_all=variant == "self-training")
            spent, found, accepted = spent + listed, found + hits, accepted + (hits if variant == "reviewer"
                                                                               else listed)
            test_map, probs = study.fit(observed, verified)
            row = {"fit": f"CE after review ({variant})", "reviews_per_row": budget, "test_mAP": test_map,
                   "reviews": spent, "found": found}
            if variant == "reviewer":
                row.update(round_found=hits, round_reviews=listed, random_found=random_found,
                           prior_found=prior_found)
            out.append(row)
    return [dict(r, set=study.name, seed=study.seed,
                 hidden=int(((study.truth == 1) & (study.observed0 == 0)).sum()))
            for r in out]


# cleanlab: the same out-of-fold probabilities ranked both ways


def against_cleanlab(study: Study) -> list[dict]:
    """AP and precision at 1 / 5 of hidden positives among the pool's unobserved entries: the
    project's model scores, the class prior, cleanlab's per-class label quality; and cleanlab's
    flagged set against the project's top list of the same size."""
    from cleanlab.multilabel_classification import filter as cl_filter
    from cleanlab.multilabel_classification import rank as cl_rank

    none = np.zeros(study.truth.shape, bool)
    _, probabilities = study.fit(study.observed0, none)
    pool = ~study.test
    observed, truth, p = study.observed0[pool], study.truth[pool], probabilities[pool].astype(np.float64)
    hidden = (truth == 1) & (observed == 0)
    given = [list(np.flatnonzero(row)) for row in observed]
    quality = per_class(cl_rank.get_label_quality_scores_per_class(given, p), p.shape)
    scores = {"model (project)": suggest.model_scores(p, observed, HIDE),
              "prior": np.tile(observed.mean(0), (len(observed), 1)),
              "cleanlab label quality": 1.0 - quality}
    rows = []
    for name, score in scores.items():
        ranked = suggest.ranked(score, observed)
        candidate = np.isfinite(ranked)
        rows.append({"set": study.name, "seed": study.seed, "ranking": name,
                     "AP": float(metrics.average_precision(hidden[candidate][:, None],
                                                           ranked[candidate][:, None])[0]),
                     "P@1": suggest.precision_at(ranked, hidden, 1),
                     "P@5": suggest.precision_at(ranked, hidden, 5)})
    with warnings.catch_warnings():  # "may not flag all label issues in class": rare classes, per class
        warnings.simplefilter("ignore", UserWarning)
        issues = cl_filter.find_multilabel_issues_per_class(given, p)
    flagged = per_class(issues, p.shape) & (observed == 0)
    n = int(flagged.sum())
    top = np.zeros(flagged.shape, bool)
    if n:
        order = np.argsort(-suggest.ranked(scores["model (project)"], observed), axis=None, kind="stable")[:n]
        top.flat[order] = True
    for name, chosen in (("cleanlab find_label_issues", flagged), ("model (project), as many", top)):
        rows.append({"set": study.name, "seed": study.seed, "ranking": name, "flagged": n,
                     "precision": float(hidden[chosen].mean()) if chosen.any() else np.nan,
                     "recall": float(hidden[chosen].sum() / max(hidden.sum(), 1))})
    return rows


def per_class(result, shape) -> np.ndarray:
    """cleanlab's per-class output (K arrays of N values) as an (N, K) array."""
    values = np.asarray(result)
    return values.T if values.shape == (shape[1], shape[0]) else values


# the report


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation over seeds of every fit's test mAP, and of hidden positives per review."""
    table = table.assign(per_review=table["found"] / table["reviews"],
                         random_per_review=table["random_found"] / table["round_reviews"],
                         prior_per_review=table["prior_found"] / table["round_reviews"])
    grouped = table.groupby(["set", "fit", "reviews_per_row"], sort=False)
    out = grouped[["test_mAP", "per_review", "random_per_review", "prior_per_review"]].agg(["mean", "std"])
    out.columns = [f"{a} {b}" for a, b in out.columns]
    out["seeds"] = grouped.size()
    return out.reset_index()


def gap_closed(table: pd.DataFrame) -> pd.DataFrame:
    """Per set, seed and budget: (reviewed - CE) / (oracle - CE) test mAP."""
    rows = []
    for (name, seed), runs in table.groupby(["set", "seed"]):
        base = runs[runs["fit"] == "CE on observed labels"]["test_mAP"].iloc[0]
        oracle = runs[runs["fit"] == "IM-WCE (oracle)"]["test_mAP"].iloc[0]
        for _, row in runs[runs["fit"].str.startswith("CE after review")].iterrows():
            rows.append({"set": name, "seed": seed, "fit": row["fit"],
                         "reviews_per_row": row["reviews_per_row"],
                         "gap_closed": (row["test_mAP"] - base) / (oracle - base) if oracle != base
                         else np.nan})
    return pd.DataFrame(rows)


def figure(table: pd.DataFrame, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = list(dict.fromkeys(table["set"]))
    fig, axes = plt.subplots(1, len(sets), figsize=(4.2 * len(sets), 3.6), squeeze=False,
                             layout="constrained")
    for ax, name in zip(axes[0], sets):
        mine = table[table["set"] == name]
        for fit, label, colour in (("CE after review (reviewer)", "reviewed, refitted", "#C44E52"),
                                   ("CE after review (self-training)", "self-training (no reviewer)",
                                    "#8172B3")):
            at = mine[mine["fit"] == fit].groupby("reviews_per_row")["test_mAP"]
            ax.errorbar(at.mean().index, at.mean(), yerr=at.std(), marker="o", color=colour, label=label)
        for fit, colour in (("CE on observed labels", "#4C72B0"), ("IM-WCE (oracle)", "#55A868")):
            ax.axhline(mine[mine["fit"] == fit]["test_mAP"].mean(), color=colour, linestyle="--", label=fit)
        ax.set_title(name)
        ax.set_xlabel("reviews per training row")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("test mAP (mean, bars: std over seeds)")
    axes[0][-1].legend(fontsize=7)
    fig.savefig(path, dpi=130)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sets", default="demo,corel5k,yeast,enron")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--out", default="", help="a folder for the CSVs (and docs/review_map.png beside it)")
    parser.add_argument("--no-cleanlab", action="store_true")
    tiny.add_arguments(parser)
    args = parser.parse_args()
    data = tiny.data_root(args)
    seeds = [0] if args.smoke else [int(s) for s in args.seeds.split(",")]
    sets = ["demo", "yeast"] if args.smoke else args.sets.split(",")
    work = Path(tempfile.mkdtemp(prefix="bench-review-"))
    all_rounds, cleanlab_rows = [], []
    for name in sets:
        loaded = demo_set(work, args.smoke) if name == "demo" else table_set(name, data, work)
        if loaded is None:
            print(f"{name}: no runs/demo features (make demo first); skipped")
            continue
        for seed in seeds:
            start = time.perf_counter()
            study = Study(name, *loaded, seed, args.smoke)
            all_rounds += rounds(study)
            if not args.no_cleanlab:
                cleanlab_rows += against_cleanlab(study)
            print(f"{name} seed {seed}: {time.perf_counter() - start:.0f} s", flush=True)
    table = pd.DataFrame(all_rounds)
    shown = summary(table)
    closed = gap_closed(table).groupby(["set", "fit", "reviews_per_row"])["gap_closed"].agg(["mean", "std"])
    print(shown.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(closed.to_string(float_format=lambda v: f"{v:.3f}"))
    if cleanlab_rows:
        ranked = pd.DataFrame(cleanlab_rows)
        print(ranked.groupby(["set", "ranking"], sort=False).mean(numeric_only=True).drop(columns="seed")
              .to_string(float_format=lambda v: f"{v:.4f}"))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        table.to_csv(out / "review_rounds.csv", index=False, float_format="%.6g")
        shown.to_csv(out / "review_summary.csv", index=False, float_format="%.6g")
        closed.reset_index().to_csv(out / "review_gap_closed.csv", index=False, float_format="%.6g")
        if cleanlab_rows:
            pd.DataFrame(cleanlab_rows).to_csv(out / "review_cleanlab.csv", index=False, float_format="%.6g")
        figure(table, out.parent / "review_map.png")


if __name__ == "__main__":
    main()

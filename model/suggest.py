"""`python -m model suggest`: the labels an annotation probably lacks, ranked for a person to check.

The annotation is a set of labelled rows: a model's rows (`--model DIR`, its out-of-fold
predictions: `model.final`), or the training rows of one fold of a study (`--config C
--protocol P [--fold K]`, the rows' observed labels under that protocol; with `--method M` the
study's heads of M score them, each row by the fold model that held it out as a test row).
Every unobserved entry (o = 0, not a verified negative) gets a score, P(hidden positive | o =
0), from each source:

    <estimator> 1 - w of a confidence estimator (`splits.weights`, calibrated to r) on the
                observed labels alone; `prior` is the class prior (the same for every row: the
                class's observed share, calibrated to r), the baseline every source must beat
    model       the out-of-fold probability p, Platt-scaled per class against the observed
                labels (so that it estimates q = P(o = 1 | x)), turned into P(hidden | x, o = 0)
                as the estimators turn their q (`splits.weights.calibrate`): odds(hidden) =
                odds(q) r / (1 - r), Elkan & Noto's (KDD 2008) ratio in a form that stays a
                probability
    combined    model and estimator as independent evidence beside the prior: odds(combined) =
                odds(model) odds(estimator) / odds(prior)
The suggestions (`--source`: by default the model, or the estimator alone without a model) are
the highest-scoring unobserved entries, at most `--max-per-image` per row and `--budget` in
all. The model is the default because it ranked best where it was measured (AP and precision
at 1 on the demo and on the tests' set; the combination adds a little precision at 5 on the
demo: docs/results.md "What the suggestions find").
Where the truth of the hidden entries is known (a model fitted with [model] hide, or a study's
simulated protocol) the quality of every source is reported beside the suggestions: per row,
precision at 1, 5 and 20 (the share of the row's k highest-scoring unobserved entries that are
hidden positives (all of them when it has fewer than k), over the rows with at least one
hidden positive), the average precision over every
unobserved entry, and the precision of the suggestion list itself.
suggestions.csv's text cells (keys, class names) are spreadsheet-safe (`artifacts.cells`: a
cell a spreadsheet would run as a formula carries a leading single quote).
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

import artifacts
import metrics
from heads import predictions
from heads.inputs import missing_rate
from heads.predictions import HeadRun
from splits import store as splits_store
from splits import weights

from . import directory

AT = (1, 5, 20)
BLOCK_ROWS = 16_384
EPSILON = 1e-6


def odds(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, EPSILON, 1 - EPSILON)
    return p / (1 - p)


def probability(o: np.ndarray) -> np.ndarray:
    return o / (1 + o)


def platt(probabilities: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """Per class, P(o = 1 | p) by logistic regression of the observed labels on logit(p) (rows
    with a probability); a class without both labels among them keeps p."""
    from sklearn.linear_model import LogisticRegression

    out = probabilities.astype(np.float64).copy()
    rows = ~np.isnan(probabilities).any(1)
    z = np.log(odds(probabilities[rows]))
    for j in range(observed.shape[1]):
        target = observed[rows, j]
        if 0 < target.sum() < len(target):
            fit = LogisticRegression(C=1.0).fit(z[:, j:j + 1], target)
            out[rows, j] = fit.predict_proba(z[:, j:j + 1])[:, 1]
    return out


def model_scores(probabilities: np.ndarray, observed: np.ndarray, rate: float) -> np.ndarray:
    """(n, L) P(hidden | x, o = 0) from out-of-fold probabilities (module docstring); NaN rows stay NaN."""
    return weights.calibrate(platt(probabilities, observed), rate)


class Sources:
    """Every source's (n, L) P(hidden | o = 0) (module docstring), each computed when asked and
    then let go, so that a caller going through them holds one at a time: only the model's, the
    first estimator's and the prior's stay (the combination is made of them). `names` in order:
    each estimator (the class prior among them), and with probabilities the model and its
    combination with the first estimator."""

    def __init__(self, observed: np.ndarray, rate: float, probabilities: np.ndarray | None, estimators):
        if not 0 < rate < 1:
            raise ValueError(f"the missing rate is {rate:g}: suggestions need the share of true positives "
                             "the labels lack; set [dataset] natural_missing_rate (your estimate), or "
                             "[model] hide to simulate")
        self.observed, self.rate, self.probabilities = observed, rate, probabilities
        self.first = estimators[0]
        self.names = list(dict.fromkeys([*estimators, "prior"]))
        if probabilities is not None:
            self.names += ["model", "combined"]
        self._kept = {}

    def __iter__(self):
        return iter(self.names)

    def __contains__(self, name) -> bool:
        return name in self.names

    def __getitem__(self, name: str) -> np.ndarray:
        if name in self._kept:
            return self._kept[name]
        if name == "model":
            score = model_scores(self.probabilities, self.observed, self.rate)
        elif name == "combined":
            score = probability(odds(self["model"]) * odds(self[self.first]) / odds(self["prior"]))
        else:
            score = 1.0 - weights.estimator(name)(self.observed, self.rate).astype(np.float64)
        if name in (self.first, "prior", "model"):
            self._kept[name] = score
        return score


def ranked(score: np.ndarray, observed: np.ndarray, verified: np.ndarray | None = None) -> np.ndarray:
    """(n, L) the score where o = 0, it is no verified negative and the score is known, -inf
    elsewhere (never suggested)."""
    candidate = (observed == 0) & ~np.isnan(score)
    return np.where(candidate if verified is None else candidate & ~verified, score, -np.inf)


def row_blocks(n: int):
    """Slices of `BLOCK_ROWS` rows: what ranks each row's entries works a block at a time, so that
    its sort keys and indices are a block's, not (n, L)."""
    return (slice(start, start + BLOCK_ROWS) for start in range(0, n, BLOCK_ROWS))


def precision_at(score: np.ndarray, hidden: np.ndarray, k: int) -> float:
    """Mean over rows with a hidden positive of the share of hidden positives among the row's k
    highest-scoring unobserved entries (all of them when it has fewer; ties by class order)."""
    shares = []
    for block in row_blocks(len(score)):
        rows = hidden[block].any(1)
        top = np.argsort(-score[block][rows], axis=1, kind="stable")[:, :k]
        scored = np.isfinite(np.take_along_axis(score[block][rows], top, axis=1))
        found = np.take_along_axis(hidden[block][rows], top, axis=1) & scored
        shares.append(found.sum(1) / scored.sum(1))
    shares = np.concatenate(shares) if shares else np.empty(0)
    return float(shares.mean()) if len(shares) else float("nan")


def quality(observed: np.ndarray, truth: np.ndarray, scores, listed: dict, verified=None,
            known=None) -> pd.DataFrame:
    """Per source of `scores` ({name: (n, L)} or `Sources`): precision at `AT` per row, average
    precision over every candidate entry whose truth is `known` (None: all), and the precision of
    its suggestion list (`listed`: source -> (rows, classes) suggested)."""
    hidden = (truth == 1) & (observed == 0)
    return pd.DataFrame([quality_row(name, scores[name], observed, hidden, listed[name], verified, known)
                         for name in scores])


def quality_row(name: str, score: np.ndarray, observed, hidden, picked, verified=None, known=None) -> dict:
    """`quality`'s row of one source."""
    s = ranked(score, observed, verified)
    if known is not None:
        s = np.where(known, s, -np.inf)
    scored = np.isfinite(s)
    ap = metrics.ranked_average_precision(hidden[scored], s[scored])
    if known is not None:  # a suggestion whose truth the dataset does not know is not scored
        judged = known[picked]
        picked = (picked[0][judged], picked[1][judged])
    return {"source": name, **{f"P@{k}": precision_at(s, hidden, k) for k in AT}, "AP": float(ap),
            "listed": len(picked[0]),
            "list precision": float(hidden[picked].mean()) if len(picked[0]) else float("nan"),
            "hidden positives": int(hidden.sum()), "unobserved entries": int(scored.sum())}


def pick(score: np.ndarray, observed: np.ndarray, max_per_image: int, budget: int,
         verified: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(rows, classes) of the suggestions: per row its `max_per_image` highest-scoring unobserved
    entries (never a verified negative), then the `budget` highest of those (0: all), highest first."""
    per_row = min(max_per_image, score.shape[1])
    rows, classes, values = [], [], []
    for block in row_blocks(len(score)):
        s = ranked(score[block], observed[block], None if verified is None else verified[block])
        top = np.argsort(-s, axis=1, kind="stable")[:, :per_row]
        at = np.repeat(np.arange(len(s)), per_row)
        value = s[at, top.ravel()]
        keep = np.isfinite(value)
        rows.append(at[keep] + block.start)
        classes.append(top.ravel()[keep])
        values.append(value[keep])
    if not rows:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    rows, classes, values = np.concatenate(rows), np.concatenate(classes), np.concatenate(values)
    order = np.argsort(-values, kind="stable")
    if budget:
        order = order[:budget]
    return rows[order], classes[order]


class Suggested(NamedTuple):
    """An annotation's suggestions: the source chosen, each source's picks, the list, its quality."""
    source: str
    picked: dict  # {source: (rows, classes) of its list}
    table: pd.DataFrame  # suggestions.csv: rank, key, class, score, every other source's score
    quality: pd.DataFrame | None  # `quality`'s table where the truth is known, else None


def suggestions(annotation: dict, source: str = "", estimator: str = "auto", max_per_image: int = 3,
                budget: int = 0) -> Suggested:
    """The suggestions of an annotation ({keys, classes, observed, truth or None, probabilities or
    None, missing_rate, verified_negative, known}): the chosen source's list with every source's
    score beside it and, where the truth is known, every source's quality. The sources are gone
    through one at a time (`Sources`): the memory of a few (n, L) arrays, not one per source."""
    weights.estimator(estimator)  # an unknown name fails here, naming the known ones
    observed, truth = annotation["observed"], annotation["truth"]
    estimators = [estimator, *weights.ESTIMATORS] if truth is not None else [estimator]
    scores = Sources(observed, annotation["missing_rate"], annotation["probabilities"], estimators)
    source = source or ("model" if annotation["probabilities"] is not None else estimator)
    if source not in scores:
        raise ValueError(f"--source {source!r}: the sources here are {', '.join(scores)}")
    if max_per_image < 1 or budget < 0:
        raise ValueError(f"--max-per-image {max_per_image} / --budget {budget}: at least 1 per image, a "
                         "budget >= 0 (0: no limit)")

    # the chosen source's list, then every source's score at its entries, list and quality
    verified, known = annotation.get("verified_negative"), annotation.get("known")
    picked = {source: pick(scores[source], observed, max_per_image, budget, verified)}
    rows, classes = picked[source]
    table = pd.DataFrame({"rank": np.arange(1, len(rows) + 1),
                          "key": np.asarray(annotation["keys"], object)[rows],
                          "class": np.asarray(annotation["classes"], object)[classes],
                          "score": scores[source][rows, classes]})
    hidden = None if truth is None else (truth == 1) & (observed == 0)
    report = {}
    for name in [source, *(n for n in scores if n != source)]:
        score = scores[name]
        if name != source:
            table[name] = score[rows, classes]
            picked[name] = pick(score, observed, max_per_image, budget, verified)
        if hidden is not None:
            report[name] = quality_row(name, score, observed, hidden, picked[name], verified, known)
    made = None if hidden is None else pd.DataFrame([report[name] for name in scores])
    return Suggested(source, picked, table, made)


def suggest(annotation: dict, out: Path, source: str = "", estimator: str = "auto", max_per_image: int = 3,
            budget: int = 0) -> pd.DataFrame | None:
    """Write `out` (suggestions.csv) for an annotation (`suggestions`) and, when its truth is
    known, `out`'s quality table beside it (<out>.quality.csv); the quality table, or None."""
    made = suggestions(annotation, source, estimator, max_per_image, budget)
    artifacts.write_csv(out, made.table, float_format="%.6g")
    expected = annotation["observed"].sum() * annotation["missing_rate"] / (1 - annotation["missing_rate"])
    print(f"{out}: {len(made.table)} suggestion(s) by {made.source} (at most {max_per_image} per row"
          + (f", {budget} in all" if budget else "")
          + f"); about {expected:.0f} positives are expected missing")
    if made.quality is None:
        return None
    artifacts.write_csv(out.with_name(out.stem + ".quality.csv"), made.quality, float_format="%.6g")
    print(made.quality.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    return made.quality


def from_model(path) -> dict:
    """The annotation of a model directory: its rows as trained, scored out of fold."""
    model = directory.load(path)
    oof = directory.out_of_fold(model)
    known = oof.get("known")
    return {"keys": oof["ids"], "classes": model.classes, "observed": oof["observed"],
            "truth": oof["labels"] if oof["attrs"].get("hidden") else None,
            "probabilities": oof["probabilities"],
            "missing_rate": float(oof["attrs"]["missing_rate"]), "where": model.path, "known": known,
            "verified_negative": None if known is None else known & (oof["labels"] == 0)}


def from_study(cfg, protocol: str, fold: int = 1, method: str = "") -> dict:
    """The annotation of a study's fold: its training (and validation) rows' observed labels
    under `protocol`; with `method`, each row's probabilities from the study's run of the fold
    that held it out as a test row (every other fold's run must be complete)."""
    sf = splits_store.load(splits_store.path(cfg))
    if not 1 <= fold <= sf.n_folds:
        raise ValueError(f"--fold {fold}: {sf.path} has folds 1..{sf.n_folds}")
    key = splits_store.protocol_key(protocol)
    rows = np.flatnonzero(sf.test_fold != fold - 1)
    observed = sf.observed(fold - 1, key)[rows]
    verified = sf.verified_negative(fold - 1, key)
    probabilities = None
    if method:
        probabilities = np.full(observed.shape, np.nan)
        position = {row_id: i for i, row_id in enumerate(sf.ids[rows])}
        for other in sorted(set(sf.test_fold[rows].tolist())):
            stored = study_predictions(cfg, sf, HeadRun(cfg.seeds[0], other, key, method))
            probabilities[[position[i] for i in stored["ids"]]] = stored["probabilities"]
    return {"keys": sf.ids[rows], "classes": sf.classes, "observed": observed,
            "truth": sf.labels[rows] if sf.ground_truth else None, "probabilities": probabilities,
            "missing_rate": missing_rate(cfg, sf, fold - 1, key), "where": sf.path, "protocol": key,
            "verified_negative": None if verified is None else verified[rows],
            "known": None if sf.known is None else sf.known[rows]}


def study_predictions(cfg, sf, run: HeadRun) -> dict:
    """The study's predictions of `run` (`heads.predictions.read`), made from the splits `sf`
    holds now; ValueError naming the file and what to run when it is missing or was made from
    other splits (a study split again)."""
    path = predictions.file(cfg, run)
    if not path.is_file():
        raise ValueError(f"{path} does not exist: --method {run.method} scores each row by the study's run "
                         f"of the fold that held it out ({run.label}); run the study's heads first: "
                         f"python -m heads train --config {cfg.source} (make heads)")
    stored = predictions.read(path)
    if stored["provenance"].get("splits") != sf.fingerprint:
        raise ValueError(f"{path} was made from other splits than {sf.path} holds now (the study was split "
                         "again); rerun its heads: python -m heads train --config C --force (make heads "
                         "FORCE=1)")
    return stored

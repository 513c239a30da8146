"""A run's inputs: what a head trains on besides its features, for heads and finetune alike.

TensorFlow-free. `needs(method)` is the one reader of a method's registry flags; every other
module takes what it returns, or the arrays built from it here:

    needs(method)            -> Needs: its loss, and which inputs that loss takes
    missing_rate(...)        the share of true positives an estimator should expect missing
    negative_weights(...)    (n, L) float32 weights of the o = 0 entries, or None
    head_inputs(...)         -> HeadInputs of one (fold, protocol, method): parameters, class
                             weights, negative weights of the training and validation rows, k
    stack(heads, ...)        -> StackInputs: many heads' inputs as `heads.models.HeadStack` takes them

A new per-head input (a constant of each head, like k or the class weights) is an entry of
`HEAD_CONSTANTS` and its value in `head_inputs`, here, and a field of `heads.losses.Inputs` with
its use in the loss: the stack and finetune pass every constant on without naming it.
Negative weights come from a fold's rows: the estimators see observed labels only; "oracle"
reads which positives were hidden; "notebook" reads the ground truth of every image.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

import configs
from splits import weights

from . import methods


class Needs(NamedTuple):
    """What a method's loss takes besides logits and observed labels (from its registry entry)."""
    loss: str  # the function in heads.losses
    class_weights: bool  # observed positives weighted by the paper's pos_weight (L,)
    negatives: str  # "" | oracle | cb | estimator | notebook: where its (n, L) negative weights come from
    estimator: str  # for negatives = "estimator": the splits.weights estimator
    weighted: bool  # the loss multiplies o = 0 entries by negative weights (ones when `negatives` is "")
    # "" | estimates (ROLE) | corrections (LL-Cp) | pseudo_negatives (EM+APL): per-row state in the stack
    state: str
    k: bool  # it takes k, the expected number of positives per row
    oracle: bool  # it reads ground truth beyond the observed labels
    prior: bool = False  # it takes the class prior (L,) of the known training labels (CSL)
    pseudo: bool = False  # it takes pseudo-positives (n, L) from [heads] scores (Score-PL)


# Per-head inputs: the `heads.losses.Inputs` field each fills (with a leading head axis) and
# whether a loss of a method's `Needs` receives it. Every head has a value (`head_inputs` gives
# one that the method's loss ignores where it takes none), so a stack can hold them all.
HEAD_CONSTANTS: dict[str, Callable[[Needs], bool]] = {
    "pos_weight": lambda kind: kind.class_weights,  # (L,) class weights of observed positives; ones if none
    "k": lambda kind: True,  # () expected positives per row (EPR, ROLE); 0 where the method takes none
    "prior": lambda kind: kind.prior,  # (L,) class prior of the known training labels (CSL); zeros if none
}


def given_constants(kind: Needs, constants: dict) -> dict:
    """The entries of `constants` (name -> value) that a loss of `kind` receives."""
    return {name: value for name, value in constants.items() if HEAD_CONSTANTS[name](kind)}


def needs(name: str) -> Needs:
    """The inputs method `name` needs: the only place that reads a method's flags."""
    method = methods.get(name)
    return Needs(loss=method.loss, class_weights=method.class_weights, negatives=method.negatives,
                 estimator=method.estimator, weighted=bool(method.negatives) or method.loss == "weighted_ce",
                 state=method.state, k="k" in method.params, oracle=method.oracle, prior=method.prior,
                 pseudo=method.pseudo)


def check_truth(names, ground_truth: bool, where) -> None:
    """ValueError for an oracle method when `where` (a splits.h5) holds no ground truth."""
    oracles = [name for name in names if needs(name).oracle]
    if oracles and not ground_truth:
        raise ValueError(f"{oracles[0]} is an oracle: it reads the ground truth of every row, and {where} "
                         "holds none (its labels are not the truth of its test rows); drop it from the "
                         "methods")


def check_stateless(names, where: str, key: str) -> None:
    """ValueError for a method that keeps per-image state across epochs (ROLE, LL-Cp): a
    training run that streams images end to end (finetune) keeps none."""
    stateful = [name for name in names if needs(name).state]
    if stateful:
        raise ValueError(f"{where}: {key} holds {stateful[0]!r}, which keeps per-image state across epochs; "
                         "finetune trains the stateless methods (train it as a head)")


def missing_rate(cfg, sf, fold: int, protocol: str) -> float:
    """The share of true positives an estimator should expect missing: the protocol's, with
    [dataset] natural_missing_rate on top: 1 - (1 - natural) (1 - protocol's)."""
    return 1 - (1 - cfg.dataset.natural_missing_rate) * (1 - sf.missing_rate(fold, protocol))


def negative_weights(name: str, labels: np.ndarray, observed: np.ndarray, rows: np.ndarray,
                     missing_rate: float | None = None,
                     verified_negative: np.ndarray | None = None) -> np.ndarray | None:
    """The method's negative weights for `rows` (indices into the (N, L) `labels` / `observed`),
    None when the method takes none. Estimators see `observed[rows]` only (one estimate over
    those rows); `missing_rate`: the share of true positives missing from `observed`;
    `verified_negative` (N, L) bool: verified negatives, weighted 1 (never a hidden positive)."""
    kind = needs(name)
    seen = observed[rows]
    if kind.negatives == "oracle":
        out = weights.im_weights(labels[rows], seen)
    elif kind.negatives == "cb":
        out = weights.cb_weights(seen)
    elif kind.negatives == "estimator":
        out = weights.estimator(kind.estimator)(seen, missing_rate)
    elif kind.negatives == "notebook":
        out = notebook_weights(labels)[rows]
    else:
        return None
    if verified_negative is not None:
        out[verified_negative[rows]] = 1.0
    return out


def notebook_weights(labels: np.ndarray) -> np.ndarray:
    """(N, L) the CB weight as the paper's notebook computed it (MSCOCO-preprocessing, cells
    11-12): every row's pattern and every count taken from the labels of all N rows of the split,
    test rows included, once for every fold and ratio; 0 on a row's own positives, so 0 on every
    hidden positive too. The same formula as `cb_weights`, on the ground truth."""
    return weights.cb_weights(labels)


def fold_negative_weights(name: str, labels: np.ndarray, observed: np.ndarray, train: np.ndarray,
                          validation: np.ndarray, missing_rate: float | None = None, verified_negative=None):
    """(training, validation) negative weights of one fold, or (None, None): one estimate
    (`negative_weights`) over all its rows with observed labels, `train` then `validation`,
    split back."""
    estimate = negative_weights(name, labels, observed, np.concatenate([train, validation]), missing_rate,
                                verified_negative)
    if estimate is None:
        return None, None
    return estimate[:len(train)], estimate[len(train):]


def zero_likely_hidden(negatives: np.ndarray, observed: np.ndarray, share: float, rate: float) -> np.ndarray:
    """`negatives` (n, L) with the o = 0 entries of lowest weight set to 0, as many as `share` x
    the expected hidden count (observed positives x rate / (1 - rate), rate = the share of true
    positives missing), ties broken by position; unchanged when that count rounds to 0."""
    count = int(np.rint(share * observed.sum() * rate / (1.0 - rate)))
    if count <= 0:
        return negatives
    zeros = np.flatnonzero(observed.ravel() == 0)
    pick = zeros[np.argsort(negatives.ravel()[zeros], kind="stable")[:count]]
    out = negatives.copy()
    out.ravel()[pick] = 0.0
    return out


def expected_positives(observed: np.ndarray, missing_rate: float | None) -> float:
    """The expected number of true positives per row, from observed labels (n, L) and the share
    of positives missing: mean observed count / (1 - missing rate)."""
    return float(observed.sum(1).mean()) / (1.0 - (missing_rate or 0.0))


@dataclass
class HeadInputs:
    """One head's inputs over a fold's n training and m validation rows."""
    method: str
    needs: Needs
    params: dict  # resolved parameters (published defaults, [heads.params] on top)
    constants: dict  # HEAD_CONSTANTS name -> float32 value (one its loss ignores where the method takes none)
    # (n, L) float32 weights of the o = 0 entries, None when the method has none
    negative_weights: np.ndarray | None
    val_negative_weights: np.ndarray | None  # (m, L) float32, from the same estimate
    missing_rate: float
    # (n, L) float32 pseudo-positives (Score-PL), None when the method takes none
    pseudo: np.ndarray | None = None
    val_pseudo: np.ndarray | None = None  # (m, L) float32
    # (training (n, L), validation (m, L)) score rows the pseudo-positives come from
    scores: tuple | None = None


def class_prior(observed: np.ndarray, verified_negative: np.ndarray | None) -> np.ndarray:
    """(L,) each class's share of positives among its known training labels (positives and
    verified negatives; without verified negatives, among all rows): CSL's prior, which its
    reference takes from a first model's mean predictions instead."""
    positives = observed.sum(0, dtype=np.float64)
    known = positives + (verified_negative.sum(0) if verified_negative is not None
                         else len(observed) - positives)
    return np.divide(positives, known, out=np.zeros_like(positives), where=known > 0).astype(np.float32)


def pseudo_positives(scores: np.ndarray, observed: np.ndarray, temperature: float,
                     theta: float) -> np.ndarray:
    """(n, L) float32: VLPL's rule on any scores: a row's softmax over classes of scores /
    temperature, above theta on an unobserved entry, makes it a pseudo-positive."""
    z = scores / temperature
    z = np.exp(z - z.max(1, keepdims=True))
    return ((z / z.sum(1, keepdims=True) > theta) & (observed == 0)).astype(np.float32)


def score_matrix(cfg, sf) -> np.ndarray:
    """(N, L) [heads] scores for splits file `sf`'s rows and classes: a CSV / TSV whose first
    column holds the row keys and whose other columns are named by class (any order), or an
    (N, L) array (.npy, .npz, .mat, .h5) in splits.h5's row and class order; ValueError naming
    the file, row or class that does not match."""
    from features import importer

    path = cfg.heads.scores
    if not path:
        raise ValueError(f"{cfg.source}: Score-PL ranks pseudo-labels by a score matrix; set [heads] scores "
                         "to "
                         "its file (a CSV of row keys and one column per class)")
    if importer.suffix(Path(path)) in importer.CSV_SUFFIXES:
        return _score_table(path, sf)
    table = importer.read_features(path, configs.Dataset(features_key=cfg.dataset.features_key))
    scores = np.asarray(table.features.toarray() if hasattr(table.features, "toarray") else table.features)
    if scores.shape != sf.labels.shape:
        raise ValueError(f"{path}: scores of shape {scores.shape}; {sf.path} has {sf.labels.shape} (rows x "
                         "classes): "
                         "give them in its row and class order, or as a CSV keyed by row")
    return scores.astype(np.float64)


def _score_table(path: str, sf) -> np.ndarray:
    import pandas as pd

    frame = pd.read_csv(path, sep="\t" if path.endswith((".tsv", ".tsv.gz")) else ",", index_col=0)
    frame.index = frame.index.astype(str)
    missing = [c for c in sf.classes if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: no column for class {missing[0]!r} ({len(missing)} of {len(sf.classes)} "
                         "missing); "
                         "its columns must be the dataset's classes")
    absent = [key for key in sf.ids if key not in frame.index]
    if absent:
        raise ValueError(f"{path}: no row {absent[0]!r} ({len(absent)} of {len(sf.ids)} rows missing); its "
                         "first "
                         "column must hold the dataset's row keys")
    scores = frame.loc[list(sf.ids), list(sf.classes)].apply(pd.to_numeric,
                                                             errors="coerce").to_numpy(np.float64)
    if not np.isfinite(scores).all():
        i, j = np.argwhere(~np.isfinite(scores))[0]
        raise ValueError(f"{path}: row {sf.ids[i]!r} class {sf.classes[j]!r} holds "
                         f"{frame.loc[sf.ids[i], sf.classes[j]]!r}; scores must be finite numbers")
    return scores


def resolved(params: dict, epochs: int) -> dict:
    """`params` with the data-derived defaults a loss reads filled in: `epochs` ([heads] epochs)
    and `warmup` (half of them)."""
    out = dict(params)
    if "epochs" in out and out["epochs"] is None:
        out["epochs"] = float(epochs)
    if "warmup" in out and out["warmup"] is None:
        out["warmup"] = float(out["epochs"] // 2)
    return out


def head_inputs(cfg, sf, fold: int, protocol: str, method: str, train: np.ndarray, validation: np.ndarray,
                observed: np.ndarray | None = None, params: dict | None = None) -> HeadInputs:
    """A head's inputs for `method` on (fold, protocol) of splits file `sf`, over the `train` and
    `validation` rows. Class weights come from the observed training labels, or from fold 1's
    full labels under heads.paper_exact (as the notebooks). `observed`: the protocol's (N, L)
    observed labels when the caller has them read already; `params`: the resolved parameters
    (a grid point's), else the method's ([heads.params] on its defaults)."""
    kind = needs(method)
    seen = sf.observed(fold, protocol) if observed is None else observed
    verified = sf.verified_negative(fold, protocol)
    rate = missing_rate(cfg, sf, fold, protocol)
    params = methods.configured(cfg, method) if params is None else dict(params)
    params = resolved(params, cfg.heads.epochs)
    negative_weights, val_weights = fold_negative_weights(method, sf.labels, seen, train, validation,
                                                          rate, verified)
    class_rows = sf.labels[sf.test_fold != 0] if cfg.heads.paper_exact else seen[train]
    pos_weight = weights.pos_weight(class_rows) if kind.class_weights else np.ones(len(sf.classes),
                                                                                   np.float32)
    k = 0.0
    if kind.k:
        k = params["k"] if params["k"] is not None else expected_positives(seen[train], rate)
    prior = class_prior(seen[train], None if verified is None else verified[train]) if kind.prior else \
        np.zeros(len(sf.classes), np.float32)
    constants = {"pos_weight": pos_weight.astype(np.float32), "k": np.float32(k), "prior": prior}
    scores = None
    if kind.pseudo:
        matrix = score_matrix(cfg, sf)
        scores = (matrix[train], matrix[validation])
    head = HeadInputs(method, kind, unzeroed(params), constants, negative_weights, val_weights, rate,
                      scores=scores)
    return with_params(head, params, seen, train, validation)


def unzeroed(params: dict) -> dict:
    """`params` with no `zero` share: what a run's shared arrays are made at (`with_params` then
    applies each grid point's)."""
    return {**params, "zero": 0.0} if "zero" in params else params


def with_params(head: HeadInputs, params: dict, observed: np.ndarray, train: np.ndarray,
                validation: np.ndarray) -> HeadInputs:
    """`head` (made at its method's own parameters) at other `params` (a grid point): the same
    arrays, except negative weights with another `zero` share, re-derived from `head`'s (which
    must have been made at zero = 0), and pseudo-positives at the point's temperature and theta."""
    # the run's epochs, resolved in head_inputs
    params = resolved(params, int(head.params.get("epochs") or 0))
    if head.scores is not None:
        head = dataclasses.replace(
            head,
            pseudo=pseudo_positives(head.scores[0], observed[train], params["temperature"], params["theta"]),
            val_pseudo=pseudo_positives(head.scores[1], observed[validation], params["temperature"],
                                        params["theta"]))
    share = params.get("zero", 0.0)
    if head.negative_weights is None or not share:
        return dataclasses.replace(head, params=dict(params))
    assert not head.params.get("zero")
    return dataclasses.replace(
        head, params=dict(params),
        negative_weights=zero_likely_hidden(head.negative_weights, observed[train], share, head.missing_rate),
        val_negative_weights=zero_likely_hidden(head.val_negative_weights, observed[validation], share,
                                                head.missing_rate))


@dataclass
class StackInputs:
    """What the heads of a stack train on, as NumPy arrays over the n training rows.

    Several heads share one array (their protocol's targets, a ones row of negative weights):
    `target_of` / `weights_of` / `pseudo_of` map each head to its row. `bank` holds every
    per-entry float array a head reads: negative weights and pseudo-positives."""
    methods: list[str]  # (H,)
    needs: list[Needs]  # (H,)
    params: list[dict]  # (H,) resolved parameters
    targets: np.ndarray  # (P, n, L) uint8 observed labels
    target_of: np.ndarray  # (H,) int: the head's row of `targets`
    constants: dict  # HEAD_CONSTANTS name -> (H, ...) float32: pos_weight (H, L), k (H,), prior (H, L)
    bank: np.ndarray  # (W, n, L) float32 per-entry arrays: negative weights, pseudo-positives
    weights_of: np.ndarray  # (H,) int: the head's row of `bank` for its negative weights, -1 for none
    lr_scale: np.ndarray | None = None  # (H,) each head's learning rate / the stack's; None = all 1
    # (P, n, L) uint8 verified negatives per protocol; None: none anywhere
    verified_negative: np.ndarray | None = None
    pseudo_of: np.ndarray | None = None  # (H,) int: the head's row of `bank` for its pseudo-positives, -1


def stack(heads: list[HeadInputs], targets: np.ndarray, target_of, n_val: int = 0, lr_scale=None,
          verified_negative: np.ndarray | None = None):
    """(StackInputs, validation bank (W, m, L)) of `heads`, whose observed labels are rows
    `target_of` of `targets` (P, n, L) and verified negatives those of `verified_negative` (P, n, L)
    (None: none). Heads of a weighted loss without weights of their own share one row of ones;
    heads of other losses get none (-1); heads given the same weights array (grid points of one
    run) share its row; pseudo-positives follow in the bank. lr_scale: (H,) learning rate / the
    stack's."""
    n, n_classes = targets.shape[1:]
    bank, val_bank, weights_of = [], [], []
    ones = None
    shared: dict = {}
    for head in heads:
        if head.negative_weights is not None and id(head.negative_weights) in shared:
            weights_of.append(shared[id(head.negative_weights)])
            continue
        if head.negative_weights is None and head.needs.weighted:
            if ones is None:
                ones = len(bank)
                bank.append(np.ones((n, n_classes), np.float32))
                val_bank.append(np.ones((n_val, n_classes), np.float32))
            weights_of.append(ones)
        elif head.negative_weights is None:
            weights_of.append(-1)
        else:
            shared[id(head.negative_weights)] = len(bank)
            weights_of.append(len(bank))
            bank.append(head.negative_weights)
            val_bank.append(head.val_negative_weights)

    pseudo_of = []
    for head in heads:
        pseudo_of.append(-1 if head.pseudo is None else len(bank))
        if head.pseudo is not None:
            bank.append(head.pseudo)
            val_bank.append(head.val_pseudo)

    def stacked(rows, count):
        return np.stack(rows) if rows else np.zeros((0, count, n_classes), np.float32)

    inputs = StackInputs(
        methods=[h.method for h in heads], needs=[h.needs for h in heads], params=[h.params for h in heads],
        targets=targets, target_of=np.asarray(target_of),
        constants={name: np.stack([h.constants[name] for h in heads]).astype(np.float32)
                   for name in HEAD_CONSTANTS},
        bank=stacked(bank, n), weights_of=np.array(weights_of),
        lr_scale=None if lr_scale is None else np.asarray(lr_scale, np.float64),
        verified_negative=verified_negative, pseudo_of=np.array(pseudo_of))
    return inputs, stacked(val_bank, n_val)

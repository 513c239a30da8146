"""The methods: every loss the heads (and finetune) can train, with its weights and parameters.

One registry, TensorFlow-free, read by the config check, the trainer, finetune and analysis.
An entry says how a method is shown, which loss function of `heads.losses` it uses, what that
loss needs besides logits and observed labels, its parameters with their published defaults,
and whether it reads ground truth (an oracle). Adding a method is one entry here (and its loss
function in `heads.losses` when it brings a new one); `confidence_<estimator>` entries are made
from the estimator registry `splits.weights.ESTIMATORS`.

Inputs a loss may need (`Method.needs`):
    class_weights  the paper's positive weight per class, (L,), from a fold's observed labels
    negatives      per-entry negative weights (n, L): "oracle" (IM-WCE: 0 on hidden
                   positives), "cb" (the paper's CB-WCE), "estimator" (a confidence estimator),
                   "notebook" (the paper's CB weight as its notebook computed it: on the ground
                   truth of every image)
    state          per-training-row state kept by the stack: "estimates" (ROLE's label
                   estimates, logits) or "corrections" (LL-Cp's corrected labels)
Parameters set to None have a data-derived default, said in `PARAMETER_NOTES`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from splits import weights


@dataclass(frozen=True)
class Method:
    name: str
    display: str  # the name in tables and figures
    loss: str  # the function in heads.losses
    source: str  # where the definition comes from
    negatives: str = ""  # "" (none) | oracle | cb | estimator | notebook
    estimator: str = ""  # for negatives = "estimator": the splits.weights estimator
    class_weights: bool = False  # observed positives weighted by the paper's pos_weight
    params: dict = field(default_factory=dict)  # name -> published default (None: data-derived)
    state: str = ""  # "" | estimates | corrections
    oracle: bool = False  # reads ground truth beyond the observed labels

    @property
    def needs(self) -> tuple[str, ...]:
        return tuple(k for k, v in (("class_weights", self.class_weights), ("negatives", self.negatives),
                                    ("state", self.state), ("labels", self.oracle)) if v)


PAPER = "Ibrahim et al., ICMR 2020"
COLE = "Cole et al., CVPR 2021"
KIM = "Kim et al., CVPR 2022"
ZHANG = "Zhang et al., arXiv 2112.07368 (2021)"
LL = {"delta": 0.002}  # Kim'22's delta_rel 0.2 (percent in their code)

_FIXED = [
    Method("ce", "CE", "weighted_ce", PAPER, class_weights=True),
    Method("ignore_missing", "IM-WCE", "weighted_ce", PAPER, negatives="oracle", class_weights=True, oracle=True),
    Method("confidence", "CB-WCE", "weighted_ce", PAPER, negatives="cb", class_weights=True),
    Method("confidence_notebook", "CB-WCE (as published)", "weighted_ce",
           "the paper's notebook MSCOCO-preprocessing, cells 11-12 (README: what the notebooks computed)",
           negatives="notebook", class_weights=True, oracle=True),
    Method("an", "AN", "an", COLE),
    Method("an_ls", "AN-LS", "an_ls", COLE, params={"epsilon": 0.1}),
    Method("wan", "WAN", "wan", COLE, params={"gamma": None}),
    Method("epr", "EPR", "epr", COLE, params={"k": None}),
    Method("role", "ROLE", "role", COLE, params={"k": None, "lr_mult": 10.0}, state="estimates"),
    Method("em", "EM", "em", "Zhou et al., ECCV 2022", params={"alpha": 0.1}),
    Method("focal", "Focal", "focal", "Lin et al., ICCV 2017", params={"gamma": 2.0}),
    Method("asl", "ASL", "asl", "Ridnik et al., ICCV 2021", params={"gamma_pos": 0.0, "gamma_neg": 4.0, "clip": 0.05}),
    Method("hill", "Hill", "hill", ZHANG, params={"margin": 1.0, "gamma": 2.0, "lam": 1.5}),
    Method("splc", "SPLC", "splc", ZHANG, params={"tau": 0.6, "margin": 1.0, "gamma": 2.0}),
    Method("ll_r", "LL-R", "ll_r", KIM, params=LL),
    Method("ll_ct", "LL-Ct", "ll_ct", KIM, params=LL),
    Method("ll_cp", "LL-Cp", "ll_cp", KIM, params=LL, state="corrections"),
]

PARAMETER_NOTES = {
    ("wan", "gamma"): "1 / (L - 1), L = number of classes",
    ("epr", "k"): "expected positives per image: the fold's observed mean / (1 - missing rate)",
    ("role", "k"): "as epr's k",
}


def _registry() -> dict[str, Method]:
    methods = {m.name: m for m in _FIXED}
    for estimator in weights.ESTIMATORS:
        name = f"confidence_{estimator}"
        methods[name] = Method(name, f"CB-WCE[{estimator}]", "weighted_ce", "this project (splits.weights)",
                               negatives="estimator", estimator=estimator, class_weights=True)
    return methods


METHODS = _registry()


def get(name: str) -> Method:
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; known: {', '.join(METHODS)}")
    return METHODS[name]


def display_name(name: str) -> str:
    return get(name).display


def parameters(name: str, overrides: dict | None = None) -> dict:
    """The method's parameters: published defaults updated by `overrides` (checked by name)."""
    method = get(name)
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(method.params))
    if unknown:
        allowed = ", ".join(method.params) or "none"
        raise ValueError(f"method {name!r} has no parameter {unknown[0]!r}; its parameters: {allowed}")
    return {**method.params, **overrides}


def check(methods, params: dict, where: str, key: str = "heads.methods") -> None:
    """ValueError naming `where` for an unknown method, or a parameter table of an unknown or
    unused method / unknown parameter (`params`: method -> {parameter: value})."""
    for name in methods:
        if name not in METHODS:
            raise ValueError(f"{where}: {key} holds {name!r}, which is no method; known: {', '.join(METHODS)}")
    for name, table in params.items():
        if name not in METHODS:
            raise ValueError(f"{where}: [heads.params.{name}]: no method {name!r}; known: {', '.join(METHODS)}")
        try:
            parameters(name, table)
        except ValueError as err:
            raise ValueError(f"{where}: [heads.params.{name}]: {err}") from None


def check_truth(names, ground_truth: bool, where) -> None:
    """ValueError for an oracle method when `where` (a splits.h5) holds no ground truth."""
    oracles = [name for name in names if get(name).oracle]
    if oracles and not ground_truth:
        raise ValueError(f"{oracles[0]} is an oracle: it reads the ground truth of every row, and {where} "
                         "holds none (its labels are not the truth of its test rows); drop it from the methods")


# Negative weights, (n, L) float32, from a fold's rows. The estimators see observed labels only;
# "oracle" reads which positives were hidden; "notebook" reads the ground truth of every image.

def negative_weights(name: str, labels: np.ndarray, observed: np.ndarray, rows: np.ndarray,
                     missing_rate: float | None = None) -> np.ndarray | None:
    """The method's negative weights for `rows` (indices into the (N, L) `labels` / `observed`),
    None when the method takes none. Estimators see `observed[rows]` only (one estimate over
    those rows); `missing_rate`: the share of true positives missing from `observed`."""
    method = get(name)
    seen = observed[rows]
    if method.negatives == "oracle":
        return weights.im_weights(labels[rows], seen)
    if method.negatives == "cb":
        return weights.cb_weights(seen)
    if method.negatives == "estimator":
        return weights.estimator(method.estimator)(seen, missing_rate)
    if method.negatives == "notebook":
        return notebook_weights(labels)[rows]
    return None


def notebook_weights(labels: np.ndarray) -> np.ndarray:
    """(N, L) the CB weight as the paper's notebook computed it (MSCOCO-preprocessing, cells
    11-12): every row's pattern and every count taken from the labels of all N rows of the split,
    test rows included, once for every fold and ratio; 0 on a row's own positives, so 0 on every
    hidden positive too. The same formula as `cb_weights`, on the ground truth."""
    return weights.cb_weights(labels)


def fold_negative_weights(name: str, labels: np.ndarray, observed: np.ndarray, train: np.ndarray,
                          validation: np.ndarray, missing_rate: float | None = None):
    """(training, validation) negative weights of one fold, or (None, None): one estimate
    (`negative_weights`) over all its rows with observed labels, `train` then `validation`,
    split back."""
    estimate = negative_weights(name, labels, observed, np.concatenate([train, validation]), missing_rate)
    if estimate is None:
        return None, None
    return estimate[:len(train)], estimate[len(train):]


def expected_positives(observed: np.ndarray, missing_rate: float | None) -> float:
    """The expected number of true positives per row, from observed labels (n, L) and the share
    of positives missing: mean observed count / (1 - missing rate)."""
    return float(observed.sum(1).mean()) / (1.0 - (missing_rate or 0.0))

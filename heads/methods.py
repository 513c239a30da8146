"""The methods: every loss the heads (and finetune) can train, how it is shown, its parameters.

One registry, TensorFlow-free, read by the config check, `heads.inputs` (the only reader of
the flags below: it turns them into a run's inputs), the trainer, finetune and analysis.
An entry says which loss function of `heads.losses` a method uses, what that loss needs
besides logits and observed labels, its parameters with their published defaults, whether it
reads ground truth (an oracle), and how tables and figures show it (display name, family,
order, colour). Adding a method is one entry here (and its loss function in `heads.losses`
when it brings a new one); `confidence_<estimator>` entries are made from the estimator
registry `splits.weights.ESTIMATORS`.

Flags (read by `heads.inputs.needs`):
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
    # presentation (analysis names no method): figures and tables read these
    family: str = "field"  # paper (CE and its weighted variants) | estimator (CB-WCE[estimator]) | field
    order: int = 3  # rows and legends: by order, then by display name
    colour: str = ""  # its colour in figures; "" = the next of the shared palette
    represents: bool = False  # stands for its family in the paper's figures when it is in the grid


PAPER = "Ibrahim et al., ICMR 2020"
COLE = "Cole et al., CVPR 2021"
KIM = "Kim et al., CVPR 2022"
ZHANG = "Zhang et al., arXiv 2112.07368 (2021)"
LL = {"delta": 0.002}  # Kim'22's delta_rel 0.2 (percent in their code)

_FIXED = [
    Method("ce", "CE", "weighted_ce", PAPER, class_weights=True, family="paper", order=0, colour="#4C72B0"),
    Method("ignore_missing", "IM-WCE", "weighted_ce", PAPER, negatives="oracle", class_weights=True, oracle=True,
           family="paper", order=1, colour="#55A868"),
    Method("confidence", "CB-WCE", "weighted_ce", PAPER, negatives="cb", class_weights=True, family="paper",
           order=2, colour="#C44E52"),
    Method("confidence_notebook", "CB-WCE (as published)", "weighted_ce",
           "the paper's notebook MSCOCO-preprocessing, cells 11-12 (docs/notebooks.md)",
           negatives="notebook", class_weights=True, oracle=True, family="paper"),
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
                               negatives="estimator", estimator=estimator, class_weights=True, family="estimator",
                               represents=estimator == "auto")
    return methods


METHODS = _registry()
BASELINE = "ce"  # what the paired tests compare every method with
FAMILIES = {"paper": "CE and its weighted variants", "estimator": "the confidence estimators",
            "field": "the field's losses"}
FIGURE_FAMILIES = ("paper", "estimator")  # the families the paper's figures draw (the rest: a heatmap)


def get(name: str) -> Method:
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; known: {', '.join(METHODS)}")
    return METHODS[name]


def display_name(name: str) -> str:
    return get(name).display


def by_display(display: str) -> Method:
    """The method shown as `display` in tables and figures."""
    for method in METHODS.values():
        if method.display == display:
            return method
    raise ValueError(f"no method is shown as {display!r}; shown: {', '.join(m.display for m in METHODS.values())}")


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

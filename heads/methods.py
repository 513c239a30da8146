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
    prior          the class prior (L,) from a fold's known training labels (CSL)
    pseudo         pseudo-positives (n, L) from a score file ([heads] scores: Score-PL)
    negatives      per-entry negative weights (n, L): "oracle" (IM-WCE: 0 on hidden
                   positives), "cb" (the paper's CB-WCE), "estimator" (a confidence estimator),
                   "notebook" (the paper's CB weight as its notebook computed it: on the ground
                   truth of every image)
    state          per-training-row state kept by the stack: "estimates" (ROLE's label
                   estimates, logits), "corrections" (LL-Cp's corrected labels) or
                   "pseudo_negatives" (EM+APL's soft pseudo-negatives, chosen after each epoch)
Every method takes verified negatives where the labels have them (`heads.losses`: three states).
Parameters set to None have a data-derived default, said in `PARAMETER_NOTES`.

Search (`[heads.search]`, `heads.search`): each entry's `search` maps some of its parameters to
the values tried, centred on the published default (our grids: the papers publish defaults, and
Cole'21 / Kim'22 say they searched, not over what for every loss); the learning rate is searched
for every method (`LR_FACTORS` x [heads] learning_rate unless the config lists rates). Every
value of a parameter, searched or set, must lie in its `RANGES` entry.
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
    state: str = ""  # "" | estimates | corrections | pseudo_negatives
    prior: bool = False  # takes the class prior (L,) of the training rows' known labels
    pseudo: bool = False  # takes pseudo-positives from [heads] scores
    oracle: bool = False  # reads ground truth beyond the observed labels
    # presentation (analysis names no method): figures and tables read these
    family: str = "field"  # paper (CE and its weighted variants) | estimator (CB-WCE[estimator]) | field
    order: int = 3  # rows and legends: by order, then by display name
    colour: str = ""  # its colour in figures; "" = the next of the shared palette
    represents: bool = False  # stands for its family in the paper's figures when it is in the grid
    search: dict = field(default_factory=dict)  # parameter -> the values [heads.search] tries


PAPER = "Ibrahim et al., ICMR 2020"
COLE = "Cole et al., CVPR 2021"
KIM = "Kim et al., CVPR 2022"
CSL = "Ben-Baruch et al., CVPR 2022"
ZHANG = "Zhang et al., arXiv 2112.07368 (2021)"
LL = {"delta": 0.002}  # Kim'22's delta_rel 0.2 (percent in their code)
LL_GRID = {"delta": (0.001, 0.002, 0.004)}
# how a confidence method's negative weights w enter its loss: w ** power, and the `zero` share of
# the expected hidden count (observed positives x r / (1 - r)) set to 0 where w is lowest
WEIGHTING = {"power": 1.0, "zero": 0.0}
WEIGHTING_GRID = {"power": (1.0, 3.0), "zero": (0.0, 1.0)}

_FIXED = [
    Method("ce", "CE", "weighted_ce", PAPER, class_weights=True, family="paper", order=0, colour="#4C72B0"),
    Method("ignore_missing", "IM-WCE", "weighted_ce", PAPER, negatives="oracle", class_weights=True,
           oracle=True,
           family="paper", order=1, colour="#55A868"),
    Method("confidence", "CB-WCE", "weighted_ce", PAPER, negatives="cb", class_weights=True, family="paper",
           order=2, colour="#C44E52", params=WEIGHTING, search=WEIGHTING_GRID),
    Method("confidence_notebook", "CB-WCE (as published)", "weighted_ce",
           "the paper's notebook MSCOCO-preprocessing, cells 11-12 (docs/notebooks.md)",
           negatives="notebook", class_weights=True, oracle=True, family="paper"),
    Method("an", "AN", "an", COLE),
    Method("an_ls", "AN-LS", "an_ls", COLE, params={"epsilon": 0.1}, search={"epsilon": (0.05, 0.1, 0.2)}),
    Method("wan", "WAN", "wan", COLE, params={"gamma": None}),
    Method("epr", "EPR", "epr", COLE, params={"k": None}),
    Method("role", "ROLE", "role", COLE, params={"k": None, "lr_mult": 10.0}, state="estimates"),
    Method("em", "EM", "em", "Zhou et al., ECCV 2022", params={"alpha": 0.1},
           search={"alpha": (0.05, 0.1, 0.2)}),
    Method("focal", "Focal", "focal", "Lin et al., ICCV 2017", params={"gamma": 2.0},
           search={"gamma": (1.0, 2.0, 4.0)}),
    Method("asl", "ASL", "asl", "Ridnik et al., ICCV 2021",
           params={"gamma_pos": 0.0, "gamma_neg": 4.0, "clip": 0.05},
           search={"gamma_neg": (2.0, 4.0), "clip": (0.0, 0.05)}),
    Method("hill", "Hill", "hill", ZHANG, params={"margin": 1.0, "gamma": 2.0, "lam": 1.5},
           search={"margin": (0.5, 1.0)}),
    Method("splc", "SPLC", "splc", ZHANG, params={"tau": 0.6, "margin": 1.0, "gamma": 2.0},
           search={"tau": (0.6, 0.7, 0.8)}),
    Method("ll_r", "LL-R", "ll_r", KIM, params=LL, search=LL_GRID),
    Method("ll_ct", "LL-Ct", "ll_ct", KIM, params=LL, search=LL_GRID),
    Method("ll_cp", "LL-Cp", "ll_cp", KIM, params=LL, state="corrections", search=LL_GRID),
    # partial labels (three states) and the single-positive losses since 2022
    # (../shared/LOSSES.md, "Additions")
    Method("partial_ignore", "Ignore", "partial_ignore", "HCP-MLR-PL / mlcpl partial BCE; CSL mode 'ignore'",
           order=4),
    Method("partial_negative", "Negative", "an", "CSL mode 'negative' (unknowns as negatives: AN)", order=4),
    Method("partial_bce", "Partial-BCE", "partial_bce", "Durand et al., CVPR 2019",
           params={"g_alpha": -4.45, "g_beta": 5.45, "g_gamma": 1.0}, order=4),
    Method("csl", "CSL", "csl", CSL, prior=True, order=4,
           params={"gamma_pos": 0.0, "gamma_neg": 1.0, "gamma_unknown": 4.0, "clip": 0.0,
                   "prior_threshold": 0.5,
                   "likelihood_topk": 5.0},  # the README's recipe (RPS); its FPC recipe: gamma_neg 3
           search={"gamma_neg": (1.0, 3.0), "gamma_unknown": (2.0, 4.0)}),
    Method("gr", "GR", "gr", "Chen et al., IJCAI 2024 (arXiv 2405.03501)", order=4,
           params={"w0": 0.0, "w_end": 2.0, "b0": -2.0, "b_end": -2.0, "mu0": 0.5, "mu_end": 0.8,
                   "sigma0": 2.0,
                   "sigma_end": 0.5, "q2": 0.01, "q3": 1.0, "epochs": None, "first": 0.0},
           search={"q2": (0.01, 0.1), "mu_end": (0.5, 0.8)}),
    Method("em_apl", "EM+APL", "em_apl", "Zhou et al., ECCV 2022", state="pseudo_negatives", order=4,
           params={"alpha": 0.1, "beta": 0.9, "theta": 0.9, "warmup": None, "epochs": None},
           search={"alpha": (0.05, 0.1, 0.2), "beta": (0.2, 0.9)}),
    Method("score_pl", "Score-PL", "score_pl", "Xing et al., CVPR'24 workshop (VLPL), for any score matrix",
           pseudo=True, order=4, params={"alpha": 0.1, "beta": 0.7, "temperature": 0.01, "theta": 0.3},
           search={"theta": (0.2, 0.3, 0.4)}),
]

PARAMETER_NOTES = {
    ("wan", "gamma"): "1 / (L - 1), L = number of classes",
    ("epr", "k"): "expected positives per image: the fold's observed mean / (1 - missing rate)",
    ("role", "k"): "as epr's k",
    ("gr", "epochs"): "[heads] epochs",
    ("em_apl", "epochs"): "[heads] epochs",
    ("em_apl", "warmup"): "half of epochs (Zhou'22's COCO: 5 of 10)",
}


def _registry() -> dict[str, Method]:
    methods = {m.name: m for m in _FIXED}
    for estimator in weights.ESTIMATORS:
        name = f"confidence_{estimator}"
        methods[name] = Method(name, f"CB-WCE[{estimator}]", "weighted_ce", "this project (splits.weights)",
                               negatives="estimator", estimator=estimator, class_weights=True,
                               family="estimator",
                               represents=estimator == "auto", params=WEIGHTING, search=WEIGHTING_GRID)
    return methods


METHODS = _registry()
BASELINE = "ce"  # what the paired tests compare every method with
FAMILIES = {"paper": "CE and its weighted variants", "estimator": "the confidence estimators",
            "field": "the field's losses"}
FIGURE_FAMILIES = ("paper", "estimator")  # the families the paper's figures draw (the rest: a heatmap)


def _at_least(low, strict=False):
    return (lambda v: v > low, f"> {low}") if strict else (lambda v: v >= low, f">= {low}")


def _share(closed_high=False):
    return (lambda v: 0 <= v <= 1, "in [0, 1]") if closed_high else (lambda v: 0 <= v < 1, "in [0, 1)")


# parameter -> (test, what is allowed): every value set or searched (None: the data-derived default)
RANGES = {
    "epsilon": (lambda v: 0 <= v < 0.5, "in [0, 0.5)"), "gamma": _at_least(0), "k": _at_least(0, strict=True),
    "lr_mult": _at_least(0, strict=True), "alpha": _at_least(0), "gamma_pos": _at_least(0),
    "gamma_neg": _at_least(0), "clip": _share(), "margin": _at_least(0), "lam": _at_least(0, strict=True),
    "tau": (lambda v: 0 < v < 1, "in (0, 1)"), "delta": (lambda v: 0 < v < 1, "in (0, 1)"),
    "power": _at_least(0, strict=True), "zero": _share(closed_high=True),
    "beta": _at_least(0), "gamma_unknown": _at_least(0), "prior_threshold": _share(closed_high=True),
    "likelihood_topk": _at_least(0), "w0": (lambda v: True, "a number"),
    "w_end": (lambda v: True, "a number"),
    "b0": (lambda v: True, "a number"), "b_end": (lambda v: True, "a number"),
    "mu0": _share(closed_high=True),
    "mu_end": _share(closed_high=True), "sigma0": _at_least(0, strict=True),
    "sigma_end": _at_least(0, strict=True),
    "q2": (lambda v: 0 < v <= 1, "in (0, 1]"), "q3": (lambda v: 0 < v <= 1, "in (0, 1]"),
    "epochs": _at_least(1), "first": _at_least(0), "theta": (lambda v: 0 < v <= 1, "in (0, 1]"),
    "warmup": _at_least(0), "temperature": _at_least(0, strict=True), "g_alpha": (lambda v: True, "a number"),
    "g_beta": (lambda v: True, "a number"), "g_gamma": (lambda v: True, "a number"),
}
LR_FACTORS = (0.1, 0.3, 1.0, 3.0, 10.0)  # the learning rates searched: these x [heads] learning_rate


def check_value(name: str, parameter: str, value) -> None:
    """ValueError naming the method, parameter and value when `value` is outside its range."""
    if value is None:
        return
    test, allowed = RANGES[parameter]
    if not test(value):
        raise ValueError(f"method {name!r}: parameter {parameter} = {value!r}; it must be {allowed}")


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
    for parameter, value in overrides.items():
        check_value(name, parameter, value)
    return {**method.params, **overrides}


def configured(cfg, name: str) -> dict:
    """The method's parameters in a config: its published defaults, [heads.params.<name>] on top."""
    return parameters(name, cfg.heads.params.get(name))


def check(methods, params: dict, where: str, key: str = "heads.methods") -> None:
    """ValueError naming `where` for an unknown method, or a parameter table of an unknown or
    unused method / unknown parameter (`params`: method -> {parameter: value})."""
    for name in methods:
        if name not in METHODS:
            raise ValueError(f"{where}: {key} holds {name!r}, which is no method; known: "
                             f"{', '.join(METHODS)}")
    for name, table in params.items():
        if name not in METHODS:
            raise ValueError(f"{where}: [heads.params.{name}]: no method {name!r}; known: "
                             f"{', '.join(METHODS)}")
        try:
            parameters(name, table)
        except ValueError as err:
            raise ValueError(f"{where}: [heads.params.{name}]: {err}") from None

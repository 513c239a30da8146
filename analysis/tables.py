"""Collect prediction files into one frame; tables of mean, spread and 95% confidence interval
over all runs (seeds x folds), and paired tests against the registry's baseline.

A run is one `predictions.h5` (heads or finetune, `heads.predictions`). A table's rows are keyed
by (stage, method): the registry id in `method`, never a display string; the `name` column is
the display name (`heads.methods`), prefixed with "finetune " for finetuned runs, for reading
only. Rows, legends and colours follow the registry's presentation (order, colour, family), so
no method is named here.
Statistics, said once: per method x protocol the mean over its runs, the standard deviation
and the 95% t-interval of the mean; against the baseline, the differences paired by (seed, fold), their
mean and 95% t-interval, how many favour each side, the two-sided Wilcoxon signed-rank p over
the pairs and Holm's adjustment of it over every comparison of the same metric. Runs of one
seed share their images across folds and seeds share the data set, so the pairs are not
independent draws: the p-values say how consistent a difference is over the splits studied.
"""
from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
from scipy import stats

import artifacts
from heads import methods, predictions
from heads.inputs import needs
from metrics import evaluate
from runtime import tasks
from splits import store as splits_store

FIELD = ["CP", "CR", "CF1", "OP", "OR", "OF1"]  # `metrics.multilabel`
RULES = ["", "_global", "_class", "_top3"]  # the decision rules, as column suffixes
SCALARS = ["mAP", *[f"{m}{rule}" for rule in RULES for m in FIELD], "micro_auc", "macro_auc"]
# paired tests (those present)
KEY_METRICS = ["mAP", "CF1", "OF1", "OR", "micro_auc", "CF1_class", "OF1_global"]
SIGNIFICANCE = 0.05


# what names a table row's method: the stage and the registry id (never the display name)
KEY = ["stage", "method"]
FINETUNE = "finetune "  # the prefix of a finetuned run's display name


def run_name(stage: str, method: str) -> str:
    """How a run of `method` is shown: its display name, prefixed for a finetuned one."""
    name = methods.display_name(method)
    return name if stage == "heads" else f"{FINETUNE}{name}"


def order_key(key: tuple[str, str]) -> tuple:
    """Where a (stage, method) goes in tables and legends: frozen-feature runs first, then by the
    registry's order, then by display name."""
    stage, method = key
    return stage != "heads", methods.get(method).order, run_name(stage, method)


def keys_in_order(frame: pd.DataFrame) -> list[tuple[str, str]]:
    """The frame's (stage, method) pairs in `order_key` order."""
    return sorted(set(zip(frame["stage"], frame["method"])), key=order_key)


def rows_of(frame: pd.DataFrame, key: tuple[str, str], protocol: str | None = None) -> pd.DataFrame:
    """The frame's rows of one (stage, method), at one protocol when given."""
    pick = (frame["stage"] == key[0]) & (frame["method"] == key[1])
    return frame[pick if protocol is None else pick & (frame["protocol"] == protocol)]


def parse_key(text: str) -> tuple[str, str]:
    """A run key as a command line gives it: a method id ("role", heads) or "finetune/ce"."""
    stage, _, method = text.rpartition("/")
    stage = stage or "heads"
    if stage not in predictions.STAGES:
        raise ValueError(f"{text!r}: a stage is one of {', '.join(predictions.STAGES)} (finetune/ce), or "
                         "none (heads)")
    methods.get(method)
    return stage, method


COLLECT_CHUNK = 256  # runs a process reads and scores at a time, when there are more than one chunk


def collect(cfg, runs: dict, n_jobs: int | None = None,
            chunk: int = COLLECT_CHUNK) -> tuple[pd.DataFrame, dict]:
    """One row per run with its scalar metrics, and per-run per-class arrays keyed by row index.
    `runs`: {(stage, HeadRun): path} of complete prediction files. Read and scored in chunks by
    `n_jobs` processes (default: one a core), in the order given."""
    items = list(runs.items())
    chunks = [items[i:i + chunk] for i in range(0, len(items), chunk)]
    n_jobs = min(n_jobs or os.cpu_count() or 1, len(chunks))
    if n_jobs > 1:
        with tasks.local_pool(n_jobs) as pool:
            parts = list(pool.map(_collect_chunk, chunks))
    else:
        parts = [_collect_chunk(chunk) for chunk in chunks]
    rows = [row for part_rows, _ in parts for row in part_rows]
    per_class = dict(enumerate(arrays for _, part in parts for arrays in part))
    return pd.DataFrame(rows), per_class


def _collect_chunk(items: list) -> tuple[list[dict], list[dict]]:
    """collect's rows and per-class arrays of some runs, in their order."""
    rows, per_class = [], []
    for (stage, run), path in items:
        data = predictions.read(path)
        chosen = json.loads(data.get("search", "{}"))
        clean = chosen.get("select") == "clean"
        val = (data["val_labels" if clean else "val_observed"], data["val_probabilities"]) \
            if "val_probabilities" in data else (None, None)
        metrics = evaluate(data["labels"], data["probabilities"], *val, known=data.get("known"),
                           val_known=None if clean else data.get("val_known"))
        rows.append({"stage": stage, "method": run.method, "name": run_name(stage, run.method),
                     "oracle": needs(run.method).oracle or clean,
                     "protocol": splits_store.protocol_label(run.protocol),
                     "order": splits_store.protocol_order(run.protocol), "seed": run.seed,
                     "fold": run.fold + 1,
                     **{k: v for k, v in metrics.items() if np.isscalar(v)}, "path": str(path),
                     "fingerprint": data.get("fingerprint", "")})
        per_class.append({k: v for k, v in metrics.items() if not np.isscalar(v)})
    return rows, per_class


def protocols_in_order(frame: pd.DataFrame) -> list[str]:
    return list(frame.sort_values("order").drop_duplicates("protocol")["protocol"])


def interval(values: np.ndarray) -> float:
    """Half-width of the 95% t-interval of the mean of `values` (NaN below two values)."""
    values = np.asarray(values, np.float64)
    if len(values) < 2:
        return float("nan")
    return float(stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values)))


def summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean, std and 95% CI half-width over all runs per (stage, method, protocol) of every scalar metric."""
    metrics = [m for m in SCALARS if m in frame.columns]
    out = []
    for (stage, method, protocol), group in frame.groupby([*KEY, "protocol"], sort=False):
        row = {"stage": stage, "method": method, "name": run_name(stage, method), "protocol": protocol,
               "oracle": bool(group["oracle"].iloc[0]), "runs": len(group), "order": group["order"].iloc[0]}
        for metric in metrics:
            values = group[metric].to_numpy(np.float64)
            row.update({f"{metric} mean": values.mean(),
                        f"{metric} std": values.std(ddof=1) if len(values) > 1
                        else float("nan"), f"{metric} ci95": interval(values)})
        out.append(row)
    table = pd.DataFrame(out)
    return _ordered(table)


def _ordered(table: pd.DataFrame, first: str | None = None) -> pd.DataFrame:
    """Rows by protocol, then by `order_key` of their (stage, method) (the registry's order: the
    paper's three first), finetuned ones last."""
    table = table.assign(
        _finetune=table["stage"] != "heads",
        _rank=[methods.get(m).order for m in table["method"]])
    keys = ([first] if first else []) + ["order", "_finetune", "_rank", "name"]
    return table.sort_values(keys).drop(columns=["order", "_finetune", "_rank"]).reset_index(drop=True)


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm's step-down adjustment of a family of p-values (NaN stays NaN)."""
    p = np.asarray(p_values, np.float64)
    adjusted = np.full_like(p, np.nan)
    finite = np.flatnonzero(~np.isnan(p))
    order = finite[np.argsort(p[finite])]
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * p[i]))
        adjusted[i] = running
    return adjusted


def wilcoxon_p(diff: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p of paired differences; NaN when untestable (fewer than
    two pairs, or every difference 0)."""
    diff = np.asarray(diff, np.float64)
    if len(diff) < 2 or not np.any(diff != 0):
        return float("nan")
    return float(stats.wilcoxon(diff).pvalue)


def smallest_p(pairs: int) -> float:
    """The smallest two-sided Wilcoxon p that `pairs` pairs allow: 2 / 2^n (every difference of one sign)."""
    return 2 / 2 ** pairs


def paired_tests(frame: pd.DataFrame) -> pd.DataFrame:
    """Per protocol and method, the (seed, fold)-paired difference to the baseline of the same stage."""
    out = []
    for (stage, method, protocol), group in frame.groupby([*KEY, "protocol"], sort=False):
        if method == methods.BASELINE:
            continue
        base = rows_of(frame, (stage, methods.BASELINE), protocol).set_index(["seed", "fold"])
        paired = group.set_index(["seed", "fold"]).join(base, rsuffix="_base", how="inner")
        if paired.empty:
            continue
        for metric in (m for m in KEY_METRICS if m in frame.columns):
            diff = (paired[metric] - paired[f"{metric}_base"]).to_numpy()
            p = wilcoxon_p(diff)
            out.append({"stage": stage, "method": method, "name": run_name(stage, method),
                        "protocol": protocol,
                        "order": group["order"].iloc[0], "metric": metric,
                        "pairs": len(diff), "mean difference": float(diff.mean()), "ci95": interval(diff),
                        "better": int((diff > 0).sum()), "worse": int((diff < 0).sum()), "wilcoxon p": p})
    table = pd.DataFrame(out)
    if table.empty:
        return table
    table["holm p"] = np.nan
    for metric, rows in table.groupby("metric").groups.items():
        table.loc[rows, "holm p"] = holm(table.loc[rows, "wilcoxon p"].to_numpy())
    table["holds"] = np.where(table["wilcoxon p"] < SIGNIFICANCE,
                              np.where(table["holm p"] < SIGNIFICANCE, "yes (also Holm)", "yes"), "no")
    return _ordered(table, first="metric")


def write(table: pd.DataFrame, stem) -> list:
    """CSV, Markdown and LaTeX versions of a table."""
    paths = [stem.with_suffix(".csv"), stem.with_suffix(".md"), stem.with_suffix(".tex")]
    artifacts.write_csv(paths[0], table, float_format="%.6g")
    artifacts.write_text(paths[1], to_markdown(table) + "\n")
    artifacts.write_text(paths[2], to_latex(table) + "\n")
    return paths


def _cell(value) -> str:
    if isinstance(value, bool | np.bool_):
        return "yes" if value else ""
    if isinstance(value, float | np.floating):
        if np.isnan(value):
            return ""
        return f"{value:.2g}" if 0 < abs(value) < 1e-3 else f"{value:.4f}"
    return str(value)


def to_latex(table: pd.DataFrame) -> str:
    escape = str.maketrans({"_": r"\_", "%": r"\%", "&": r"\&"})
    lines = [r"\begin{tabular}{" + "l" * 2 + "r" * (len(table.columns) - 2) + "}", r"\toprule",
             " & ".join(str(c).translate(escape) for c in table.columns) + r" \\", r"\midrule"]
    lines += [" & ".join(_cell(v).translate(escape) for v in row) + r" \\"
              for row in table.itertuples(index=False)]
    return "\n".join([*lines, r"\bottomrule", r"\end{tabular}"])


def to_markdown(table: pd.DataFrame) -> str:
    """A Markdown table; every cell and column name escaped (`artifacts.markdown_cell`)."""
    lines = ["| " + " | ".join(artifacts.markdown_cell(str(c)) for c in table.columns) + " |",
             "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(artifacts.markdown_cell(_cell(v)) for v in row) + " |"
              for row in table.itertuples(index=False)]
    return "\n".join(lines)

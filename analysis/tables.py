"""Collect prediction files into one frame; tables of mean / std over folds and paired tests.

A run is one `predictions.h5` (heads or finetune). Its method name in tables is the paper's
(CE, IM-WCE, CB-WCE, CB-WCE[estimator]), prefixed with "finetune " for finetuned runs.
"""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from heads.losses import display_name

from .metrics import evaluate

SCALARS = ["micro_precision", "micro_recall", "micro_f1", "macro_precision", "macro_recall", "macro_f1",
           "micro_auc", "macro_auc", "mAP"]
KEY_METRICS = ["micro_f1", "micro_recall", "micro_auc", "mAP"]


def find_runs(run_root: Path) -> list[Path]:
    return sorted(p for stage in ("heads", "finetune") for p in (run_root / stage).glob("fold*/ratio*/*/predictions.h5"))


def load_run(path: Path) -> tuple[dict, dict]:
    """(attributes, metrics) of one complete predictions.h5."""
    with h5py.File(path, "r") as h5:
        if not h5.attrs.get("complete", False):
            raise ValueError(f"{path} is incomplete; rerun its stage")
        attrs = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in h5.attrs.items()}
        val = (h5["val_observed"][:], h5["val_probabilities"][:]) if "val_probabilities" in h5 else (None, None)
        metrics = evaluate(h5["labels"][:], h5["probabilities"][:], *val)
    return attrs, metrics


def collect(run_root: Path) -> tuple[pd.DataFrame, dict]:
    """One row per run with its scalar metrics; and per-run per-class arrays keyed by row index."""
    rows, per_class = [], {}
    for i, path in enumerate(find_runs(run_root)):
        attrs, metrics = load_run(path)
        stage = attrs.get("source", "heads")
        name = display_name(attrs["method"])
        rows.append({"stage": stage, "method": attrs["method"],
                     "name": name if stage == "heads" else f"finetune {name}",
                     "ratio": round(float(attrs["ratio"]), 2), "fold": int(attrs["fold"]),
                     **{k: v for k, v in metrics.items() if np.isscalar(v)}, "path": str(path)})
        per_class[len(rows) - 1] = {k: v for k, v in metrics.items() if not np.isscalar(v)}
    return pd.DataFrame(rows), per_class


def summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over folds per (name, ratio) of every scalar metric."""
    metrics = [m for m in frame.columns if m in SCALARS or m.endswith("_valthr")]
    grouped = frame.groupby(["name", "ratio"])
    table = grouped[metrics].agg(["mean", "std"])
    table.columns = [f"{m} {s}" for m, s in table.columns]
    table.insert(0, "folds", grouped.size())
    return table.reset_index()


def paired_tests(frame: pd.DataFrame, baseline: str = "CE") -> pd.DataFrame:
    """Per ratio and method, the fold-paired difference to the baseline with sign and Wilcoxon tests."""
    from scipy.stats import wilcoxon
    out = []
    for (name, ratio), group in frame.groupby(["name", "ratio"]):
        if name == baseline:
            continue
        base = frame[(frame["name"] == baseline) & (frame["ratio"] == ratio)].set_index("fold")
        paired = group.set_index("fold").join(base, rsuffix="_base", how="inner")
        if paired.empty:
            continue
        for metric in KEY_METRICS:
            diff = (paired[metric] - paired[f"{metric}_base"]).to_numpy()
            p = float(wilcoxon(diff).pvalue) if len(diff) > 1 and np.any(diff != 0) else float("nan")
            out.append({"name": name, "ratio": ratio, "metric": metric, "folds": len(diff),
                        "mean difference": float(diff.mean()), "folds better": int((diff > 0).sum()),
                        "wilcoxon p": p})
    return pd.DataFrame(out)


def write(table: pd.DataFrame, stem: Path) -> list[Path]:
    """CSV, Markdown and LaTeX versions of a table."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".csv"), stem.with_suffix(".md"), stem.with_suffix(".tex")]
    table.to_csv(paths[0], index=False, float_format="%.4f")
    paths[1].write_text(to_markdown(table) + "\n")
    paths[2].write_text(to_latex(table) + "\n")
    return paths


def _cell(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def to_latex(table: pd.DataFrame) -> str:
    escape = str.maketrans({"_": r"\_", "%": r"\%", "&": r"\&"})
    lines = [r"\begin{tabular}{" + "l" * 2 + "r" * (len(table.columns) - 2) + "}", r"\toprule",
             " & ".join(str(c).translate(escape) for c in table.columns) + r" \\", r"\midrule"]
    lines += [" & ".join(_cell(v).translate(escape) for v in row) + r" \\" for row in table.itertuples(index=False)]
    return "\n".join(lines + [r"\bottomrule", r"\end{tabular}"])


def to_markdown(table: pd.DataFrame) -> str:
    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines)

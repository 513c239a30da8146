"""`python -m analysis report`: metrics, tables, figures and report.md for one config's runs.

Reads only `predictions.h5` / `history.csv` files and `splits.h5`; writes under
`runs/<name>/analysis/`. Missing runs are listed; only an empty grid is an error.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

import configs
import splits
from heads.losses import display_name
from splits import store, weights

from . import figures, tables
from .metrics import roc_auc


def expected_runs(cfg, n_folds: int) -> set[tuple[str, float, int]]:
    return {(display_name(m), round(r, 2), k + 1) for m in cfg.heads.methods for r in cfg.splits.ratios
            for k in range(n_folds)}


def weight_curves(sf) -> dict:
    """Per ratio > 0: CB weights of fold 1 on hidden positives and on true negatives, and the AUC."""
    train = sf.train_rows(0)
    truth = sf.labels[train]
    curves = {}
    for r, ratio in enumerate(sf.ratios):
        seen = sf.observed(0, r)[train]
        hidden = (truth == 1) & (seen == 0)
        if not hidden.any():
            continue
        cb = weights.cb_weights(seen)
        zeros = seen == 0
        auc = roc_auc(hidden[zeros].astype(int), 1 - cb[zeros])
        curves[float(ratio)] = (cb[hidden], cb[truth == 0], auc)
    return curves


def histories(run_root: Path, frame: pd.DataFrame) -> dict:
    out = {}
    for row in frame[(frame["fold"] == 1) & (frame["stage"] == "heads")].itertuples():
        path = Path(row.path).parent / "history.csv"
        if path.is_file():
            out[(row.name, row.ratio)] = pd.read_csv(path)
    return out


def findings(summary: pd.DataFrame) -> list[str]:
    """Statements computed from the summary table, one per method: its micro recall, precision
    and mAP as the hidden ratio grows and, at the largest ratio, its difference to CE (of the
    same stage). Nothing here is written by hand."""
    table = summary.set_index(["name", "ratio"])
    lines = []
    for name in figures.method_order(summary["name"]):
        rows = table.loc[name].sort_index()
        ratios = " / ".join(f"{r:g}" for r in rows.index)

        def series(column, rows=rows):
            return " / ".join(f"{v:.3f}" for v in rows[column])

        line = (f"- **{name}** at ratios {ratios}: micro recall {series('micro_recall mean')}, "
                f"micro precision {series('micro_precision mean')}, mAP {series('mAP mean')}")
        ce = "finetune CE" if name.startswith("finetune ") else "CE"
        top = rows.index.max()
        if name != ce and (ce, top) in table.index:
            diff = rows.loc[top] - table.loc[(ce, top)]
            line += (f"; at {top:g} against {ce}: recall {diff['micro_recall mean']:+.3f}, "
                     f"precision {diff['micro_precision mean']:+.3f}, mAP {diff['mAP mean']:+.3f}")
        lines.append(line + ".")
    return lines


def report(cfg) -> Path:
    run_root = cfg.run_dir
    out = run_root / "analysis"
    sf = store.load(splits.splits_path(cfg))
    frame, per_class = tables.collect(run_root)
    if frame.empty:
        raise ValueError(f"no predictions.h5 under {run_root}/heads or {run_root}/finetune; run `make heads` first")
    present = {(r.name, r.ratio, r.fold) for r in frame.itertuples()}
    missing = sorted(expected_runs(cfg, sf.n_folds) - present)
    excluded = frame["classes_without_positives"].max()

    summary = tables.summary(frame)
    paired = tables.paired_tests(frame)
    written = tables.write(summary, out / "summary") + tables.write(paired, out / "paired_vs_ce")
    frame.drop(columns=["path"]).to_csv(out / "runs.csv", index=False, float_format="%.5f")

    ratio = min(cfg.splits.ratios, key=lambda r: abs(r - cfg.analysis.figure_ratio))
    figs = {
        "paper_panel": figures.paper_panel(frame, out / "fig1_paper_panel"),
        "map": figures.map_lines(frame, out / "fig2_map"),
        "true_positives": figures.true_positives(frame, per_class, sf.classes, ratio, cfg.analysis.top_classes,
                                                 out / "fig3_true_positives"),
        "cooccurrence": figures.cooccurrence(sf.labels, sf.classes, out / "fig4_cooccurrence"),
        "weights": figures.weight_quality(weight_curves(sf), out / "fig5_cb_weights"),
        "loss": figures.loss_curves(histories(run_root, frame), out / "fig6_loss"),
    }
    key = summary[["name", "ratio", "folds", "micro_recall mean", "micro_precision mean", "micro_f1 mean",
                   "micro_auc mean", "mAP mean", "mAP std"]]
    lines = [
        f"# Report: {cfg.experiment.name}",
        "",
        (f"{len(frame)} runs from `{run_root}`; {sf.labels.shape[0]} images x {len(sf.classes)} classes, "
        f"{sf.n_folds} folds. Metrics at threshold 0.5 unless marked `_valthr` (per-class thresholds from "
        f"validation rows). Classes without a positive in a test fold are excluded from macro averages "
        f"(at most {excluded} per fold here)."),
        "",
        "## Summary (mean over folds)",
        "",
        "Micro metrics at threshold 0.5 and mAP; the full table with std is `summary.csv` / `.md` / `.tex`.",
        "",
        tables.to_markdown(key),
        "",
        "## What these runs show",
        "",
        *findings(summary),
        "",
        "## Paired differences against CE",
        "",
        ("Fold-paired difference of each method to CE at the same ratio; Wilcoxon signed-rank p over folds "
        "(with 4 folds the smallest possible two-sided p is 0.125)."),
        "",
        tables.to_markdown(paired[paired["metric"].isin(["micro_recall", "mAP"])]) if len(paired) else "(no pairs)",
        "",
        "## Figures",
        "",
        "![paper panel](fig1_paper_panel.png)",
        "Micro recall, precision, F1 and AUC per method as labels go missing (the paper's figure).",
        "",
        "![mAP](fig2_map.png)",
        "mAP is threshold-free: how much of the loss of recall is ranking, how much calibration.",
        "",
        "![true positives](fig3_true_positives.png)",
        f"True positives per class at ratio {ratio:.2f}, summed over folds, beside the number of positives.",
        "",
        "![co-occurrence](fig4_cooccurrence.png)",
        "Label co-occurrence P(j | i): the structure the confidence weights exploit.",
        "",
        "![CB weights](fig5_cb_weights.png)",
        "How well the CB weights single out hidden positives among observed zeros (AUC of 1 - weight).",
        "",
        "![loss](fig6_loss.png)",
        "Training loss per epoch (fold 1).",
        "",
        "## Missing runs",
        "",
        ("none: the grid is complete" if not missing else
         "\n".join(f"- {name}, ratio {r:.2f}, fold {k}" for name, r, k in missing)),
        "",
        "## Provenance",
        "",
        f"- config: `{cfg.source}`",
        f"- packages: {json.dumps(configs.versions())}",
        "",
    ]
    (out / "report.md").write_text("\n".join(lines))
    (out / "config.json").write_text(configs.to_json(cfg))
    print(f"{out / 'report.md'}: {len(frame)} runs, {len(missing)} missing; "
          f"{len(written)} table files, {sum(len(v) for v in figs.values())} figure files")
    return out / "report.md"

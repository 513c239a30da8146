"""`python -m analysis report`: metrics, tables, figures and report.md for one config's runs.

Reads only prediction files (`heads.predictions`), history.csv and the splits and feature
stores; writes under `runs/<name>/analysis/`. Only runs of the config's grids count, and each
must have been made from the current splits, features and settings: a run made otherwise is an
error naming what changed (rerun its stage). Missing runs are listed; an empty grid is an error.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

import artifacts
import configs
from features import store as feature_store
from heads import methods, predictions, search
from metrics import roc_auc
from runtime import tasks
from splits import store as splits_store
from splits import weights

from . import figures, leaderboard, tables

PAIRED = f"paired_vs_{methods.BASELINE}"  # the paired tests' file: every method against the baseline


def ratio_of(label: str) -> float | None:
    """A protocol's ratio from its label in the tables; None for single positive and the
    partial-label protocols."""
    return splits_store.protocol_ratio(splits_store.protocol_key(label))


def grids(cfg, splits_files: dict) -> dict:
    """{(stage, run): path} for every run of the heads and finetune grids, present or not."""
    first = next(iter(splits_files.values()))
    out = {}
    for stage, grid_protocols in (("heads", predictions.configured_protocols(cfg)),
                                  ("finetune", first.protocols)):
        for run in predictions.grid(cfg, stage, first.n_folds, grid_protocols):
            out[(stage, run)] = predictions.file(cfg, run, stage)
    return out


def present_runs(cfg, splits_files: dict) -> tuple[dict, list]:
    """({(stage, run): path} of the complete runs, the missing (stage, run) of every stage that
    has runs); ValueError naming the runs made from other splits, features or settings than the
    current ones."""
    features_path = feature_store.path(cfg)
    features_fp = ""
    if features_path.is_file():
        reader = feature_store.FeatureReader(features_path)
        reader.check_sources()
        features_fp = reader.fingerprint
    present, missing, stale = {}, [], []
    for (stage, run), path in grids(cfg, splits_files).items():
        if not path.is_file():
            missing.append((stage, run))
            continue
        complete, recorded = artifacts.recorded(path)
        if not complete:
            missing.append((stage, run))
            continue
        expected = predictions.expected_provenance(cfg, stage, run, recorded,
                                                   splits_files[run.seed].fingerprint,
                                                   features_fp)
        differences = artifacts.changes(recorded, json.loads(json.dumps(expected, default=str)))
        if differences:
            stale.append(f"{stage} {run.label}: {'; '.join(differences[:4])}")
        present[(stage, run)] = path
    if stale:
        raise ValueError(f"{len(stale)} run(s) were made from other inputs or settings than {cfg.source} "
                         f"gives now; rerun their stage ({artifacts.FORCE_HINT}):\n  "
                         + "\n  ".join(stale[:5]))
    used = {stage for stage, _ in present}
    return present, [(stage, run) for stage, run in missing if stage in used]


def weight_curves(sf) -> dict:
    """Per protocol with hidden positives: CB weights of fold 1 on hidden positives and on true
    negatives, and the AUC of 1 - weight."""
    train = sf.train_rows(0)
    truth = sf.labels[train]
    curves = {}
    for protocol in sf.protocols:
        seen = sf.observed(0, protocol)[train]
        hidden = (truth == 1) & (seen == 0)
        if not hidden.any():
            continue
        cb = weights.cb_weights(seen)
        zeros = seen == 0
        auc = roc_auc(hidden[zeros].astype(int), 1 - cb[zeros])
        curves[splits_store.protocol_label(protocol)] = (cb[hidden], cb[truth == 0], auc)
    return curves


def histories(frame: pd.DataFrame) -> dict:
    out = {}
    first_seed = frame["seed"].min()
    first = frame[(frame["fold"] == 1) & (frame["seed"] == first_seed) & (frame["stage"] == "heads")]
    for row in first.itertuples():
        path = Path(row.path).parent / "history.csv"
        if path.is_file():
            out[((row.stage, row.method), row.protocol)] = pd.read_csv(path)
    return out


def findings(summary: pd.DataFrame, paired: pd.DataFrame) -> list[str]:
    """Statements computed from the summary and paired tables, one per method: micro recall,
    precision and mAP per protocol and, at the last ratio, the difference to the baseline (of the
    same stage) with whether it holds (Wilcoxon p < 0.05). Nothing here is written by hand."""
    lines = []
    for key in tables.keys_in_order(summary):
        rows = tables.rows_of(summary, key)
        protocols = " / ".join(rows["protocol"])

        def series(column, rows=rows):
            return " / ".join(f"{v:.3f}" for v in rows[column])

        line = (f"- **{tables.run_name(*key)}**{' (oracle)' if rows['oracle'].iloc[0] else ''} at "
                f"{protocols}: OR "
                f"{series('OR mean')}, OP {series('OP mean')}, mAP {series('mAP mean')}")
        ratios = [p for p in rows["protocol"] if ratio_of(p) is not None]
        top = ratios[-1] if ratios else rows["protocol"].iloc[-1]
        at = tables.rows_of(paired, key, top).set_index("metric") if len(paired) else None
        if at is not None and len(at):
            parts = [f"{label} {at.loc[m, 'mean difference']:+.3f} ({at.loc[m, 'better']} of "
                     f"{at.loc[m, 'pairs']} "
                     "pairs better, p = "
                     f"{at.loc[m, 'wilcoxon p']:.3g}{'' if at.loc[m, 'holds'] == 'no' else ', holds'})"
                     for m, label in (("OR", "OR"), ("mAP", "mAP")) if m in at.index]
            line += f"; at {top} against {tables.run_name(key[0], methods.BASELINE)}: " + ", ".join(parts)
        lines.append(line + ".")
    return lines


def key_table(summary: pd.DataFrame) -> pd.DataFrame:
    """The report's summary: OF1 and mAP (mean and 95% interval), OR, OP and micro ROC-AUC."""
    table = summary[["name", "protocol", "oracle", "runs"]].copy()
    for metric in ("OF1", "mAP"):
        table[metric] = [f"{m:.3f} ± {c:.3f}" if not np.isnan(c) else f"{m:.3f}"
                         for m, c in zip(summary[f"{metric} mean"], summary[f"{metric} ci95"])]
    for metric in ("OR", "OP", "micro_auc"):
        table[metric] = [f"{m:.3f}" for m in summary[f"{metric} mean"]]
    return table


def report(cfg) -> Path:
    # inputs: the splits of every seed, the runs of the grids, made from them
    methods.check(cfg.heads.methods, cfg.heads.params, cfg.source)
    search.check(cfg)
    splits_files = {seed: splits_store.load(splits_store.path(cfg, seed)) for seed in cfg.seeds}
    sf = splits_files[cfg.seeds[0]]
    present, missing = present_runs(cfg, splits_files)
    if not present:
        raise ValueError(f"no complete predictions.h5 of the config's grid under {cfg.run_dir}; run `make "
                         "heads` first")
    out = artifacts.writable(cfg.run_dir / "analysis")
    with artifacts.claim(out / "report.md"):  # two reports at once: the second is refused, not mixed in
        frame, per_class = tables.collect(cfg, present)
        protocols = tables.protocols_in_order(frame)

        # tables: the leaderboards first, what the search chose, then the long ones
        boards = leaderboard.boards(frame)
        points = leaderboard.collect_search(present)
        chosen = leaderboard.selection(points, cfg, frame) if len(points) else pd.DataFrame()
        summary = tables.summary(frame)
        paired = tables.paired_tests(frame)
        written = tables.write(summary, out / "summary") + tables.write(paired, out / PAIRED)
        artifacts.write_csv(out / "leaderboard.csv", boards.drop(columns=["order"]), float_format="%.6g")
        if len(points):
            artifacts.write_csv(out / "search.csv", points, float_format="%.6g")
            written += tables.write(chosen, out / "selection")
        artifacts.write_csv(out / "runs.csv", frame.drop(columns=["path", "order"]), float_format="%.5f")

        # figures
        figure_protocol = min((p for p in protocols if ratio_of(p) is not None), default=protocols[0],
                              key=lambda p: abs(ratio_of(p) - cfg.analysis.figure_ratio))
        figs = draw_figures(cfg, frame, per_class, points, protocols, figure_protocol, sf, out)

        # the report
        lines = [*board_lines(cfg, frame, boards, protocols), *selection_lines(cfg, chosen),
                 *report_lines(cfg, frame, summary, paired, missing, splits_files, figure_protocol,
                               "field" in figs)]
        artifacts.write_text(out / "report.md", "\n".join(lines))
        artifacts.write_text(out / "config.json", configs.to_json(cfg))
        print(f"{out / 'report.md'}: {len(frame)} runs, {len(missing)} missing; "
              f"{len(written)} table files, {sum(len(v) for v in figs.values())} figure files")
        return out / "report.md"


def draw_figures(cfg, frame, per_class, points, protocols, figure_protocol, sf, out: Path) -> dict:
    """{figure: its files}: every figure the runs allow, drawn by one process a core."""
    shown = figures.focus(frame)
    jobs = {
        "paper_panel": (figures.paper_panel, shown, protocols, out / "fig1_paper_panel"),
        "map": (figures.map_lines, shown, protocols, out / "fig2_map"),
        "true_positives": (figures.true_positives, shown, per_class, sf.classes, figure_protocol,
                           cfg.analysis.top_classes, out / "fig3_true_positives"),
        "cooccurrence": (figures.cooccurrence, sf.labels, sf.classes, out / "fig4_cooccurrence"),
        "weights": (figures.weight_quality, weight_curves(sf), out / "fig5_cb_weights"),
        "loss": (figures.loss_curves, histories(shown), protocols, out / "fig6_loss"),
    }
    if len(shown) < len(frame):
        jobs["field"] = (figures.field_heatmap, frame, protocols, out / "fig7_field")
    if len(points):
        jobs["search"] = (figures.search_scatter, leaderboard.last_epochs(points), protocols,
                          out / "fig8_search")
    n_jobs = min(os.cpu_count() or 1, len(jobs))
    if n_jobs == 1:
        return {name: draw(*args) for name, (draw, *args) in jobs.items()}
    with tasks.local_pool(n_jobs) as pool:
        # the largest figures (the search's and the field's, added last) start first
        drawn = {name: pool.submit(draw, *args) for name, (draw, *args) in reversed(jobs.items())}
        return {name: drawn[name].result() for name in jobs}


def smallest_p(paired: pd.DataFrame) -> str:
    """What the fewest pairs allow: the two-sided Wilcoxon signed-rank test's smallest exact p
    with n pairs is 2 / 2^n (every difference of one sign)."""
    if not len(paired):
        return ""
    counts = sorted({int(n) for n in paired["pairs"]}, reverse=True)
    said = "; ".join(f"with {n} pair{'s' if n != 1 else ''} the smallest possible p is "
                     f"{tables.smallest_p(n):.3g}"
                     for n in counts)
    return said[0].upper() + said[1:] + ". "


def represented() -> str:
    """'X standing for its family, ...': the registry's representatives the paper's figures draw."""
    return ", ".join(f"{m.display} standing for {methods.FAMILIES[m.family]}"
                     for m in methods.METHODS.values()
                     if m.represents)


def board_lines(cfg, frame, boards, protocols) -> list[str]:
    """report.md's first screen: what was run, and a leaderboard per metric."""
    sf_rows = frame.groupby(["seed", "fold"]).ngroups
    pairs = frame.groupby([*tables.KEY, "protocol"]).size().min()
    searched = "every method's grid searched (`[heads.search]`), " if cfg.heads.search.enabled else ""
    lines = [
        f"# Report: {cfg.experiment.name}",
        "",
        (f"{len(frame)} runs from `{cfg.run_dir}` ({sf_rows} seed x fold splits; {searched}selection and "
         "thresholds "
         f"on validation rows' {'truth' if cfg.heads.search.select == 'clean' else 'observed labels'}). "
         "Metrics are defined in `metrics/multilabel.py` and docs/usage.md: mAP, CP / CR / CF1 (per class), "
         "OP / OR / OF1 (overall); a suffix names the decision rule: none = 0.5, `_global` = one threshold "
         "from validation, `_class` = one per class from validation, `_top3` = each row's 3 highest."),
        "",
        "## Leaderboard",
        "",
        ("Mean ± 95% interval over runs; **bold**: the best non-oracle method of the column; "
         f"{leaderboard.MARK_TIED}: "
         "not significantly below it (paired Wilcoxon over seeds x folds, Holm over the column, p >= 0.05). "
         f"With {pairs} pairs the smallest possible p is {tables.smallest_p(pairs):.3g}"
         + (": no difference can be significant at 0.05 with so few splits. "
            if tables.smallest_p(pairs) >= tables.SIGNIFICANCE else ". ")
         + "All cells: `leaderboard.csv`."),
        "",
    ]
    for title, column in leaderboard.BOARDS:
        shown = leaderboard.column_of(frame, title, column)
        lines += [f"### {title}" + ("" if shown == title else f" (`{shown}`)"), "",
                  leaderboard.markdown(boards, title, protocols), ""]
    return lines


def selection_lines(cfg, chosen: pd.DataFrame) -> list[str]:
    """What the search chose: the chosen settings' test mAP against what other rules would pick."""
    if not len(chosen):
        return []
    pooled = cfg.heads.search.pool == "study"
    how = ("one setting and epoch per method and protocol, chosen on the validation scores of every "
           "(seed, fold) pooled (`search_choice.csv`); each run then trained it" if pooled else
           "each run's own best grid point and epoch on its validation rows")
    return [
        "## What the search chose",
        "",
        (f"`test mAP (chosen)`: the runs' predictions, from {how}. Over the grid points left at the last "
         f"epoch (halving {cfg.heads.search.halving} at epochs {list(search.milestone_epochs(cfg))} drops "
         "the others): the point the validation rows' truth would pick (`clean pick`, an oracle rule), the "
         "best test mAP (`test pick`, a bound no rule reaches) and the unsearched setting (`default`, when "
         "it was left). Every grid point and epoch: `search.csv`, figure 8."),
        "",
        tables.to_markdown(chosen),
        "",
        "![search](fig8_search.png)",
        "Validation mAP at the last epoch against test mAP, every grid point left there.",
        "",
    ]


def report_lines(cfg, frame, summary, paired, missing, splits_files, figure_protocol,
                 field: bool) -> list[str]:
    """report.md after the leaderboards: the summary and findings, the paired tests, the
    figures, what is missing, and the inputs it was made from."""
    sf = splits_files[cfg.seeds[0]]
    base = methods.display_name(methods.BASELINE)
    excluded = frame["classes_without_positives"].max()
    shown = paired[paired["metric"].isin(["OF1", "mAP"])] if len(paired) else paired
    seeds = ", ".join(map(str, cfg.seeds))
    return [
        "## The data",
        "",
        (f"{sf.labels.shape[0]} rows x {len(sf.classes)} classes, {sf.n_folds} folds x seeds {seeds}. "
         "Classes "
         f"without a positive in a test fold are excluded from class averages (at most {excluded} per fold "
         "here)."),
        "",
        "## Summary (mean over runs, ± the 95% interval of the mean)",
        "",
        ("OF1 (at 0.5) and mAP with their 95% t-interval over all seeds x folds, OR, OP and micro ROC-AUC "
         "(means); `oracle` marks methods that read ground truth. The full table with std, every metric at "
         "every rule: `summary.csv` / `.md` / `.tex`."),
        "",
        tables.to_markdown(key_table(summary)),
        "",
        "## What these runs show",
        "",
        *findings(summary, paired),
        "",
        f"## Paired differences against {base}",
        "",
        (f"Difference of each method to {base} of the same stage and protocol, paired by (seed, fold); "
         "two-sided "
         "Wilcoxon signed-rank p over the pairs, Holm's adjustment over every comparison of the metric. "
         "`holds` "
         "marks p < 0.05. Pairs share their images (folds of one seed, seeds of one data set): the p-values "
         "say "
         f"how consistent a difference is over these splits. {smallest_p(paired)}"
         f"All metrics: `{PAIRED}.csv`."),
        "",
        tables.to_markdown(shown) if len(shown) else "(no pairs)",
        "",
        *figure_lines(figure_protocol, field),
        "## Missing runs",
        "",
        ("none: the grid is complete" if not missing else
         "\n".join(f"- {stage} {run.label}" for stage, run in missing[:50])
         + (f"\n- and {len(missing) - 50} more" if len(missing) > 50 else "")),
        "",
        *provenance_lines(cfg, splits_files),
    ]


def figure_lines(figure_protocol: str, field: bool) -> list[str]:
    """The report's figures, each with what it shows."""
    return [
        "## Figures",
        "",
        "![paper panel](fig1_paper_panel.png)",
        ("Micro recall, precision, F1 and AUC per method as labels go missing (the paper's figure), over all "
         "runs."),
        "",
        "![mAP](fig2_map.png)",
        "mAP is threshold-free: how much of the loss of recall is ranking, how much calibration.",
        "",
        "![true positives](fig3_true_positives.png)",
        f"True positives per class at {figure_protocol}, summed over runs, beside the number of positives.",
        "",
        "![co-occurrence](fig4_cooccurrence.png)",
        "Label co-occurrence P(j | i): the structure the confidence weights exploit.",
        "",
        "![CB weights](fig5_cb_weights.png)",
        ("How well the paper's CB weights single out hidden positives among observed zeros (AUC of 1 - "
         "weight)."),
        "",
        "![loss](fig6_loss.png)",
        "Training loss per epoch (fold 1, first seed).",
        "",
        *(["![field](fig7_field.png)",
           ("Every method, the field's losses included, per protocol: mean micro F1 and mAP over all runs "
            f"(figures 1-3 and 6 draw {' and '.join(methods.FAMILIES[f] for f in methods.FIGURE_FAMILIES)}, "
            f"with {represented()} when it is in the grid)."), ""] if field else []),
    ]


def provenance_lines(cfg, splits_files: dict) -> list[str]:
    """The inputs the report was made from, with their fingerprints, and the package versions."""
    features_path = feature_store.path(cfg)
    return [
        "## Provenance",
        "",
        f"- config: `{cfg.source}`",
        *[f"- splits, seed {seed}: `{f.path}` fingerprint {f.fingerprint[:16]}" for seed,
          f in splits_files.items()],
        (f"- features: `{features_path}` fingerprint "
         f"{feature_store.FeatureReader(features_path).fingerprint[:16]}"
         if features_path.is_file() else "- features: none (finetune runs only)"),
        ("- every run's fingerprint: `runs.csv` (column fingerprint), each checked against these inputs and "
         "the config"),
        f"- packages: {json.dumps(artifacts.versions())}",
        "",
    ]

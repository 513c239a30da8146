"""Leaderboards (one per metric: methods as rows, protocols as columns) and what a search chose.

Said once: a cell is the mean over a method's runs (seeds x folds) with the half-width of its
95% t-interval. Per column the best non-oracle mean is the leader; every other non-oracle
method is compared with it by the (seed, fold)-paired two-sided Wilcoxon signed-rank test,
Holm-adjusted over the column's comparisons, and marked `tied` when the adjusted p is not
below 0.05 (or when there are too few pairs to test): "not significantly below the best".
Oracles (methods that read ground truth, and any run selected on clean validation labels)
are ranked in a block of their own and never lead. With n pairs the smallest possible
Wilcoxon p is 2 / 2^n: with 4 pairs nothing can be told apart, and the board says so.

Search tables read each run's `search.csv` (`heads.trainer`): per (method, protocol) the mean
test mAP of the runs' chosen settings and, over the grid points left at the last epoch, of the
point each rule would pick (`clean`: on the validation rows' truth; `test`: the best test mAP,
an upper bound no rule can reach) and of the method's unsearched setting.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

import artifacts
from heads import methods
from splits import store as splits_store

from . import tables

# (title, column): each metric at the decision rule that targets it, 0.5 where no validation rows exist
BOARDS = (("mAP", "mAP"), ("CF1", "CF1_class"), ("OF1", "OF1_global"))
MARK_BEST, MARK_TIED = "**", "°"


def column_of(frame: pd.DataFrame, title: str, column: str) -> str:
    """The frame's column for a board: `column`, or the metric at 0.5 without validation rows."""
    return column if column in frame.columns else title


def board(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    """One row per (stage, method, protocol): runs, mean, ci95, oracle, and per column of
    non-oracles `best`, `tied` and the Holm-adjusted p of the difference to the best."""
    rows = []
    for (stage, method, protocol), group in frame.groupby([*tables.KEY, "protocol"], sort=False):
        values = group[column].to_numpy(np.float64)
        rows.append({"stage": stage, "method": method, "name": tables.run_name(stage, method),
                     "protocol": protocol,
                     "oracle": bool(group["oracle"].iloc[0]), "runs": len(values), "mean": values.mean(),
                     "ci95": tables.interval(values), "order": group["order"].iloc[0]})
    table = pd.DataFrame(rows)
    table["best"], table["tied"], table["holm p"] = False, False, np.nan
    for protocol, members in table[~table["oracle"]].groupby("protocol"):
        leader = members["mean"].idxmax()
        table.loc[leader, "best"] = True
        best = paired_values(frame, key_at(table, leader), protocol, column)
        others = [i for i in members.index if i != leader]
        p = [tables.wilcoxon_p(differences(best, paired_values(frame, key_at(table, i), protocol, column)))
             for i in others]
        adjusted = tables.holm(np.array(p, np.float64)) if p else []
        for i, value in zip(others, adjusted):
            table.loc[i, "holm p"] = value
            table.loc[i, "tied"] = bool(np.isnan(value) or value >= tables.SIGNIFICANCE)
    return table


def key_at(table: pd.DataFrame, index) -> tuple[str, str]:
    """The (stage, method) of a table's row."""
    return table.loc[index, "stage"], table.loc[index, "method"]


def paired_values(frame: pd.DataFrame, key: tuple[str, str], protocol: str, column: str) -> pd.Series:
    """A (stage, method)'s values of `column` at `protocol`, indexed by (seed, fold)."""
    return tables.rows_of(frame, key, protocol).set_index(["seed", "fold"])[column]


def differences(a: pd.Series, b: pd.Series) -> np.ndarray:
    """a - b over the (seed, fold) pairs both have."""
    joined = pd.concat([a, b], axis=1, join="inner").to_numpy(np.float64)
    return joined[:, 0] - joined[:, 1] if len(joined) else np.array([])


def boards(frame: pd.DataFrame) -> pd.DataFrame:
    """Every board as one long table (column `metric` names the board, `column` its frame column)."""
    parts = []
    for title, column in BOARDS:
        column = column_of(frame, title, column)
        parts.append(board(frame, column).assign(metric=title, column=column))
    return pd.concat(parts, ignore_index=True)


def markdown(long: pd.DataFrame, metric: str, protocols: list[str]) -> str:
    """One board as Markdown: methods in the registry's order, oracles in a block below."""
    table = long[long["metric"] == metric]
    keys = tables.keys_in_order(table)
    regular = [key for key in keys if not tables.rows_of(table, key)["oracle"].any()]
    oracles = [key for key in keys if key not in regular]

    def line(key):
        return (f"| {artifacts.markdown_cell(tables.run_name(*key))} | "
                + " | ".join(_cell(table, key, p) for p in protocols) + " |")

    header = " | ".join(artifacts.markdown_cell(p) for p in protocols)
    lines = [f"| method | {header} |", "|---|" + "---|" * len(protocols)]
    lines += [line(key) for key in regular]
    if oracles:
        lines.append("| *oracles (read ground truth)* |" + " |" * len(protocols))
        lines += [line(key) for key in oracles]
    return "\n".join(lines)


def _cell(table: pd.DataFrame, key: tuple[str, str], protocol: str) -> str:
    row = tables.rows_of(table, key, protocol)
    if row.empty:
        return ""
    row = row.iloc[0]
    text = f"{row['mean']:.3f}" + ("" if np.isnan(row["ci95"]) else f" ± {row['ci95']:.3f}")
    if row["best"]:
        return f"{MARK_BEST}{text}{MARK_BEST}"
    return text + (f" {MARK_TIED}" if row["tied"] else "")


def compare(before: pd.DataFrame, after: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Two studies' boards of `metric` (leaderboard.csv frames, e.g. one recipe and searched):
    per (stage, method, protocol) both means and each method's rank among the non-oracles of its
    column (1 = best), and the change; a method in only one study is left out."""
    parts = []
    for label, board_ in (("before", before), ("after", after)):
        rows = board_[(board_["metric"] == metric) & ~board_["oracle"].astype(bool)].copy()
        rows[f"rank {label}"] = rows.groupby("protocol")["mean"].rank(ascending=False,
                                                                      method="min").astype(int)
        parts.append(rows.set_index([*tables.KEY, "protocol"])[["mean", f"rank {label}"]]
                     .rename(columns={"mean": f"{metric} {label}"}))
    table = parts[0].join(parts[1], how="inner").reset_index()
    table.insert(2, "name",
                 [tables.run_name(stage, method) for stage, method in zip(table["stage"], table["method"])])
    table["rank change"] = table["rank before"] - table["rank after"]
    return table


def compare_files(before: Path, after: Path, metric: str, out: Path | None) -> pd.DataFrame:
    """`python -m analysis compare`: `compare` of two leaderboard.csv files, printed or written."""
    frames = []
    for path in (before, after):
        frame = study_table(path)
        if "metric" not in frame.columns or metric not in set(frame["metric"]):
            raise ValueError(f"{path} is no leaderboard.csv with metric {metric!r} (its metrics: "
                             f"{', '.join(sorted(set(frame.get('metric', []))))})")
        frames.append(frame)
    return shown(compare(*frames, metric), out)


def paired(before: pd.DataFrame, after: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Two studies of the same splits (runs.csv frames, e.g. one recipe, then searched): per
    (stage, method, protocol) of the non-oracles in both, the (seed, fold)-paired difference
    after - before of `metric`, how many pairs it lifts, the two-sided Wilcoxon p and Holm's over
    the methods of the protocol."""
    keys = [*tables.KEY, "protocol", "seed", "fold"]
    rows = before[~before["oracle"].astype(bool)][keys + [metric]].merge(
        after[keys + [metric]], on=keys, suffixes=(" before", " after"))
    out = []
    for (stage, method, protocol), runs in rows.groupby([*tables.KEY, "protocol"], sort=False):
        difference = (runs[f"{metric} after"] - runs[f"{metric} before"]).to_numpy()
        out.append({"stage": stage, "method": method, "name": tables.run_name(stage, method),
                    "protocol": protocol, "runs": len(difference),
                    f"{metric} before": runs[f"{metric} before"].mean(),
                    f"{metric} after": runs[f"{metric} after"].mean(), "difference": difference.mean(),
                    "higher": int((difference > 0).sum()), "wilcoxon p": tables.wilcoxon_p(difference)})
    table = pd.DataFrame(out)
    if len(table):
        table["holm p"] = table.groupby("protocol")["wilcoxon p"].transform(
            lambda p: tables.holm(p.to_numpy()))
    return table


def paired_summary(table: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per protocol of a `paired` table: both means over the methods, how many methods the
    second study lifts, and how many it puts significantly below / above (Holm p < 0.05)."""
    significant = table["holm p"] < 0.05
    return table.assign(below=significant & (table["difference"] < 0),
                        above=significant & (table["difference"] > 0)).groupby("protocol", sort=False).agg(
        methods=("method", "size"), before=(f"{metric} before", "mean"), after=(f"{metric} after", "mean"),
        lifted=("difference", lambda d: int((d > 0).sum())), significantly_below=("below", "sum"),
        significantly_above=("above", "sum")).reset_index()


def paired_files(before: Path, after: Path, metric: str, out: Path | None) -> pd.DataFrame:
    """`python -m analysis paired`: `paired` of two runs.csv files; prints its summary, and the
    whole table (or writes it to the CSV `out`)."""
    table = paired(runs_table(before, metric), runs_table(after, metric), metric)
    if table.empty:
        raise ValueError(f"{before} and {after} share no (method, protocol, seed, fold) run; pair two "
                         "studies of the same splits")
    print(tables.to_markdown(paired_summary(table, metric)))
    return shown(table, out)


def study_table(path: Path) -> pd.DataFrame:
    """A study's table (leaderboard.csv, runs.csv) read with its keys checked; ValueError naming
    the file when it is absent or predates method ids."""
    if not Path(path).is_file():
        raise ValueError(f"{path} does not exist; run `make figures` for that study first")
    frame = pd.read_csv(path, dtype={"protocol": str})
    check_keys(frame, path)
    return frame


def runs_table(path: Path, metric: str) -> pd.DataFrame:
    """A report's runs.csv (`study_table`) that has the column `metric`."""
    frame = study_table(path)
    if metric not in frame.columns:
        raise ValueError(f"{path} has no metric {metric!r}; its metrics: {', '.join(tables.SCALARS)}")
    return frame


def check_keys(frame: pd.DataFrame, path) -> None:
    """ValueError for a table without the (stage, method) columns (written before method ids)."""
    missing = [column for column in tables.KEY if column not in frame.columns]
    if missing:
        raise ValueError(f"{path} has no {missing[0]!r} column: it was written before tables named methods "
                         "by "
                         "their registry id; rerun `make figures` for that study")


def key_text(key: tuple[str, str]) -> str:
    """A run key as `parse_key` reads it: the method id, "finetune/<id>" for a finetuned one."""
    return key[1] if key[0] == "heads" else f"{key[0]}/{key[1]}"


def head_to_head(frame: pd.DataFrame, pairs: list[tuple[tuple, tuple]], metric: str) -> pd.DataFrame:
    """Per protocol and pair (a, b) of (stage, method) keys: the (seed, fold)-paired difference
    a - b of `metric` in a runs.csv frame, its 95% interval, how many pairs favour a, and the
    two-sided Wilcoxon p (Holm over every row of the table). Columns `a` and `b` hold the keys
    (`key_text`), `a name` and `b name` their display names."""
    present = set(zip(frame["stage"], frame["method"]))
    rows = []
    for a, b in pairs:
        for key in (a, b):
            if key not in present:
                raise ValueError(f"no runs of {key_text(key)!r}; present: "
                                 f"{', '.join(key_text(k) for k in sorted(present, key=tables.order_key))}")
        for protocol in sorted(set(frame["protocol"]),
                               key=lambda p: splits_store.protocol_order(splits_store.protocol_key(p))):
            diff = differences(paired_values(frame, a, protocol, metric),
                               paired_values(frame, b, protocol, metric))
            if not len(diff):
                continue
            rows.append({"a": key_text(a), "b": key_text(b), "a name": tables.run_name(*a),
                         "b name": tables.run_name(*b), "protocol": protocol, "metric": metric,
                         "pairs": len(diff),
                         "mean difference": float(diff.mean()), "ci95": tables.interval(diff),
                         "a better": int((diff > 0).sum()), "wilcoxon p": tables.wilcoxon_p(diff)})
    table = pd.DataFrame(rows)
    if len(table):
        table["holm p"] = tables.holm(table["wilcoxon p"].to_numpy())
    return table


def head_to_head_file(runs: Path, pairs: str, metric: str, out: Path | None) -> pd.DataFrame:
    """`python -m analysis pairs`: `head_to_head` over a report's runs.csv, printed or written."""
    frame = runs_table(runs, metric)
    parts = [tuple(part.split(":", 1)) for part in pairs.split(",") if part]
    if not parts or any(len(p) != 2 for p in parts):
        raise ValueError(f"--pairs {pairs!r}: expected A:B[,C:D...] of method ids, e.g. role:an (finetune/ce "
                         "for "
                         "a finetuned run)")
    parsed = [(tables.parse_key(a), tables.parse_key(b)) for a, b in parts]
    return shown(head_to_head(frame, parsed, metric), out)


def shown(table: pd.DataFrame, out: Path | None) -> pd.DataFrame:
    """A command's table: printed as Markdown, or written to the CSV `out`."""
    if out is None:
        print(tables.to_markdown(table))
    else:
        artifacts.write_csv(Path(out), table, float_format="%.6g")
        print(f"{out}: {len(table)} rows")
    return table


def collect_search(present: dict) -> pd.DataFrame:
    """Every grid point and epoch of every present heads run (its search.csv), with the run's keys."""
    parts = []
    for (stage, run), path in present.items():
        csv = Path(path).parent / "search.csv"
        if stage != "heads" or not csv.is_file():
            continue
        points = pd.read_csv(csv)
        parts.append(points.assign(method=run.method, name=tables.run_name(stage, run.method), seed=run.seed,
                                   fold=run.fold + 1, protocol=splits_store.protocol_label(run.protocol)))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def last_epochs(points: pd.DataFrame) -> pd.DataFrame:
    """The rows of each run's last epoch whose point was still trained then (it has a test mAP)."""
    last = points.groupby(["method", "protocol", "seed", "fold"])["epoch"].transform("max")
    return points[(points["epoch"] == last) & points["test_map"].notna()]


def selection(points: pd.DataFrame, cfg, frame: pd.DataFrame) -> pd.DataFrame:
    """Per (method, protocol): the mean test mAP of the runs' chosen settings (their predictions),
    and over the grid points left at the last epoch the mean test mAP of the one each rule would
    pick (`clean`: the best validation mAP on the truth, an oracle; `test`: the best test mAP, a
    bound no rule reaches) and of the unsearched setting ([heads] learning_rate and parameters,
    when it was left); how many grid points a run tried, and how many were left."""
    rows = []
    finals = last_epochs(points)
    for (method, protocol), group in points.groupby(["method", "protocol"], sort=False):
        picks = {"clean pick": [], "test pick": [], "default": []}
        left = finals[(finals["method"] == method) & (finals["protocol"] == protocol)]
        for _, run in left.groupby(["seed", "fold"]):
            if run["val_map_clean"].notna().any():
                picks["clean pick"].append(run.loc[run["val_map_clean"].idxmax(), "test_map"])
            picks["test pick"].append(run["test_map"].max())
            default = run[np.isclose(run["lr"], cfg.heads.learning_rate) & _at_defaults(run, cfg, method)]
            if len(default):
                picks["default"].append(default["test_map"].iloc[0])
        chosen = tables.rows_of(frame, ("heads", method), protocol)["mAP"]
        runs_left = left.groupby(["seed", "fold"]).size()
        rows.append({"method": method, "name": tables.run_name("heads", method), "protocol": protocol,
                     "points": int(group.groupby(["seed", "fold"])["point"].nunique().max()),
                     "left at the end": float(runs_left.mean()) if len(runs_left) else 0.0,
                     "test mAP (chosen)": float(chosen.mean()) if len(chosen) else np.nan,
                     **{f"test mAP ({rule})": float(np.mean(v)) if v else np.nan
                        for rule, v in picks.items()}})
    return pd.DataFrame(rows)


def _at_defaults(run: pd.DataFrame, cfg, method: str) -> np.ndarray:
    """Rows of `run` whose searched parameters are the method's own ([heads.params] on its defaults)."""
    defaults = methods.configured(cfg, method)
    keep = np.ones(len(run), bool)
    for column in run.columns:
        if column in defaults and defaults[column] is not None:
            values = run[column].to_numpy(np.float64)  # NaN: a column of another method's grid
            keep &= np.isnan(values) | np.isclose(values, float(defaults[column]))
    return keep

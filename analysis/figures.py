"""The paper's figures and more, matplotlib only, each written as PNG and PDF. Class names (the
data's, not the registry's) are drawn as plain text (`AS_TEXT`): a `$` in one is a dollar sign,
never mathtext or TeX."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import artifacts
from heads import methods

from .tables import keys_in_order, order_key, rows_of, run_name

AS_TEXT = {"parse_math": False, "usetex": False}  # Text properties of the labels that show class names
OTHERS = ["#DD8452", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C", "#CCB974", "#64B5CD", "#1B9E77", "#E7298A",
          "#66A61E", "#E6AB02", "#A6761D", "#7570B3", "#D95F02", "#666666", "#A6CEE3", "#FB9A99", "#B2DF8A"]


def _colors(keys) -> dict:
    """{(stage, method): colour}: each method in its registry colour, or the next of the shared
    palette; a finetuned run takes its method's colour (it is drawn as dots)."""
    extra = iter(OTHERS * 3)
    base = {}
    for _, method in keys:
        if method not in base:
            base[method] = methods.get(method).colour or next(extra)
    return {key: base[key[1]] for key in keys}


def _legend_below(fig, handles, names) -> None:
    """A legend under the panels, outside them: it never covers an axis label."""
    fig.legend(handles, names, loc="outside lower center", ncol=min(len(names), 6), frameon=False)


def _save(fig, stem: Path) -> list[Path]:
    """PNG and PDF, each written to a temporary name of its own and renamed: never a half-written
    figure, and two reports at once never share a temporary file."""
    try:
        return [artifacts.save_figure(fig, stem.with_suffix(suffix), dpi=130, bbox_inches="tight")
                for suffix in (".png", ".pdf")]
    finally:
        plt.close(fig)


def focus(frame: pd.DataFrame) -> pd.DataFrame:
    """The runs the paper's figures draw: the registry's figure families (the paper's weighted
    loss and the estimators) when the grid holds them beside the field's losses, and of a family
    with a representative in the grid only that one (`represents`: it stands for the others);
    the rest are drawn by `field_heatmap`. Else every run."""
    families = frame["method"].map(lambda m: methods.get(m).family)
    family = families.isin(methods.FIGURE_FAMILIES)
    for name in set(frame["method"]):
        if methods.get(name).represents:
            family &= (families != methods.get(name).family) | (frame["method"] == name)
    return frame[family] if family.any() else frame


def field_heatmap(frame: pd.DataFrame, protocols: list[str], stem: Path) -> list[Path]:
    """Figure 7: every method x protocol, mean OF1 and mAP over runs, written in each cell;
    colours per column (protocol), so each protocol's best stands out."""
    table = frame.groupby(["stage", "method", "protocol"])[["OF1", "mAP"]].mean()
    keys = keys_in_order(frame)
    fig, axes = plt.subplots(1, 2, figsize=(2.2 + 1.6 * len(protocols), 1.2 + 0.32 * len(keys)),
                             layout="constrained")
    for ax, (metric, label) in zip(axes, (("OF1", "OF1 at 0.5"), ("mAP", "mAP"))):
        values = np.array([[table[metric].get((*key, p), np.nan) for p in protocols] for key in keys])
        low, high = np.nanmin(values, 0), np.nanmax(values, 0)
        ax.imshow((values - low) / np.where(high > low, high - low, 1), cmap="viridis", aspect="auto",
                  vmin=0, vmax=1)
        for (i, j), value in np.ndenumerate(values):
            if not np.isnan(value):
                ax.text(j, i, f"{value:.3f}", ha="center", va="center", fontsize=7,
                        color="black" if (value - low[j]) > 0.6 * (high[j] - low[j]) else "white")
        ax.set_xticks(range(len(protocols)), [p.replace(" ", "\n") for p in protocols])
        ax.set_yticks(range(len(keys)), [run_name(*key) for key in keys], fontsize=8)
        ax.set_xlabel("missing-label ratio / protocol")
        ax.set_title(f"{label} (mean over runs; colour within a column)")
    return _save(fig, stem)


def paper_panel(frame: pd.DataFrame, protocols: list[str], stem: Path) -> list[Path]:
    """Figure 1: overall recall, precision, F1 (OR, OP, OF1 at 0.5) and micro ROC-AUC box plots
    over all runs (seeds x folds); x = protocol, a box per method; a method with one run per
    protocol is drawn as dots."""
    metrics = [("OR", "OR (overall recall)"), ("OP", "OP (overall precision)"),
               ("OF1", "OF1"), ("micro_auc", "micro ROC-AUC")]
    keys = keys_in_order(frame)
    colors = _colors(keys)
    fig, axes = plt.subplots(1, 4, figsize=(18, 4.8), layout="constrained")
    width = 0.8 / len(keys)
    for ax, (metric, label) in zip(axes, metrics):
        for j, key in enumerate(keys):
            data = [rows_of(frame, key, p)[metric].to_numpy() for p in protocols]
            positions = np.arange(len(protocols)) + (j - (len(keys) - 1) / 2) * width
            box = ax.boxplot(data, positions=positions, widths=width * 0.85, patch_artist=True,
                             showfliers=False)
            for patch in box["boxes"]:
                patch.set_facecolor(colors[key])
                patch.set_alpha(0.75)
            # one run: a dot, not a flat box
            single = [k for k, values in enumerate(data) if len(values) == 1]
            ax.scatter(positions[single], [data[k][0] for k in single], color=colors[key], s=28, zorder=3,
                       edgecolors="black", linewidths=0.5)
        ax.set_xticks(np.arange(len(protocols)), protocols)
        ax.set_xlabel("missing-label ratio / protocol")
        ax.set_title(label)
        ax.grid(axis="y", alpha=0.3)
    _legend_below(fig, [plt.Rectangle((0, 0), 1, 1, color=colors[k], alpha=0.75) for k in keys],
                  [run_name(*k) for k in keys])
    fig.suptitle("Test metrics over all runs at threshold 0.5 (the paper's figure)")
    return _save(fig, stem)


def map_lines(frame: pd.DataFrame, protocols: list[str], stem: Path) -> list[Path]:
    """Figure 2: mAP per protocol, a line per method, band = 95% interval of the mean over runs."""
    from .tables import interval
    keys = keys_in_order(frame)
    colors = _colors(keys)
    fig, ax = plt.subplots(figsize=(8.5, 4.4), layout="constrained")
    x = np.arange(len(protocols))
    for key in keys:
        groups = [rows_of(frame, key, p)["mAP"].to_numpy() for p in protocols]
        shown = [k for k, g in enumerate(groups) if len(g)]
        mean = np.array([groups[k].mean() for k in shown])
        band = np.nan_to_num([interval(groups[k]) for k in shown])
        ax.plot(x[shown], mean, marker="o", color=colors[key], label=run_name(*key))
        ax.fill_between(x[shown], mean - band, mean + band, color=colors[key], alpha=0.15)
    ax.set_xticks(x, protocols)
    ax.set_xlabel("missing-label ratio / protocol")
    ax.set_ylabel("mAP (test)")
    ax.set_title("mAP vs missing labels (band: 95% interval over runs)")
    ax.grid(alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)
    return _save(fig, stem)


def true_positives(frame: pd.DataFrame, per_class: dict, classes, protocol: str, top: int,
                   stem: Path) -> list[Path]:
    """Figure 3: true positives per class (summed over runs) for the most frequent classes."""
    at = frame[(frame["protocol"] == protocol) & (frame["stage"] == "heads")]
    keys = keys_in_order(at)
    colors = _colors(keys)
    first = rows_of(at, keys[0]).index
    positives = sum(per_class[i]["class_positives"] for i in first)
    classes_top = np.argsort(positives)[::-1][:top]
    fig, ax = plt.subplots(figsize=(max(8, 0.75 * top) + 2, 4.5), layout="constrained")
    width = 0.8 / (len(keys) + 1)
    x = np.arange(len(classes_top))
    ax.bar(x - 0.4 + width / 2, positives[classes_top], width, color="#999999", label="positives")
    for j, key in enumerate(keys):
        tp = sum(per_class[i]["class_tp"] for i in rows_of(at, key).index)
        ax.bar(x - 0.4 + width * (j + 1.5), tp[classes_top], width, color=colors[key], label=run_name(*key))
    ax.set_xticks(x, [classes[c] for c in classes_top], rotation=45, ha="right", **AS_TEXT)
    ax.set_ylabel("test images (all runs)")
    ax.set_title(f"True positives per class at {protocol} ({top} most frequent classes)")
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, stem)


def cooccurrence(labels: np.ndarray, classes, stem: Path) -> list[Path]:
    """Figure 4: P(column | row) over all images."""
    y = labels.astype(np.float64)
    counts = y.T @ y
    conditional = counts / np.maximum(np.diag(counts)[:, None], 1)
    size = min(16, 4 + 0.18 * len(classes))
    fig, ax = plt.subplots(figsize=(size, size * 0.85), layout="constrained")
    image = ax.imshow(conditional, cmap="viridis", vmin=0, vmax=1)
    if len(classes) <= 40:
        ax.set_xticks(range(len(classes)), classes, rotation=90, fontsize=7, **AS_TEXT)
        ax.set_yticks(range(len(classes)), classes, fontsize=7, **AS_TEXT)
    ax.set_xlabel("label j")
    ax.set_ylabel("label i")
    ax.set_title("Label co-occurrence: P(j | i)")
    fig.colorbar(image, ax=ax, fraction=0.046)
    return _save(fig, stem)


def weight_quality(curves: dict, stem: Path) -> list[Path]:
    """Figure 5: CB weight on hidden positives vs true negatives per ratio, AUC of 1 - weight in legend.

    curves: {protocol: (weights on hidden positives, weights on true negatives, auc)}
    """
    fig, axes = plt.subplots(1, len(curves), figsize=(4.5 * len(curves), 3.8), squeeze=False,
                             layout="constrained")
    bins = np.linspace(0, 1, 41)
    for ax, (protocol, (hidden, negative, auc)) in zip(axes[0], curves.items()):
        ax.hist(negative, bins=bins, density=True, alpha=0.6, color="#4C72B0", label="true negatives")
        ax.hist(hidden, bins=bins, density=True, alpha=0.6, color="#C44E52",
                label=f"hidden positives\nAUC of 1 - w: {auc:.3f}")
        ax.set_yscale("log")
        ax.set_xlabel("CB weight")
        ax.set_title(protocol)
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel("density (log)")
    fig.suptitle("Confidence weights on observed zeros, fold 1 training rows")
    return _save(fig, stem)


def loss_curves(histories: dict, protocols: list[str], stem: Path) -> list[Path]:
    """Figure 6: training loss per epoch; a panel per protocol, a line per method (fold 1, first
    seed). Losses of different methods have different scales: compare a method's own curve."""
    shown = [p for p in protocols if any(key[1] == p for key in histories)]
    keys = sorted({key for key, _ in histories}, key=order_key)
    colors = _colors(keys)
    fig, axes = plt.subplots(1, len(shown), figsize=(4.2 * len(shown), 4.0), squeeze=False,
                             layout="constrained")
    for ax, protocol in zip(axes[0], shown):
        for key in keys:
            if (key, protocol) in histories:
                history = histories[(key, protocol)]
                ax.plot(history["epoch"], history["train_loss"], color=colors[key], label=run_name(*key))
        ax.set_yscale("log")
        ax.set_title(protocol)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("training loss (fold 1)")
    _legend_below(fig, [plt.Line2D([], [], color=colors[k]) for k in keys], [run_name(*k) for k in keys])
    return _save(fig, stem)


def search_scatter(points: pd.DataFrame, protocols: list[str], stem: Path) -> list[Path]:
    """Figure 8: every grid point left at each run's last epoch, its validation score (what the
    selection sees) against its test mAP, a panel per method, a colour per protocol."""
    shown = sorted(set(points["method"]), key=lambda method: order_key(("heads", method)))
    cols = min(6, len(shown))
    rows = -(-len(shown) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.4 * rows + 0.6), layout="constrained",
                             squeeze=False)
    palette = plt.get_cmap("viridis")(np.linspace(0, 0.9, len(protocols)))
    for ax, method in zip(axes.flat, shown):
        mine = points[points["method"] == method]
        for colour, protocol in zip(palette, protocols):
            at = mine[mine["protocol"] == protocol]
            ax.scatter(at["val_score"], at["test_map"], s=8, color=colour, alpha=0.6)
        ax.set_title(run_name("heads", method), fontsize=9)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(shown):]:
        ax.set_visible(False)
    fig.legend([plt.Line2D([], [], marker="o", linestyle="", color=c) for c in palette], protocols,
               loc="outside upper center", ncol=len(protocols), frameon=False)
    fig.supxlabel("validation mAP at the last epoch (what the selection sees)")
    fig.supylabel("test mAP")
    return _save(fig, stem)

"""The paper's figures and more, matplotlib only, each written as PNG and PDF."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

COLORS = {"CE": "#4C72B0", "IM-WCE": "#55A868", "CB-WCE": "#C44E52"}
EXTRA = ["#8172B2", "#CCB974", "#64B5CD", "#DD8452"]


def _colors(names) -> dict:
    extra = iter(EXTRA * 3)
    return {n: COLORS.get(n) or next(extra) for n in names}


def _save(fig, stem: Path) -> list[Path]:
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    for path in paths:
        fig.savefig(path, dpi=130, bbox_inches="tight")
    plt.close(fig)
    return paths


def method_order(names) -> list[str]:
    """CE, IM-WCE, CB-WCE, then the estimators; finetuned runs after the frozen-feature ones."""
    rank = {"CE": 0, "IM-WCE": 1, "CB-WCE": 2}
    return sorted(set(names), key=lambda n: (n.startswith("finetune"), rank.get(n, 3), n))


def paper_panel(frame: pd.DataFrame, stem: Path) -> list[Path]:
    """Figure 1: micro recall, precision, F1, AUC box plots over folds; x = ratio, a box per method."""
    metrics = [("micro_recall", "micro recall"), ("micro_precision", "micro precision"),
               ("micro_f1", "micro F1"), ("micro_auc", "micro ROC-AUC")]
    names, ratios = method_order(frame["name"]), sorted(frame["ratio"].unique())
    colors = _colors(names)
    fig, axes = plt.subplots(1, 4, figsize=(18, 4.2))
    width = 0.8 / len(names)
    for ax, (metric, label) in zip(axes, metrics):
        for j, name in enumerate(names):
            data = [frame[(frame["name"] == name) & (frame["ratio"] == r)][metric].to_numpy() for r in ratios]
            positions = np.arange(len(ratios)) + (j - (len(names) - 1) / 2) * width
            box = ax.boxplot(data, positions=positions, widths=width * 0.85, patch_artist=True, showfliers=False)
            for patch in box["boxes"]:
                patch.set_facecolor(colors[name])
                patch.set_alpha(0.75)
            single = [k for k, values in enumerate(data) if len(values) == 1]  # one fold: a dot, not a flat box
            ax.scatter(positions[single], [data[k][0] for k in single], color=colors[name], s=28, zorder=3,
                       edgecolors="black", linewidths=0.5)
        ax.set_xticks(np.arange(len(ratios)), [f"{r:.2f}" for r in ratios])
        ax.set_xlabel("missing-label ratio")
        ax.set_title(label)
        ax.grid(axis="y", alpha=0.3)
    handles = [plt.Rectangle((0, 0), 1, 1, color=colors[n], alpha=0.75) for n in names]
    fig.legend(handles, names, loc="lower center", ncol=len(names), bbox_to_anchor=(0.5, -0.06))
    fig.suptitle("Test metrics over folds at threshold 0.5 (the paper's figure)")
    return _save(fig, stem)


def map_lines(frame: pd.DataFrame, stem: Path) -> list[Path]:
    """Figure 2: mAP against the missing ratio, a line per method, band = min..max over folds."""
    names = method_order(frame["name"])
    colors = _colors(names)
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for name in names:
        stats = frame[frame["name"] == name].groupby("ratio")["mAP"].agg(["mean", "min", "max"])
        ax.plot(stats.index, stats["mean"], marker="o", color=colors[name], label=name)
        ax.fill_between(stats.index, stats["min"], stats["max"], color=colors[name], alpha=0.15)
    ax.set_xlabel("missing-label ratio")
    ax.set_ylabel("mAP (test)")
    ax.set_title("mAP vs missing labels (band: fold min..max)")
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, stem)


def true_positives(frame: pd.DataFrame, per_class: dict, classes, ratio: float, top: int, stem: Path) -> list[Path]:
    """Figure 3: true positives per class (summed over folds) for the most frequent classes."""
    at = frame[np.isclose(frame["ratio"], ratio) & (frame["stage"] == "heads")]
    names = method_order(at["name"])
    colors = _colors(names)
    first = at[at["name"] == names[0]].index
    positives = sum(per_class[i]["class_positives"] for i in first)
    classes_top = np.argsort(positives)[::-1][:top]
    fig, ax = plt.subplots(figsize=(max(8, 0.75 * top), 4.5))
    width = 0.8 / (len(names) + 1)
    x = np.arange(len(classes_top))
    ax.bar(x - 0.4 + width / 2, positives[classes_top], width, color="#999999", label="positives")
    for j, name in enumerate(names):
        tp = sum(per_class[i]["class_tp"] for i in at[at["name"] == name].index)
        ax.bar(x - 0.4 + width * (j + 1.5), tp[classes_top], width, color=colors[name], label=name)
    ax.set_xticks(x, [classes[c] for c in classes_top], rotation=45, ha="right")
    ax.set_ylabel("test images (all folds)")
    ax.set_title(f"True positives per class at ratio {ratio:.2f} ({top} most frequent classes)")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, stem)


def cooccurrence(labels: np.ndarray, classes, stem: Path) -> list[Path]:
    """Figure 4: P(column | row) over all images."""
    y = labels.astype(np.float64)
    counts = y.T @ y
    conditional = counts / np.maximum(np.diag(counts)[:, None], 1)
    size = min(16, 4 + 0.18 * len(classes))
    fig, ax = plt.subplots(figsize=(size, size * 0.85))
    image = ax.imshow(conditional, cmap="viridis", vmin=0, vmax=1)
    if len(classes) <= 40:
        ax.set_xticks(range(len(classes)), classes, rotation=90, fontsize=7)
        ax.set_yticks(range(len(classes)), classes, fontsize=7)
    ax.set_xlabel("label j")
    ax.set_ylabel("label i")
    ax.set_title("Label co-occurrence: P(j | i)")
    fig.colorbar(image, ax=ax, fraction=0.046)
    return _save(fig, stem)


def weight_quality(curves: dict, stem: Path) -> list[Path]:
    """Figure 5: CB weight on hidden positives vs true negatives per ratio, AUC of 1 - weight in legend.

    curves: {ratio: (weights on hidden positives, weights on true negatives, auc)}
    """
    fig, axes = plt.subplots(1, len(curves), figsize=(4.5 * len(curves), 3.8), squeeze=False)
    bins = np.linspace(0, 1, 41)
    for ax, (ratio, (hidden, negative, auc)) in zip(axes[0], curves.items()):
        ax.hist(negative, bins=bins, density=True, alpha=0.6, color="#4C72B0", label="true negatives")
        ax.hist(hidden, bins=bins, density=True, alpha=0.6, color="#C44E52",
                label=f"hidden positives\nAUC of 1 - w: {auc:.3f}")
        ax.set_yscale("log")
        ax.set_xlabel("CB weight")
        ax.set_title(f"ratio {ratio:.2f}")
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel("density (log)")
    fig.suptitle("Confidence weights on observed zeros, fold 1 training rows")
    return _save(fig, stem)


def loss_curves(histories: dict, stem: Path) -> list[Path]:
    """Figure 6: training loss per epoch; a panel per ratio, a line per method (fold 1)."""
    ratios = sorted({r for _, r in histories})
    names = method_order({n for n, _ in histories})
    colors = _colors(names)
    fig, axes = plt.subplots(1, len(ratios), figsize=(4.2 * len(ratios), 3.6), squeeze=False, sharey=True)
    for ax, ratio in zip(axes[0], ratios):
        for name in names:
            if (name, ratio) in histories:
                history = histories[(name, ratio)]
                ax.plot(history["epoch"], history["train_loss"], color=colors[name], label=name)
        ax.set_title(f"ratio {ratio:.2f}")
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("training loss (fold 1)")
    axes[0][-1].legend(fontsize=8)
    return _save(fig, stem)

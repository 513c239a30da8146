"""Tables against a direct computation from the prediction files; every figure written and not blank."""
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.metrics import average_precision_score, recall_score

import configs
import splits
from analysis import report
from heads import trainer
from splits import store


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    """A splits.h5 and hand-made predictions for every run of the grid but one."""
    root = tmp_path_factory.mktemp("runs")
    cfg = configs.from_dict({"experiment": {"name": "r", "runs_dir": str(root)}, "dataset": {"n_images": 160}},
                            source="test")
    sf = store.load(splits.make(cfg))
    rng = np.random.default_rng(0)
    for k in range(4):
        test = sf.test_fold == k
        for ratio in cfg.splits.ratios:
            for quality, method in zip((0.5, 0.8, 0.6), cfg.heads.methods):
                if (k, ratio, method) == (3, 0.75, "confidence"):
                    continue  # one missing run
                labels = sf.labels[test]
                probs = np.clip(labels * quality + rng.random(labels.shape) * (1 - quality) - ratio * 0.2, 0, 1)
                path = trainer.run_dir(cfg, trainer.HeadRun(k, ratio, method))
                trainer.write_predictions(path, ids=sf.ids[test], labels=labels, probabilities=probs,
                                          attrs={"method": method, "ratio": ratio, "fold": k + 1, "source": "heads"})
                pd.DataFrame({"epoch": [1, 2], "train_loss": [0.5, 0.4]}).to_csv(path / "history.csv", index=False)
    return cfg


def test_report_tables_match_direct_computation(grid):
    path = report.report(grid)
    text = path.read_text()
    assert "CB-WCE, ratio 0.75, fold 4" in text
    summary = pd.read_csv(path.parent / "summary.csv")
    row = summary[(summary["name"] == "IM-WCE") & np.isclose(summary["ratio"], 0.5)].iloc[0]
    maps, recalls = [], []
    for k in range(4):
        import h5py
        with h5py.File(trainer.run_dir(grid, trainer.HeadRun(k, 0.5, "ignore_missing")) / "predictions.h5") as h5:
            y, p = h5["labels"][:], h5["probabilities"][:]
        keep = y.sum(0) > 0
        maps.append(average_precision_score(y[:, keep], p[:, keep], average="macro"))
        recalls.append(recall_score(y, p >= 0.5, average="micro"))
    assert row["mAP mean"] == pytest.approx(np.mean(maps), abs=1e-4)
    assert row["mAP std"] == pytest.approx(np.std(maps, ddof=1), abs=1e-4)
    assert row["micro_recall mean"] == pytest.approx(np.mean(recalls), abs=1e-4)
    paired = pd.read_csv(path.parent / "paired_vs_ce.csv")
    assert set(paired["name"]) == {"IM-WCE", "CB-WCE"}
    im = summary[summary["name"] == "IM-WCE"].sort_values("ratio")
    ce_top = summary[(summary["name"] == "CE") & np.isclose(summary["ratio"], 0.75)].iloc[0]
    line = next(line for line in text.splitlines() if line.startswith("- **IM-WCE**"))
    assert f"micro recall {' / '.join(f'{v:.3f}' for v in im['micro_recall mean'])}" in line
    assert f"recall {im['micro_recall mean'].iloc[-1] - ce_top['micro_recall mean']:+.3f}" in line


def test_every_figure_is_written_and_not_blank(grid):
    out = report.report(grid).parent
    for stem in ("fig1_paper_panel", "fig2_map", "fig3_true_positives", "fig4_cooccurrence", "fig5_cb_weights",
                 "fig6_loss"):
        assert (out / f"{stem}.pdf").stat().st_size > 1000
        pixels = np.asarray(Image.open(out / f"{stem}.png").convert("L"), dtype=float)
        assert pixels.std() > 10, stem  # something is drawn


def test_no_runs_is_an_error(tmp_path):
    cfg = configs.from_dict({"experiment": {"name": "empty", "runs_dir": str(tmp_path)}, "dataset": {"n_images": 80}},
                            source="test")
    splits.make(cfg)
    with pytest.raises(ValueError, match="no predictions.h5"):
        report.report(cfg)

"""Tables against a direct computation from the prediction files; every figure written and not
blank; statistics over seeds x folds; runs made from other inputs are refused."""
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy import stats
from sklearn.metrics import average_precision_score, f1_score, recall_score

import artifacts
import configs
import splits
from analysis import report, tables
from heads import predictions
from heads.predictions import HeadRun
from splits import store

QUALITY = {"ce": 0.5, "ignore_missing": 0.8, "confidence": 0.6}


def write_grid(cfg, skip=()):
    """Hand-made predictions for every run of the config's heads grid but `skip`."""
    rng = np.random.default_rng(0)
    for seed in cfg.seeds:
        sf = store.load(store.path(cfg, seed))
        protocols = [store.protocol_key(r) for r in cfg.splits.ratios] + \
            ([store.SINGLE_POSITIVE] if cfg.splits.single_positive else [])
        for k in range(sf.n_folds):
            test = sf.test_fold == k
            for protocol in protocols:
                for method in cfg.heads.methods:
                    run = HeadRun(seed, k, protocol, method)
                    if (k, protocol, method) in skip:
                        continue
                    labels = sf.labels[test]
                    shift = 0.15 if protocol == store.SINGLE_POSITIVE else float(protocol) * 0.2
                    probs = np.clip(labels * QUALITY[method]
                                    + rng.random(labels.shape) * (1 - QUALITY[method]) - shift,
                                    0, 1)
                    directory = predictions.run_dir(cfg, run)
                    predictions.write(directory, ids=sf.ids[test], labels=labels, probabilities=probs,
                                      attrs={"method": method, "protocol": protocol, "ratio": run.ratio,
                                             "fold": k + 1, "seed": seed, "source": "heads"},
                                      provenance=predictions.head_provenance(cfg, run, sf.fingerprint, "", 0))
                    pd.DataFrame({"epoch": [1, 2],
                                  "train_loss": [0.5, 0.4]}).to_csv(directory / "history.csv",
                                                                                     index=False)


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    cfg = configs.from_dict({"experiment": {"name": "r", "runs_dir": str(root)},
                             "dataset": {"n_images": 160}},
                            source="test")
    splits.make(cfg)
    write_grid(cfg, skip={(3, "0.75", "confidence")})
    return cfg


def test_report_tables_match_direct_computation(grid):
    path = report.report(grid)
    text = path.read_text()
    assert "heads seed 0, fold 4, 0.75, confidence" in text  # the missing run is listed
    summary = pd.read_csv(path.parent / "summary.csv", dtype={"protocol": str})
    row = summary[(summary["method"] == "ignore_missing") & (summary["protocol"] == "0.5")].iloc[0]
    maps, recalls = [], []
    for k in range(4):
        with h5py.File(predictions.file(grid, HeadRun(0, k, "0.5", "ignore_missing"))) as h5:
            y, p = h5["labels"][:], h5["probabilities"][:]
        keep = y.sum(0) > 0
        maps.append(average_precision_score(y[:, keep], p[:, keep], average="macro"))
        recalls.append(recall_score(y, p >= 0.5, average="micro"))
    assert row["mAP mean"] == pytest.approx(np.mean(maps), abs=1e-4)
    assert row["mAP std"] == pytest.approx(np.std(maps, ddof=1), abs=1e-4)
    assert row["mAP ci95"] == pytest.approx(stats.t.ppf(0.975, 3) * np.std(maps, ddof=1) / 2, abs=1e-4)
    assert row["OR mean"] == pytest.approx(np.mean(recalls), abs=1e-4)
    assert bool(row["oracle"]) and row["runs"] == 4
    paired = pd.read_csv(path.parent / "paired_vs_ce.csv", dtype={"protocol": str})
    assert set(paired["method"]) == {"ignore_missing", "confidence"}
    assert "| protocol |" in text and "| 0.25 |" in text and "0.2500" not in text.split("## Paired")[0]
    assert text.index("## Leaderboard") < text.index("## Summary")
    im = summary[summary["method"] == "ignore_missing"]
    line = next(line for line in text.splitlines() if line.startswith("- **IM-WCE** (oracle)"))
    assert f"OR {' / '.join(f'{v:.3f}' for v in im['OR mean'])}" in line


def test_runs_read_by_two_processes_give_the_frame_of_one(grid):
    splits_files = {seed: store.load(store.path(grid, seed)) for seed in grid.seeds}
    present, _ = report.present_runs(grid, splits_files)
    one, one_class = tables.collect(grid, present, n_jobs=1)
    two, two_class = tables.collect(grid, present, n_jobs=2, chunk=7)
    pd.testing.assert_frame_equal(one, two)
    assert one_class.keys() == two_class.keys()
    for row, arrays in one_class.items():
        for name, value in arrays.items():
            np.testing.assert_array_equal(value, two_class[row][name])


def test_every_figure_is_written_and_not_blank(grid):
    out = report.report(grid).parent
    for stem in ("fig1_paper_panel", "fig2_map", "fig3_true_positives", "fig4_cooccurrence",
                 "fig5_cb_weights",
                 "fig6_loss"):
        assert (out / f"{stem}.pdf").stat().st_size > 1000
        pixels = np.asarray(Image.open(out / f"{stem}.png").convert("L"), dtype=float)
        assert pixels.std() > 10, stem  # something is drawn
    assert not list(out.glob(".*tmp*"))  # figures are renamed into place


def test_seeds_times_folds_give_paired_tests_with_real_p_values(tmp_path):
    cfg = configs.from_dict({"experiment": {"name": "s", "runs_dir": str(tmp_path), "seeds": [0, 1, 2]},
                             "dataset": {"n_images": 160},
                             "splits": {"ratios": [0.5], "single_positive": True}},
                            source="test")
    splits.make(cfg)
    write_grid(cfg)
    path = report.report(cfg)
    paired = pd.read_csv(path.parent / "paired_vs_ce.csv", dtype={"protocol": str})
    pick = (paired["method"] == "ignore_missing") & (paired["protocol"] == "0.5") & \
        (paired["metric"] == "OF1")
    row = paired[pick].iloc[0]
    ce, im = [], []
    for seed in (0, 1, 2):
        for k in range(4):
            for method, out in (("ce", ce), ("ignore_missing", im)):
                with h5py.File(predictions.file(cfg, HeadRun(seed, k, "0.5", method))) as h5:
                    out.append(f1_score(h5["labels"][:], h5["probabilities"][:] >= 0.5, average="micro"))
    diff = np.array(im) - np.array(ce)
    assert row["pairs"] == 12 and row["better"] == (diff > 0).sum()
    assert row["mean difference"] == pytest.approx(diff.mean(), abs=1e-4)
    assert row["wilcoxon p"] == pytest.approx(stats.wilcoxon(diff).pvalue, rel=1e-4)
    assert row["wilcoxon p"] < 0.05 and row["holds"].startswith("yes")  # 12 pairs can say it
    assert "single positive" in set(paired["protocol"])
    assert (tmp_path / "s" / "seed2" / "heads" / "fold4" / "single_positive" / "ce"
            / "predictions.h5").is_file()


def test_holm_adjustment_against_a_loop():
    p = np.array([0.01, 0.04, np.nan, 0.03, 0.2])
    got = tables.holm(p)
    order = [0, 3, 1, 4]
    want, running = {}, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1, (4 - rank) * p[i]))
        want[i] = running
    np.testing.assert_allclose(got[order], [want[i] for i in order])
    assert np.isnan(got[2])


def test_runs_made_from_other_settings_are_refused(tmp_path):
    cfg = configs.from_dict({"experiment": {"name": "x", "runs_dir": str(tmp_path)},
                             "dataset": {"n_images": 80}},
                            source="test")
    splits.make(cfg)
    write_grid(cfg)
    changed = configs.from_dict({"experiment": {"name": "x", "runs_dir": str(tmp_path)},
                                 "dataset": {"n_images": 80},
                                 "heads": {"epochs": 7}}, source="test")
    with pytest.raises(ValueError, match=r"heads seed 0, fold 1, 0, ce: heads.epochs: 20 -> 7"):
        report.report(changed)


def test_no_runs_is_an_error(tmp_path):
    cfg = configs.from_dict({"experiment": {"name": "empty", "runs_dir": str(tmp_path)},
                             "dataset": {"n_images": 80}},
                            source="test")
    splits.make(cfg)
    with pytest.raises(ValueError, match="no complete predictions.h5"):
        report.report(cfg)


def test_damaged_prediction_arrays_are_refused_by_the_reader(tmp_path):
    rng = np.random.default_rng(0)
    path = predictions.write(tmp_path, ids=[f"i{k}" for k in range(50)], labels=rng.random((50, 4)) < 0.3,
                             probabilities=rng.random((50, 4)), attrs={"method": "ce"}, provenance={"x": 1})
    assert predictions.read(path)["probabilities"].shape == (50, 4)
    with h5py.File(path, "r") as h5:
        offset = h5["probabilities"].id.get_offset()
    with open(path, "r+b") as fh:  # 64 bytes inside the probabilities, the metadata untouched
        fh.seek(offset + 100)
        fh.write(bytes(64))
    with pytest.raises(ValueError, match=f"{path} is damaged: its arrays differ from the checksum"):
        predictions.read(path)


def test_a_second_report_at_once_is_refused(grid):
    cfg = grid
    path = cfg.run_dir / "analysis" / "report.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    busy = pytest.raises(ValueError, match=r"report.md is being made by process \d+")
    with artifacts.claim(path), busy:  # another report is being written
        report.report(cfg)
    assert not list(path.parent.glob(".*.tmp*"))


def test_the_report_over_a_damaged_prediction_file_exits_non_zero_naming_it(grid, capsys):
    from analysis import __main__ as analysis_cli
    path = predictions.file(grid, HeadRun(0, 2, "0.5", "ce"))
    with h5py.File(path, "r") as h5:
        offset = h5["probabilities"].id.get_offset()
    original = path.read_bytes()
    try:
        with open(path, "r+b") as fh:
            fh.seek(offset + 8)
            fh.write(bytes(64))
        config = grid.run_dir.parent / "grid.toml"
        config.write_text(f'[experiment]\nname = "{grid.experiment.name}"\nruns_dir = '
                          f'"{grid.run_dir.parent}"\n'
                          f'[dataset]\nn_images = {grid.dataset.n_images}\n')
        assert analysis_cli.main(["report", "--config", str(config)]) == 2
        assert f"{path} is damaged" in capsys.readouterr().err
    finally:
        path.write_bytes(original)


@pytest.mark.slow
def test_two_reports_started_at_once_never_crash_or_mix(grid):
    """Two `analysis report` processes at once (the probe: one crashed on a shared temp figure
    name, 2 of 3 trials): each either finishes or is refused by name, and what is left is one
    whole report with no temp files."""
    root = Path(__file__).resolve().parents[1]
    config = grid.run_dir.parent / "grid.toml"
    config.write_text(f'[experiment]\nname = "{grid.experiment.name}"\nruns_dir = "{grid.run_dir.parent}"\n'
                      f'[dataset]\nn_images = {grid.dataset.n_images}\n')
    env = {**os.environ, "PYTHONPATH": str(root)}
    both = [subprocess.Popen([sys.executable, "-m", "analysis", "report", "--config", str(config)],
                             cwd=root, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    ended = [(p.wait(timeout=300), p.stderr.read()) for p in both]
    for code, err in ended:
        assert code == 0 or (code == 2 and "report.md is being made by " in err), err[-1500:]
    assert any(code == 0 for code, _ in ended)
    out = grid.run_dir / "analysis"
    assert (out / "report.md").read_text().startswith("# Report") and not list(out.glob(".*.tmp*"))

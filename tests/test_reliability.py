"""Outputs that know what made them: one test per probe of the reliability issue, each on the
demo config made small, in a temporary directory."""
import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

import artifacts
import configs
import splits
from analysis import report
from extract import extraction
from features import store as feature_store
from heads import __main__ as heads_cli
from heads import predictions, sources, trainer
from heads.predictions import HeadRun
from splits import __main__ as splits_cli
from splits import store as splits_store
from tests.conftest import ROOT
from tests.helpers import alive, children, make_features, save_random_checkpoint, write_config


def test_changed_settings_are_never_reused_silently(tmp_path, capsys):
    cfg = configs.load(write_config(tmp_path / "a.toml", tmp_path))
    make_features(cfg)
    trainer.train(cfg)
    report.report(cfg)
    for change, key in (({"experiment": {"seed": 1}}, "seed: 0 -> 1"),
                        ({"dataset": {"n_images": 100}}, "dataset.n_images: 120 -> 100"),
                        ({"splits": {"n_folds": 3}}, "splits.n_folds: 2 -> 3")):
        changed = configs.load(write_config(tmp_path / "b.toml", tmp_path, **change))
        with pytest.raises(ValueError, match="was made from other inputs or settings") as err:
            splits.make(changed)
        assert key in str(err.value) and "--force" in str(err.value)
    longer = configs.load(write_config(tmp_path / "c.toml", tmp_path, heads={"epochs": 2}))
    with pytest.raises(ValueError,
                       match=r"8 heads run\(s\) were made from other inputs or settings:\n  seed 0, fold 1, "
                                         r"0, ce: heads.epochs: 1 -> 2\n"):
        trainer.train(longer)
    with pytest.raises(ValueError, match=r"heads seed 0, fold 1, 0, ce: heads.epochs: 1 -> 2"):
        report.report(longer)  # the report checks what it reads
    trainer.train(longer, force=True)
    assert "made from other" not in str(report.report(longer))
    with h5py.File(predictions.file(longer, HeadRun(0, 0, "0.5", "ce"))) as h5:
        assert '"heads.epochs": 2' in h5.attrs["provenance"]


def test_a_missing_checkpoint_is_an_error_before_already_done(tmp_path):
    checkpoint = save_random_checkpoint("demo_cnn", 96, tmp_path / "ckpt" / "model.ckpt")
    cfg = configs.load(write_config(tmp_path / "a.toml", tmp_path, extract={"checkpoint": str(checkpoint),
                                                                             "batch_size": 16,
                                                                             "chunk_rows": 32}))
    splits.make(cfg)
    extraction.extract_features(cfg)
    gone = configs.load(write_config(tmp_path / "b.toml", tmp_path,
                                     extract={"checkpoint": str(tmp_path / "nowhere.ckpt"), "batch_size": 16,
                                              "chunk_rows": 32}))
    with pytest.raises(ValueError, match="nowhere.ckpt not found"):
        extraction.extract_features(gone)


def truncate(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2)


def test_truncated_stores_are_named_and_force_rebuilds_them(tmp_path):
    cfg = configs.load(write_config(tmp_path / "a.toml", tmp_path))
    make_features(cfg)
    trainer.train(cfg, only={"method": "ce"})
    splits_path = splits_store.path(cfg)
    truncate(splits_path)
    for action in (lambda: splits.make(cfg), lambda: trainer.train(cfg),
                   lambda: splits_store.load(splits_path)):
        with pytest.raises(ValueError, match=f"{splits_path} is damaged.*--force"):
            action()
    assert splits_cli.main(["describe", str(splits_path)]) == 2
    splits.make(cfg, force=True)  # removed unopened, made anew
    assert splits_store.load(splits_path).n_folds == 2
    run = predictions.file(cfg, HeadRun(0, 0, "0", "ce"))
    truncate(run)
    with pytest.raises(ValueError, match=f"{run} is damaged"):
        report.report(cfg)
    trainer.train(cfg, only={"method": "ce"}, force=True)
    report.report(cfg)
    features = feature_store.path(cfg)
    truncate(features)
    with pytest.raises(ValueError, match=f"{features} is damaged"):
        trainer.train(cfg)


@pytest.mark.slow
def test_killing_a_parallel_heads_run_leaves_no_worker_and_a_second_run_is_refused(tmp_path):
    config = write_config(tmp_path / "a.toml", tmp_path, dataset={"n_images": 400}, splits={"n_folds": 4},
                          heads={"epochs": 200, "head": "paper_mlp", "hidden": [256]})
    cfg = configs.load(config)
    make_features(cfg)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    parent = subprocess.Popen([sys.executable, "-m", "heads", "train", "--config", str(config),
                               "--n-jobs", "2"],
                              cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len([p for p in children(parent.pid) if alive(p)]) < 2:
        time.sleep(0.5)
    workers = children(parent.pid)
    assert len(workers) >= 2, "the parallel workers did not start"
    second = subprocess.run([sys.executable, "-m", "heads", "train", "--config", str(config)],
                            cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120, check=False)
    assert second.returncode == 2 and f"is being made by process {parent.pid}" in second.stderr
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.time() + 15
    while time.time() < deadline and any(alive(p) for p in workers):
        time.sleep(0.2)
    assert not [p for p in workers if alive(p)], "workers outlived their command"
    assert not list(cfg.run_dir.glob("heads/**/predictions.h5"))  # nothing was written after the kill


@pytest.mark.slow
@pytest.mark.parametrize("jobs", [1, 2])
def test_ctrl_c_in_a_terminal_ends_the_run_at_once_and_the_rerun_completes(tmp_path, jobs):
    """SIGINT to the whole process group, as a terminal's Ctrl-C sends it, while the first fold
    trains: exit 130 within seconds with one line and no traceback, no worker left, no run of
    the interrupted folds complete, and the rerun finishes. (One job ran its folds in a worker
    thread, which the interpreter waited for, every queued fold with it: a run that was meant
    to stop finished instead.)"""
    config = write_config(tmp_path / "a.toml", tmp_path, dataset={"n_images": 400}, splits={"n_folds": 4},
                          heads={"epochs": 400, "head": "paper_mlp", "hidden": [256]})
    cfg = configs.load(config)
    make_features(cfg)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "heads", "train", "--config", str(config), "--n-jobs", str(jobs)]
    # A shell that starts a job in the background (`make test &`, a CI runner) leaves SIGINT ignored
    # and the child would inherit that; a terminal's foreground command has it handled, as here.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        parent = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, start_new_session=True)
    finally:
        signal.signal(signal.SIGINT, previous)
    deadline = time.time() + 120
    wanted = 2 if jobs > 1 else 0

    def started() -> bool:  # past its imports: the runs claimed (their locks), the workers up
        return any(cfg.run_dir.glob("**/predictions.h5.lock")) and \
            len([p for p in children(parent.pid) if alive(p)]) >= wanted

    while time.time() < deadline and not started():
        time.sleep(0.5)
    workers = children(parent.pid) if jobs > 1 else set()
    assert len(workers) >= (2 if jobs > 1 else 0), "the parallel workers did not start"
    time.sleep(2)
    os.killpg(parent.pid, signal.SIGINT)
    sent = time.time()
    _, stderr = parent.communicate(timeout=120)
    assert time.time() - sent < 15, "the interrupted run went on"
    assert parent.returncode == 130, stderr
    assert "Traceback" not in stderr and stderr.strip().splitlines()[-1].startswith("interrupted:"), stderr
    deadline = time.time() + 15
    while time.time() < deadline and any(alive(p) for p in workers):
        time.sleep(0.2)
    assert not [p for p in workers if alive(p)], "workers outlived their command"
    assert len(list(cfg.run_dir.glob("heads/**/predictions.h5"))) < 4 * 2 * 2
    if jobs > 1:
        return  # the rerun after an interrupt: once (below) is enough
    short = write_config(tmp_path / "a.toml", tmp_path, dataset={"n_images": 400}, splits={"n_folds": 4},
                         heads={"epochs": 1, "head": "paper_mlp", "hidden": [256]})
    rerun = subprocess.run([*command[:5], str(short), "--n-jobs", "2", "--force"], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=300, check=False)
    assert rerun.returncode == 0, rerun.stderr
    assert len(list(cfg.run_dir.glob("heads/**/predictions.h5"))) == 4 * 2 * 2


@pytest.mark.parametrize("change, message", [
    ({"heads": {"epochs": 0}}, "heads.epochs = 0; must be >= 1"),
    ({"heads": {"batch_size": 0}}, "heads.batch_size = 0; must be >= 1"),
    ({"heads": {"learning_rate": -1}}, "heads.learning_rate = -1.0; must be > 0"),
    ({"splits": {"ratios": []}}, "splits.ratios is empty"),
    ({"splits": {"ratios": [0.5, 0.5]}}, "splits.ratios names 0.5 twice"),
    ({"heads": {"methods": []}}, "heads.methods is empty"),
    ({"extract": {"backbone": "resnet50"}},
     "extract.backbone = 'resnet50'; allowed: demo_cnn, inception_resnet_v2"),
    ({"dataset": {"adapter": "csv"}}, "dataset.adapter = 'csv' needs dataset.annotations"),
    ({"extract": {"chunk_rows": 100, "batch_size": 32}}, "extract.chunk_rows = 100; must be a multiple"),
    ({"heads": {"paper_exact": True, "learning_rate": 0.5}},
     "heads.paper_exact sets heads.learning_rate = 0.1"),
])
def test_settings_are_validated_when_the_config_loads(tmp_path, change, message):
    with pytest.raises(ValueError, match=message):
        configs.load(write_config(tmp_path / "a.toml", tmp_path, **change))


def test_a_misspelled_method_fails_before_any_stage(tmp_path, capsys):
    config = write_config(tmp_path / "a.toml", tmp_path, heads={"methods": ["ce", "confidnce"]})
    assert heads_cli.main(["check", "--config", str(config)]) == 2
    assert "holds 'confidnce', which is no method" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
    config = write_config(tmp_path / "b.toml", tmp_path)
    config.write_text(config.read_text() + "[heads.params.asl]\ngama = 1\n")
    assert heads_cli.main(["check", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "method 'asl' has no parameter 'gama'; its parameters: gamma_pos, gamma_neg, clip" in err


def test_make_runs_the_check_first_and_takes_paths_with_spaces(tmp_path):
    folder = tmp_path / "with spaces"
    folder.mkdir()
    config = write_config(folder / "my config.toml", tmp_path, heads={"methods": ["ce", "confidnce"]})
    done = subprocess.run(["make", "-s", "splits", f"CONFIG={config}"], cwd=ROOT,
                          capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode != 0 and "which is no method" in done.stderr
    assert not (tmp_path / "r" / "splits.h5").exists()  # no stage ran
    write_config(folder / "my config.toml", tmp_path)
    done = subprocess.run(["make", "-s", "splits", f"CONFIG={config}"], cwd=ROOT,
                          capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "r" / "splits.h5").is_file()


def test_a_wrong_image_root_fails_and_the_fix_completes(tmp_path):
    checkpoint = save_random_checkpoint("demo_cnn", 96, tmp_path / "ckpt" / "model.ckpt")
    extract = {"checkpoint": str(checkpoint), "batch_size": 16, "chunk_rows": 32}
    cfg = configs.load(write_config(tmp_path / "a.toml", tmp_path, extract=extract))
    splits.make(cfg)  # writes the images under runs/r/data
    data = cfg.run_dir / "data"
    labels = (data / "labels.csv").read_text()
    (tmp_path / "labels.csv").write_text(labels)
    wrong = configs.load(write_config(tmp_path / "b.toml", tmp_path / "w", extract=extract,
                                      dataset={"adapter": "csv", "annotations": str(tmp_path / "labels.csv"),
                                               "root": str(tmp_path / "nowhere")}))
    splits.make(wrong)
    with pytest.raises(ValueError, match="none of the 120 images checked exists.*dataset.root"):
        extraction.extract_features(wrong)
    assert not feature_store.path(wrong).exists()
    half = configs.load(write_config(tmp_path / "c.toml", tmp_path / "h",
                                     extract={**extract, "max_invalid_share": 0.2},
                                     dataset={"adapter": "csv", "annotations": str(tmp_path / "labels.csv"),
                                              "root": str(data)}))
    splits.make(half)
    for image in sorted((data / "images").glob("*.png"))[:40]:
        image.rename(image.with_suffix(".moved"))
    with pytest.raises(ValueError,
                       match=r"40 of 120 images are unreadable \(extract.max_invalid_share = 0.2\)"):
        extraction.extract_features(half)
    assert not feature_store.path(half).exists() and not list(feature_store.path(half).parent.glob("*.tmp"))
    for image in (data / "images").glob("*.moved"):
        image.rename(image.with_suffix(".png"))
    assert feature_store.FeatureReader(extraction.extract_features(half)).valid.all()  # the rerun completes


def test_a_crash_inside_a_chunk_commit_does_not_duplicate_errors(tmp_path):
    path = tmp_path / "s.h5.tmp"
    feature_store.create(path, [f"r{i}" for i in range(8)], 3, "float32", 4, {}, {"x": 1})
    feature_store.commit_chunk(path, 0, np.zeros((4, 3)), np.array([1, 0, 1, 1], bool), [("r1", "bad")])
    with h5py.File(path, "r+") as h5:  # a crash after the errors of chunk 1 were written, before its flag
        for name, value in (("error_ids", "r6"), ("error_messages", "bad")):
            h5[name].resize((2,))
            h5[name][-1] = value
    assert feature_store.pending_chunks(path) == [1]
    feature_store.commit_chunk(path, 1, np.zeros((4, 3)), np.array([1, 1, 0, 1], bool), [("r6", "bad")])
    with h5py.File(path) as h5:
        assert list(h5["error_ids"].asstr()[:]) == ["r1", "r6"]


def test_non_finite_features_name_the_real_fix(tmp_path):
    reader = type("Reader", (), {"path": tmp_path / "f.h5"})
    with pytest.raises(ValueError, match=r"rebuild them \(make features FORCE=1\)"):
        sources.finite(np.array([[1.0, np.nan]]), reader.path)


def test_a_figure_that_fails_half_written_leaves_no_file(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    from analysis import figures
    fig = plt.figure()

    def fail(path, **_):
        Path(path).write_bytes(b"%PDF-partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(fig, "savefig", fail)
    with pytest.raises(KeyboardInterrupt):
        figures._save(fig, tmp_path / "fig")
    assert not (tmp_path / "fig.png").exists() and not (tmp_path / "fig.pdf").exists()


def test_an_output_folder_that_cannot_be_written_fails_before_training(tmp_path, monkeypatch):
    cfg = configs.load(write_config(tmp_path / "a.toml", tmp_path))
    make_features(cfg)
    monkeypatch.setattr(trainer, "train_fold",
                        lambda *args: pytest.fail("trained before checking the output"))
    (cfg.run_dir / "heads").write_text("a file where the heads folder goes")
    with pytest.raises(ValueError, match="cannot write"):
        trainer.train(cfg)


def test_claims_refuse_a_second_holder_and_are_released(tmp_path):
    target = tmp_path / "out.h5"
    script = (f"import sys; sys.path.insert(0, {str(ROOT)!r})\n"
              f"import artifacts\nwith artifacts.claim({str(target)!r}): pass")
    second = [sys.executable, "-c", script]
    with artifacts.claim(target):
        done = subprocess.run(second, capture_output=True, text=True, check=False)
    assert done.returncode != 0 and f"{target} is being made by process {os.getpid()}" in done.stderr
    # released with its holder
    assert subprocess.run(second, capture_output=True, check=False).returncode == 0


def test_ctrl_c_is_one_line_and_exit_130(capsys):
    from runtime.cli import run_cli

    def interrupted():
        raise KeyboardInterrupt

    assert run_cli(interrupted) == 130
    assert capsys.readouterr().err.startswith("interrupted: nothing unfinished was marked complete")


def test_a_listing_piped_into_head_ends_quietly():
    done = subprocess.run(f"{sys.executable} -m heads methods | head -1", shell=True, cwd=ROOT,
                          capture_output=True,
                          text=True, timeout=120, check=False, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.stdout.startswith("ce ") and "Traceback" not in done.stderr, done.stderr


def test_only_given_twice_adds_up_and_a_key_given_two_values_is_refused(capsys):
    from finetune import __main__ as finetune_cli
    with pytest.raises(SystemExit):
        heads_cli.main(["train", "--only", "fold=1", "--only", "fold=2"])
    assert "--only gives fold twice (1 and 2)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        finetune_cli.main(["train", "--only", "method=ce", "--only", "method=an"])
    assert "--only gives method twice" in capsys.readouterr().err
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", type=predictions.parse_only, action=predictions.MergeOnly, default={})
    assert parser.parse_args(["--only", "fold=1", "--only", "method=ce,seed=2"]).only == \
        {"fold": "1", "method": "ce", "seed": "2"}


def mounted(mount: Path, options: str):
    """A tmpfs at `mount` (needs root, as in CI; the test is skipped otherwise)."""
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount)], capture_output=True,
                          text=True, check=False)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or done.returncode}): the disk tests "
                    "need root")
    return mount


@pytest.fixture
def full_disk(tmp_path):
    """A 64 KiB tmpfs: a disk that fills at once."""
    yield mounted(tmp_path / "disk", "size=64k")
    subprocess.run(["umount", str(tmp_path / "disk")], check=False)


@pytest.fixture
def read_only_disk(tmp_path):
    yield mounted(tmp_path / "ro", "size=1m,ro")
    subprocess.run(["umount", str(tmp_path / "ro")], check=False)


def test_a_read_only_disk_is_named_before_any_work(tmp_path, read_only_disk, capsys):
    config = write_config(tmp_path / "c.toml", tmp_path / "runs",
                          dataset={"root": str(read_only_disk / "data")})
    assert splits_cli.main(["make", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert f"cannot write to {read_only_disk}/data/images (Read-only file system" in err
    assert "Traceback" not in err


def test_a_full_disk_is_one_named_error_and_nothing_is_marked_complete(tmp_path, full_disk):
    """The command a user runs, in its own process: HDF5 cannot close a file it failed to write
    and would crash at exit (rc 139), so the command must leave with its own exit code."""
    images = tmp_path / "images"  # the synthetic images on the roomy disk, the runs on the full one
    config = write_config(tmp_path / "c.toml", full_disk, dataset={"n_images": 1200, "root": str(images)})
    done = subprocess.run([sys.executable, "-m", "splits", "make", "--config", str(config)], cwd=ROOT,
                          capture_output=True, text=True, check=False)
    err = done.stderr
    assert done.returncode == 2, err[-2000:]
    assert f"{full_disk}/r/splits.h5" in err and "writing failed (No space left on device" in err
    assert "MiB free there" in err and "Traceback" not in err
    assert not list(full_disk.rglob("*.h5")) and not list(full_disk.rglob("*.tmp"))
    roomy = write_config(tmp_path / "c2.toml", tmp_path / "runs",
                         dataset={"n_images": 1200, "root": str(images)})
    assert splits_cli.main(["make", "--config", str(roomy)]) == 0  # the same stage with room works


def test_text_outputs_name_a_failed_write(tmp_path, full_disk):
    with pytest.raises(ValueError, match=r"report.md: writing failed \(No space left on device"):
        artifacts.write_text(full_disk / "report.md", "x" * 200_000)
    assert not list(full_disk.iterdir())


def test_features_import_on_a_full_disk_is_one_named_error_and_the_rerun_with_room_works(tmp_path, full_disk):
    table = tmp_path / "t.csv"
    rng = np.random.default_rng(0)
    rows = ["a,b,c,y1,y2"] + [",".join(f"{v:.6f}" for v in rng.normal(size=3)) + f",{i % 2},{(i + 1) % 2}"
                              for i in range(4000)]
    table.write_text("\n".join(rows) + "\n")
    config = write_config(tmp_path / "c.toml", full_disk, dataset={"adapter": "table", "features": str(table),
                                                                   "n_labels": 2, "min_labels": 1})
    done = subprocess.run([sys.executable, "-m", "features", "import", "--config", str(config)], cwd=ROOT,
                          capture_output=True, text=True, check=False,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 2, done.stderr[-2000:]
    assert "No space left on device" in done.stderr and "Traceback" not in done.stderr
    assert not list(full_disk.rglob("*.h5")) and not list(full_disk.rglob("*.tmp"))
    roomy = write_config(tmp_path / "c2.toml", tmp_path / "runs",
                         dataset={"adapter": "table", "features": str(table),
                                                                          "n_labels": 2, "min_labels": 1})
    again = subprocess.run([sys.executable, "-m", "features", "import", "--config", str(roomy)], cwd=ROOT,
                           capture_output=True, text=True, check=False,
                           env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert again.returncode == 0, again.stderr[-2000:]


def test_force_clears_a_damaged_temp_file_and_builds_anew(tmp_path):
    out = tmp_path / "store.h5"
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(b"\x89HDF\r\n half a file")
    assert artifacts.must_make(out, {"recipe": 1}, force=True)
    assert not tmp.exists()


def test_shard_indices_are_0_based_and_checked():
    assert extraction.shard_rows(10, 2, (0, 2)) == (0, 4) and extraction.shard_rows(10, 2, (1, 2)) == (4, 10)
    for bad in ((2, 2), (-1, 2)):
        with pytest.raises(ValueError, match=f"--shard {bad[0]}/2: need 0 <= i < n"):
            extraction.shard_rows(10, 2, bad)


def test_zero_jobs_is_refused(tmp_path):
    cfg = configs.load(write_config(tmp_path / "c.toml", tmp_path))
    make_features(cfg)
    with pytest.raises(ValueError, match="--n-jobs 0: the number of parallel stacks must be at least 1"):
        trainer.train(cfg, n_jobs=0)


def test_the_report_counts_the_pairs_it_has():
    paired = pd.DataFrame({"pairs": [12, 12, 3]})
    assert report.smallest_p(paired) == ("With 12 pairs the smallest possible p is 0.000488; "
                                         "with 3 pairs the smallest possible p is 0.25. ")


def test_ratios_a_thousandth_apart_train_side_by_side_in_one_command(tmp_path, capsys):
    cfg = configs.load(write_config(tmp_path / "c.toml", tmp_path,
                                    splits={"n_folds": 2, "ratios": [0.121, 0.124]}))
    make_features(cfg)
    trainer.train(cfg, n_jobs=1)
    out = capsys.readouterr().out
    assert "being made by process" not in out
    assert {p.parent.parent.name for p in cfg.run_dir.glob("heads/fold1/*/*/predictions.h5")} == \
        {"ratio0.121", "ratio0.124"}

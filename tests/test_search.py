"""The search: grid points as heads of one stack against each point alone, selection without
ground truth, the planner, grid checks, and the batched AP against scikit-learn."""
import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score

import configs
import metrics
from heads import inputs as run_inputs
from heads import methods, models, planner, search, trainer
from heads.predictions import HeadRun
from heads.sources import epoch_batches
from splits import store as splits_store
from tests.helpers import make_features, probabilities, small_config

from .test_models import BATCH, EPOCHS, D, N, inputs_for, make_data

BASE_LR = 0.05


@pytest.fixture(scope="module")
def data():
    return make_data()


def other_point(name: str) -> dict:
    """A second grid point of `name`: its first searched parameter at another value (ROLE: lr_mult)."""
    grid = methods.get(name).search
    if name == "role":
        return {"lr_mult": 3.0}
    if not grid:
        return {}
    parameter = min(grid)
    default = methods.get(name).params[parameter]
    return {parameter: next(v for v in grid[parameter] if v != default)}


def fit_points(names, points, data, optimizer, learning_rate=BASE_LR):
    """A stack of heads `names` at `learning_rate`, head h at (lr scale, parameter overrides) `points[h]`."""
    x, truth, observed = data
    order = np.random.default_rng(1)
    inputs = inputs_for(names, truth, observed)
    inputs = dataclasses.replace(
        inputs, params=[{**p, **extra} for p, (_, extra) in zip(inputs.params, points)],
        lr_scale=np.array([scale for scale, _ in points]))

    def batches():
        for rows in epoch_batches(N, BATCH, order):
            yield rows, x[rows]

    def blocks():
        yield np.arange(N), x

    stack = models.HeadStack(list(names), hidden=(8,), optimizer=optimizer, learning_rate=learning_rate,
                             epochs=EPOCHS, seed=0)
    stack.fit(batches, inputs, d_in=D, train_blocks=blocks)
    return stack.predict_proba(x)


ADADELTA_CASES = ["ce", "confidence_auto", "asl", "role", "ll_cp"]  # Adadelta: its state is not scale-free


@pytest.mark.parametrize("optimizer", ["adam", "adadelta"])
def test_every_grid_point_in_one_stack_equals_it_trained_alone_at_its_rate(data, optimizer):
    names, points = [], []
    for name in methods.METHODS if optimizer == "adam" else ADADELTA_CASES:
        names += [name, name]
        points += [(1.0, {}), (3.0 if optimizer == "adam" else 0.4, other_point(name))]
    together = fit_points(names, points, data, optimizer)
    for h, (name, (scale, extra)) in enumerate(zip(names, points)):
        # no rescaling
        alone = fit_points([name], [(1.0, extra)], data, optimizer, learning_rate=BASE_LR * scale)
        np.testing.assert_allclose(together[h], alone[0], atol=1e-5,
                                   err_msg=f"{name} at {scale} x lr, {extra}")


HALVING_CASES = ["ce", "confidence_auto", "role", "ll_cp", "em_apl", "asl"]  # stateful methods among them


def halving_fit(data, schedule):
    """Three grid points of each HALVING_CASES method (one run each), selected on held-out rows."""
    x, truth, observed = data
    names, points = [], []
    for name in HALVING_CASES:
        names += [name] * 3
        points += [(0.3, {}), (1.0, other_point(name)), (3.0, {})]
    inputs = inputs_for(names, truth, observed)
    inputs = dataclasses.replace(inputs,
                                 params=[{**p, **extra} for p, (_, extra) in zip(inputs.params, points)],
                                 lr_scale=np.array([scale for scale, _ in points]))
    order = np.random.default_rng(1)
    val = np.arange(N - 40, N)

    def batches():
        for rows in epoch_batches(N, BATCH, order):
            yield rows, x[rows]

    def blocks():
        yield np.arange(N), x

    validation = models.Validation(lambda: iter([(np.arange(len(val)), x[val])]), observed[val][None],
                                   inputs.bank[:, val])
    select = models.Selection(truth[val][None], np.zeros(len(names), int))
    stack = models.HeadStack(list(names), hidden=(8,), optimizer="adam", learning_rate=BASE_LR,
                             epochs=6, seed=0)
    run_of = np.repeat(np.arange(len(HALVING_CASES)), 3)
    stack.fit(batches, inputs, validation, d_in=D, select=select, train_blocks=blocks,
              schedule=None if schedule is None else schedule._replace(run_of=run_of))
    return stack, stack.predict_proba(x)


def test_the_points_halving_keeps_train_exactly_as_in_the_whole_stack(data):
    whole, full = halving_fit(data, models.Schedule(np.zeros(0), restore=False))
    halved, kept = halving_fit(data,
                               models.Schedule(np.zeros(0), milestones=(2, 4), halving=2, restore=False))
    assert len(halved.alive_) == len(HALVING_CASES) and len(whole.alive_) == 3 * len(HALVING_CASES)
    # each run keeps its best 2 of 3 points after epoch 2, its best 1 of 2 after epoch 4
    for run in range(len(HALVING_CASES)):
        heads = np.arange(3 * run, 3 * run + 3)
        assert np.isnan(halved.val_scores_[4:, heads]).sum() == 2 * 2  # two points dropped by epoch 5
    np.testing.assert_allclose(kept, full[halved.alive_], atol=1e-5)
    np.testing.assert_allclose(halved.val_scores_[:2], whole.val_scores_[:2], atol=1e-6)
    survivors = halved.alive_
    np.testing.assert_allclose(halved.val_scores_[:, survivors], whole.val_scores_[:, survivors], atol=1e-5)
    assert [h["train_loss"].shape for h in halved.history_] == [(18,)] * 6


def test_batched_average_precision_equals_scikit_learn_with_ties_and_empty_columns():
    rng = np.random.default_rng(0)
    truth = (rng.random((3, 60, 7)) < 0.3).astype(int)
    truth[1, :, 4] = 0
    scores = np.round(rng.random((3, 60, 7)), 1)  # many ties
    got = metrics.average_precision(truth, scores)
    for h in range(3):
        for c in range(7):
            expected = average_precision_score(truth[h, :, c],
                                               scores[h, :, c]) if truth[h, :, c].any() else np.nan
            np.testing.assert_allclose(got[h, c], expected, atol=1e-12)
    np.testing.assert_allclose(metrics.mean_average_precision(truth, scores), np.nanmean(got, axis=1))


def searched(root, **search_table):
    """A searched config of three methods; per-run selection without halving unless the table says."""
    cfg = small_config(root, methods=["ce", "an", "confidence_auto"], optimizer="adam", learning_rate=0.003)
    table = {"lr": [0.003, 0.03], "pool": "run", "halving": 1, **search_table}
    return dataclasses.replace(cfg, splits=dataclasses.replace(cfg.splits, validation=0.2),
                               heads=dataclasses.replace(cfg.heads, search=configs.Search(
                                   enabled=True, **{k: tuple(v) if isinstance(v, list) else v
                                                    for k, v in table.items()})))


def choices(cfg, runs):
    return {run: pd.read_csv(trainer.predictions.run_dir(cfg, run) / "search.csv")["chosen"].tolist()
            for run in runs}


def test_the_default_selection_reads_no_ground_truth(tmp_path, monkeypatch):
    cfg = searched(tmp_path / "a")
    make_features(cfg)
    trainer.train(cfg, only={"fold": "1"}, n_jobs=1)
    runs = [HeadRun(0, 0, p, m) for p in ("0.5", "0.75") for m in cfg.heads.methods]
    first = choices(cfg, runs)
    epochs = cfg.heads.epochs  # search.csv: a row per grid point and epoch, the winner's row marked
    assert all(len(c) == epochs * 2 * (1 if m == "ce" or m == "an" else 4) and sum(c) == 1
               for m, c in zip([r.method for r in runs], first.values()))

    # the same study with every true label inverted: observed labels (and features) unchanged
    loaded = splits_store.load

    def inverted(path):
        sf = loaded(path)
        return dataclasses.replace(sf, labels=1 - sf.labels)

    monkeypatch.setattr(trainer.splits_store, "load", inverted)
    trainer.train(cfg, only={"fold": "1"}, n_jobs=1, force=True)
    assert choices(cfg, runs) == first
    monkeypatch.undo()
    again = searched(tmp_path / "b")
    make_features(again)
    trainer.train(again, only={"fold": "1"}, n_jobs=1)
    for run in runs:
        np.testing.assert_array_equal(probabilities(cfg, run), probabilities(again, run))


def test_a_grid_larger_than_memory_is_split_into_stacks_with_the_same_results(tmp_path, monkeypatch, capsys):
    whole = searched(tmp_path / "whole")
    make_features(whole)
    trainer.train(whole, only={"fold": "1", "ratio": "0.5"}, n_jobs=1)
    split = searched(tmp_path / "split")
    make_features(split)
    per_head = planner.stack_bytes(split, 1, 24, 16, 80)
    monkeypatch.setattr(planner, "free_memory", lambda: int((9 * per_head + 4 * 24 * 400) / 0.8))
    capsys.readouterr()
    trainer.train(split, only={"fold": "1", "ratio": "0.5"}, n_jobs=1)
    assert "in 2 stack(s)" in capsys.readouterr().out
    for method in whole.heads.methods:
        run = HeadRun(0, 0, "0.5", method)
        np.testing.assert_allclose(probabilities(whole, run), probabilities(split, run), atol=1e-6)
    monkeypatch.setattr(planner, "free_memory", lambda: int(3 * per_head / 0.8))
    with pytest.raises(ValueError, match="8 paper_mlp heads .* need about"):
        trainer.train(split, only={"fold": "1", "ratio": "0.5"}, n_jobs=1, force=True)


def test_stacks_trained_at_once_share_free_memory(tmp_path, monkeypatch):
    """Two parallel jobs each hold a stack and its features: the planner gives each a half, and
    runs fewer jobs at once when the largest grid (confidence_auto's 8 points) would not fit in one."""
    cfg = searched(tmp_path)  # a fold's grid at one protocol: ce 2, an 2, confidence_auto 8 points
    stacks = {(0, fold): [HeadRun(0, fold, "0.5", m) for m in cfg.heads.methods] for fold in (0, 1)}
    grid = search.grid(cfg, cfg.heads.methods)
    per_head, feature_bytes = planner.stack_bytes(cfg, 1, 24, 16, 80), 4 * 24 * 400

    def plan(heads_in_memory, n_jobs):
        monkeypatch.setattr(planner, "free_memory", lambda: int((heads_in_memory + 0.5) * per_head / 0.8))
        at_once = planner.stacks_at_once(cfg, stacks, grid, feature_bytes, per_head, n_jobs)
        planned = planner.plan_stacks(cfg, stacks, grid, feature_bytes, 24, 16, 80, at_once)
        sizes = [sum(len(search.points(cfg, r.method)) for r in runs) for _, _, runs in planned]
        assert at_once * (max(sizes) * per_head + feature_bytes) <= 0.8 * planner.free_memory()
        return at_once, sizes

    room = feature_bytes / per_head
    assert plan(2 * (12 + room), 2) == (2, [12, 12])  # both folds whole, side by side
    assert plan(2 * (8 + room), 2) == (2, [4, 8, 4, 8])  # each fold in two stacks
    assert plan(12 + room, 2) == (1, [12, 12])  # one at a time rather than an out-of-memory crash
    assert plan(12 + room, 1) == (1, [12, 12])


def test_on_a_running_cluster_the_workers_memory_plans_the_stacks(tmp_path, monkeypatch):
    """A remote scheduler's workers train the stacks: each task gets its worker's memory limit
    shared by the worker's threads, not the free memory of the machine that plans."""
    distributed = pytest.importorskip("distributed")
    cfg = searched(tmp_path)
    stacks = {(0, 0): [HeadRun(0, 0, "0.5", m) for m in cfg.heads.methods]}
    grid = search.grid(cfg, cfg.heads.methods)
    per_head, feature_bytes = planner.stack_bytes(cfg, 1, 24, 16, 80), 4 * 24 * 400
    monkeypatch.setattr(planner, "free_memory", lambda: 2**40)
    limit = 2 * int((9 * per_head + feature_bytes) / 0.8)  # a thread's half holds 9 heads and the features
    for memory_limit, expected, sizes in ((limit, limit // 2, [4, 8]), (0, 2**40, [12])):
        with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                      dashboard_address=None,
                                      memory_limit=memory_limit) as local:
            remote = configs.with_scheduler(cfg, local.scheduler_address)
            assert planner.memory(remote) == expected  # 0: the workers set no limit, this machine's memory
            planned = planner.plan_stacks(remote, stacks, grid, feature_bytes, 24, 16, 80)
        assert [sum(len(search.points(cfg, r.method)) for r in runs) for _, _, runs in planned] == sizes


@pytest.mark.parametrize("table, message", [
    ({"params": {"asl": {"clip": [0.05, 1.5]}}},
     "method 'asl': parameter clip = 1.5; it must be in \\[0, 1\\)"),
    ({"params": {"asl": {"width": [1.0]}}}, "method 'asl' has no parameter 'width'"),
    ({"params": {"focal": {"gamma": [1.0]}}}, "names method 'focal', which is not in heads.methods"),
    ({"lr": [0.001, -1.0]}, "heads.search.lr holds -1.0"),
    ({"select": "test"}, "heads.search.select = 'test'"),
    ({"methods": ["asl"], "params": {"ce": {"power": [2.0]}}}, "'ce' is not in heads.search.methods"),
])
def test_a_bad_grid_is_an_error_at_load_naming_method_parameter_and_value(table, message):
    raw = {"heads": {"methods": ["ce", "asl"], "search": table}}
    with pytest.raises(ValueError, match=message):
        cfg = configs.from_dict(raw, source="bad.toml")
        methods.check(cfg.heads.methods, cfg.heads.params, cfg.source)
        search.check(cfg)


def test_points_cover_the_learning_rates_times_the_declared_grid():
    cfg = configs.from_dict({"heads": {"methods": ["ce", "asl"], "learning_rate": 0.01, "search": {}}})
    assert [p.lr for p in search.points(cfg, "ce")] == [0.001, 0.003, 0.01, 0.03, 0.1]
    asl = search.points(cfg, "asl")
    assert len(asl) == 5 * 4 and {(p.values["gamma_neg"], p.values["clip"]) for p in asl} == \
        {(2.0, 0.0), (2.0, 0.05), (4.0, 0.0), (4.0, 0.05)}
    off = configs.from_dict({"heads": {"methods": ["asl"]}})
    assert [p.values for p in search.points(off, "asl")] == [methods.parameters("asl")]


def test_zeroing_the_likeliest_hidden_entries_zeroes_the_expected_count():
    weights = np.array([[0.9, 0.2, 0.5], [0.1, 0.8, 0.3]], np.float32)
    observed = np.array([[1, 0, 0], [0, 0, 1]], np.uint8)
    out = run_inputs.zero_likely_hidden(weights, observed, 1.0, 0.5)  # 2 positives, half missing: 2 hidden
    np.testing.assert_array_equal(out, np.array([[0.9, 0.0, 0.5], [0.0, 0.8, 0.3]], np.float32))
    assert run_inputs.zero_likely_hidden(weights, observed, 1.0, 0.0) is weights


def test_the_pooled_choice_carries_a_dropped_point_forward_and_means_over_runs():
    rows = []
    for fold, (a, b) in enumerate([((0.50, 0.60, 0.70), (0.55, 0.65, np.nan)),   # b dropped after epoch 2
                                   ((0.40, 0.50, 0.60), (0.70, 0.80, 0.90))]):
        for point, scores in enumerate((a, b)):
            rows += [{"seed": 0, "fold": fold, "point": point, "epoch": e + 1, "score": v} for e,
                     v in enumerate(scores)]
    picked = search.choose(pd.DataFrame(rows))
    # point 1 at epoch 3: (0.65 carried forward + 0.90) / 2 = 0.775 beats point 0's best, 0.65
    assert (picked["point"], picked["epoch"], picked["runs"]) == (1, 3, 2)
    assert picked["score"] == pytest.approx(0.775)


def scores_of(table: dict) -> pd.DataFrame:
    """`choose`'s scores from {(point, epoch): [score of each run]} (runs as folds of seed 0)."""
    return pd.DataFrame([{"seed": 0, "fold": fold, "point": point, "epoch": epoch, "score": v}
                         for (point, epoch), values in table.items() for fold, v in enumerate(values)])


def test_under_evidence_the_unsearched_setting_wins_unless_a_point_beats_it_in_every_run():
    noisy = {(0, 1): [0.5, 0.6, 0.4, 0.5], (0, 2): [0.5, 0.5, 0.5, 0.5],  # point 0: the unsearched one
             (1, 1): [0.4, 0.4, 0.4, 0.4], (1, 2): [0.9, 0.4, 0.45, 0.45]}  # best mean, one lucky run
    plain = search.choose(scores_of(noisy))
    assert (plain["point"], plain["epoch"]) == (1, 2) and plain["lead"] != plain["lead"]  # NaN: no reference
    kept = search.choose(scores_of(noisy), reference=(0, 2), evidence=2.0)
    assert (kept["point"], kept["epoch"], kept["lead"]) == (0, 2, 0.0)
    steady = {**noisy, (1, 2): [0.56, 0.55, 0.57, 0.56]}  # ahead by 0.06 in every run: a spread of 0.008
    moved = search.choose(scores_of(steady), reference=(0, 2), evidence=2.0)
    differences = np.array([0.06, 0.05, 0.07, 0.06])
    assert (moved["point"], moved["epoch"]) == (1, 2)
    assert moved["lead"] == pytest.approx(differences.mean() - 2.0 * differences.std(ddof=1) / 2.0)
    # the same table without evidence: the best mean, and how far it is ahead of the reference
    assert search.choose(scores_of(steady), reference=(0, 2))["lead"] == pytest.approx(0.06)
    # of two settings ahead by more than the evidence, the higher mean wins, not the surer one
    both = {**steady, (1, 1): [0.70, 0.52, 0.62, 0.56]}  # ahead by 0.10 on average, bound 0.021 < 0.052
    assert search.choose(scores_of(both), reference=(0, 2), evidence=2.0)["epoch"] == 1


def test_the_unsearched_setting_is_a_grid_point_and_halving_never_drops_it():
    cfg = configs.from_dict({"heads": {"methods": ["asl"], "learning_rate": 0.002,
                                       "search": {"lr": [0.001, 0.003], "params": {"asl": {"clip": [0.0]}}}}})
    points = search.points(cfg, "asl")
    assert points[0] == search.unsearched(cfg, "asl") and search.reference(cfg, "asl") == 0
    assert len(points) == 1 + 2 * 2 and points[0].lr == 0.002
    assert points[0].values == methods.parameters("asl")
    kept = models.halved(np.array([0.9, 0.1, 0.8, 0.2]), np.zeros(4, int), 2, np.array([0, 1, 0, 0], bool))
    np.testing.assert_array_equal(kept, [0, 1, 2])
    with pytest.raises(ValueError, match=r"grid point 3\) has no validation score in every run"):
        search.choose(scores_of({(0, 2): [0.5, 0.6], (1, 1): [0.4, 0.5], (1, 2): [np.nan, np.nan]}),
                      reference=(3, 2), evidence=1.0)


def pooled(root, **search_table):
    return searched(root, pool="study", halving=2, milestones=[0.34], **search_table)


def test_a_pooled_search_trains_one_chosen_setting_per_method_and_protocol(tmp_path):
    cfg = pooled(tmp_path / "p")
    cfg = dataclasses.replace(cfg, splits=dataclasses.replace(cfg.splits, n_folds=2, ratios=(0.5,)))
    make_features(cfg)
    trainer.train(cfg, only={"fold": "1"}, n_jobs=1)  # half the pool: nothing is chosen yet
    assert not (cfg.run_dir / "search_choice.csv").exists()
    run = HeadRun(0, 0, "0.5", "confidence_auto")
    assert not trainer.predictions.file(cfg, run).exists()
    trainer.train(cfg, n_jobs=1)
    choices = pd.read_csv(cfg.run_dir / "search_choice.csv", dtype={"protocol": str}).set_index("method")
    assert set(choices.index) == set(cfg.heads.methods) and (choices["runs"] == 2).all()
    chosen = choices.loc["confidence_auto"]
    for fold in (0, 1):
        run_of_fold = HeadRun(0, fold, "0.5", "confidence_auto")
        found = trainer.predictions.read(trainer.predictions.file(cfg, run_of_fold))
        recorded = json.loads(found["search"])
        assert recorded["epoch"] == chosen["epoch"] and recorded["lr"] == pytest.approx(chosen["lr"])
        assert recorded["pool"] == "study"
    # each run's predictions are those of the chosen setting trained alone, for the chosen epochs
    own = methods.get("confidence_auto").params
    params = {k: v for k, v in json.loads(chosen["params"]).items() if k in own}
    alone = small_config(tmp_path / "alone", methods=["confidence_auto"], optimizer="adam",
                         learning_rate=chosen["lr"],
                         epochs=int(chosen["epoch"]), params={"confidence_auto": params})
    alone = dataclasses.replace(alone, splits=cfg.splits)
    make_features(alone)
    trainer.train(alone, only={"fold": "1", "ratio": "0.5"}, n_jobs=1)
    np.testing.assert_allclose(probabilities(cfg, run), probabilities(alone, run), atol=1e-5)


def test_a_choice_of_the_unsearched_setting_takes_the_search_pass_head_as_training_it_again_would(tmp_path):
    # evidence no lead can pass: every choice is the unsearched setting at [heads] epochs
    cfg = pooled(tmp_path / "p", evidence=1e9)
    cfg = dataclasses.replace(cfg, splits=dataclasses.replace(cfg.splits, n_folds=2, ratios=(0.5,)))
    make_features(cfg)
    trainer.train(cfg, only={"fold": "1"}, n_jobs=1)
    kept = HeadRun(0, 0, "0.5", "an")
    assert (trainer.predictions.run_dir(cfg, kept) / "reference.h5").is_file()
    lost = HeadRun(0, 0, "0.5", "ce")  # as a search pass made before reference heads were kept
    for name in trainer.predictions.REFERENCE.values():
        (trainer.predictions.run_dir(cfg, lost) / name).unlink()
    records = trainer.train(cfg, n_jobs=1)
    promoted = {record["run"] for record in records if record.get("promoted")}
    assert lost.label not in promoted and kept.label in promoted and len(promoted) == 5
    # the same heads at one recipe, without a search, on the same splits and validation rows
    alone = dataclasses.replace(cfg, heads=dataclasses.replace(cfg.heads, search=configs.Search()))
    alone = dataclasses.replace(alone, experiment=dataclasses.replace(cfg.experiment, name="alone"))
    make_features(alone)
    trainer.train(alone, n_jobs=1)
    for method in cfg.heads.methods:
        for fold in (0, 1):
            run = HeadRun(0, fold, "0.5", method)
            np.testing.assert_allclose(probabilities(cfg, run), probabilities(alone, run), atol=1e-5)
            found = trainer.predictions.read(trainer.predictions.file(cfg, run))
            assert json.loads(found["search"])["pool"] == "study" and "lead" in json.loads(found["search"])
            assert found["provenance"]["search.chosen"]["epoch"] == cfg.heads.epochs
            assert not list(trainer.predictions.run_dir(cfg, run).glob("reference*"))
            history = pd.read_csv(trainer.predictions.run_dir(cfg, run) / "history.csv")
            assert len(history) == cfg.heads.epochs

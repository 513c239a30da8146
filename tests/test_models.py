"""The stack of every method against each method trained alone; the stateful methods' state."""
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from heads import inputs as run_inputs
from heads import methods, models, trainer

N, D, L = 96, 12, 6
EPOCHS, BATCH = 3, 32


@pytest.fixture(scope="module")
def data():
    return make_data()


def make_data():
    """Features x (N, D) of labels truth (N, L), and observed labels hiding about half the positives."""
    rng = np.random.default_rng(0)
    truth = (rng.random((N, L)) < 0.35).astype(np.uint8)
    truth[np.arange(N), rng.integers(0, L, N)] = 1
    x = (truth @ rng.normal(0, 1, (L, D)) + rng.normal(0, 0.5, (N, D))).astype(np.float32)
    observed = truth & (rng.random((N, L)) < 0.5)
    observed[np.arange(N), truth.argmax(1)] = 1
    return x, truth, observed


def inputs_for(names, truth, observed):
    """StackInputs of heads `names` on one protocol, weights as the trainer makes them."""
    rows = np.arange(N)
    negatives, negatives_of = [np.ones((N, L), np.float32)], []
    for name in names:
        weight = run_inputs.negative_weights(name, truth, observed, rows, 0.5)
        if weight is not None:
            negatives_of.append(len(negatives))
            negatives.append(weight)
        else:
            negatives_of.append(0 if run_inputs.needs(name).weighted else -1)
    params = [methods.parameters(name, {"delta": 0.02} if name.startswith("ll_") else None) for name in names]
    constants = {"pos_weight": np.full((len(names), L), 2, np.float32), "k": np.full(len(names), 2.0, np.float32)}
    return models.StackInputs(methods=list(names), needs=[run_inputs.needs(n) for n in names], params=params,
                              targets=observed[None], target_of=np.zeros(len(names), int), constants=constants,
                              negatives=np.stack(negatives), negatives_of=np.array(negatives_of))


def fit(names, data, optimizer="adam"):
    x, truth, observed = data
    order = np.random.default_rng(1)

    def batches():
        for rows in trainer.epoch_batches(N, BATCH, order):
            yield rows, x[rows]

    stack = models.HeadStack(list(names), hidden=(8,), optimizer=optimizer, learning_rate=0.05, epochs=EPOCHS, seed=0)
    stack.fit(batches, inputs_for(names, truth, observed), d_in=D)
    return stack, stack.predict_proba(x)


ALL = list(methods.METHODS)


def test_a_stack_of_every_method_equals_each_method_alone(data):
    _, together = fit(ALL, data)
    for h, name in enumerate(ALL):
        _, alone = fit([name], data)
        np.testing.assert_allclose(together[h], alone[0], atol=1e-5, err_msg=name)


@pytest.mark.parametrize("optimizer", ["adam", "adadelta", "sgd"])
def test_role_estimates_move_towards_the_predictions_and_stay_probabilities(data, optimizer):
    _x, _truth, observed = data
    start = models.role_start(observed, np.random.default_rng(models.head_seed(0, "role/estimates")))
    stack, probabilities = fit(["role"], data, optimizer)
    before = np.abs(1 / (1 + np.exp(-start)) - probabilities[0]).mean()
    estimates = 1 / (1 + np.exp(-stack.estimates_[:, 0]))
    assert (estimates > 0).all() and (estimates < 1).all()
    assert np.abs(estimates - probabilities[0]).mean() < before
    assert (stack.estimates_[:, 0] != start).any(axis=1).all()  # every training row was updated


def test_ll_cp_corrections_persist_and_grow_by_k_per_batch(data):
    _, _, observed = data
    counts = []
    for epochs in (1, 2, 3):
        global EPOCHS
        saved, EPOCHS = EPOCHS, epochs
        try:
            stack, _ = fit(["ll_cp"], data)
        finally:
            EPOCHS = saved
        corrections = stack.corrections_[:, 0]
        assert not (corrections.astype(bool) & (observed == 1)).any()
        counts.append(int(corrections.sum()))
    per_epoch = sum(math.ceil(len(b) * L * 0.02) for b in np.array_split(np.arange(N), math.ceil(N / BATCH)))
    assert counts == [0, per_epoch, 2 * per_epoch]  # epoch 1 is plain AN; every later batch adds k, none is undone


def test_training_leaves_no_autograph_files_in_the_temp_dir(tmp_path):
    """The step is traced without autograph (its control flow is Python's): nothing is written
    to the temp dir, which a worker that exits at once (`runtime.cli`) would leave behind."""
    code = ("import os, tempfile\n"
            "from tests.test_models import fit, make_data\n"
            "fit(['ce', 'role', 'll_cp'], make_data())\n"
            "print(sum(n.startswith('__autograph') for n in os.listdir(tempfile.gettempdir())))\n"
            "os._exit(0)\n")  # as a failed worker leaves: no atexit clean-up
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", code], cwd=root, check=True, capture_output=True, text=True,
                          env={**os.environ, "TMPDIR": str(tmp_path), "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert done.stdout.split()[-1] == "0"
    assert not list(tmp_path.glob("__autograph_generated_file*"))

"""The stack of every method against each method trained alone; the stateful methods' state."""
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from heads import inputs as run_inputs
from heads import methods, models, sources

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


def scores_of(truth):
    """A score matrix that knows the truth a little: Score-PL's input."""
    return truth * 2.0 + np.random.default_rng(5).normal(0, 1, truth.shape)


def inputs_for(names, truth, observed, known=None):
    """StackInputs of heads `names` on one protocol, weights as the trainer makes them;
    `known`: (N, L) bool verified negatives, or None."""
    rows = np.arange(N)
    bank, weights_of, pseudo_of = [np.ones((N, L), np.float32)], [], []
    params = [run_inputs.resolved(methods.parameters(name,
                                                     {"delta": 0.02} if name.startswith("ll_")
                                                     else None), EPOCHS)
              for name in names]
    for name, p in zip(names, params):
        weight = run_inputs.negative_weights(name, truth, observed, rows, 0.5, known)
        if weight is not None:
            weights_of.append(len(bank))
            bank.append(weight)
        else:
            weights_of.append(0 if run_inputs.needs(name).weighted else -1)
        pseudo_of.append(len(bank) if run_inputs.needs(name).pseudo else -1)
        if run_inputs.needs(name).pseudo:
            bank.append(run_inputs.pseudo_positives(scores_of(truth), observed, p["temperature"], p["theta"]))
    constants = {"pos_weight": np.full((len(names), L), 2, np.float32),
                 "k": np.full(len(names), 2.0, np.float32),
                 "prior": np.tile(run_inputs.class_prior(observed, known), (len(names), 1))}
    return models.StackInputs(methods=list(names), needs=[run_inputs.needs(n) for n in names], params=params,
                              targets=observed[None], target_of=np.zeros(len(names), int),
                              constants=constants,
                              bank=np.stack(bank), weights_of=np.array(weights_of),
                              verified_negative=None if known is None else known[None].astype(np.uint8),
                              pseudo_of=np.array(pseudo_of))


def fit(names, data, optimizer="adam", known=None, standardize=None):
    x, truth, observed = data
    order = np.random.default_rng(1)

    def batches():
        for rows in sources.epoch_batches(N, BATCH, order):
            yield rows, x[rows]

    def blocks():
        yield np.arange(N), x

    stack = models.HeadStack(list(names), hidden=(8,), optimizer=optimizer, learning_rate=0.05,
                             epochs=EPOCHS, seed=0)
    stack.fit(batches, inputs_for(names, truth, observed, known), d_in=D, train_blocks=blocks,
              standardize=standardize)
    return stack, stack.predict_proba(x)


def forward(stack, h, x):
    """Head h's probabilities from its learned weights_ and biases_ in NumPy (sigmoid layers)."""
    net = x.astype(np.float64)
    for layer, (w, b) in enumerate(zip(stack.weights_, stack.biases_)):
        net = (1 / (1 + np.exp(-net)) if layer else net) @ w[h] + b[h]
    return 1 / (1 + np.exp(-net))


ALL = list(methods.METHODS)


def test_a_stack_of_every_method_equals_each_method_alone(data):
    _, together = fit(ALL, data)
    for h, name in enumerate(ALL):
        _, alone = fit([name], data)
        np.testing.assert_allclose(together[h], alone[0], atol=1e-5, err_msg=name)


def test_with_verified_negatives_a_stack_of_every_method_equals_each_alone_and_they_change_it(data):
    _, truth, _ = data
    known = (truth == 0) & (np.random.default_rng(3).random(truth.shape) < 0.5)
    _, together = fit(ALL, data, known=known)
    _, without = fit(ALL, data)
    for h, name in enumerate(ALL):
        _, alone = fit([name], data, known=known)
        np.testing.assert_allclose(together[h], alone[0], atol=1e-5, err_msg=name)
    same = {name for h, name in enumerate(ALL) if np.allclose(together[h], without[h], atol=1e-6)}
    # these take o = 0 as negatives already (IM-WCE's oracle weights are 1 on every true negative)
    assert same == {"an", "an_ls", "focal", "asl", "hill", "partial_negative", "ce", "ignore_missing"}, same


def test_standardized_inputs_equal_standardized_features_and_the_weights_fold_it_in(data):
    x, truth, observed = data
    rng = np.random.default_rng(4)
    scale, shift = np.exp(rng.uniform(0, 7, D)).astype(np.float32), rng.uniform(-500, 500,
                                                                                D).astype(np.float32)
    raw = x * scale + shift
    mean, std = raw.mean(0), raw.std(0)
    stack, on_raw = fit(ALL, (raw, truth, observed), standardize=(mean, std))
    _, on_standardized = fit(ALL, ((raw - mean) / std, truth, observed))
    np.testing.assert_allclose(on_raw, on_standardized, atol=1e-5)
    for h, name in enumerate(ALL):  # what a model directory keeps takes raw features
        np.testing.assert_allclose(forward(stack, h, raw), on_raw[h], atol=1e-5, err_msg=name)


def test_moments_over_blocks_equal_numpy_and_constant_features_keep_scale_one():
    x = np.random.default_rng(2).normal(1e4, 3.0, (1000, 5)).astype(np.float32)
    x[:, 2] = 7.0

    class Blocks:
        def blocks(self):
            for start in range(0, len(x), 300):
                yield np.arange(start, min(start + 300, len(x))), x[start:start + 300]

    mean, std = sources.moments(Blocks())
    np.testing.assert_allclose(mean, x.astype(np.float64).mean(0), rtol=1e-7)
    expected = x.astype(np.float64).std(0)
    expected[2] = 1.0
    np.testing.assert_allclose(std, expected, rtol=1e-5)


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
    # epoch 1 is plain AN; every later batch adds k, none is undone
    assert counts == [0, per_epoch, 2 * per_epoch]


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


def test_em_apl_adds_its_share_of_pseudo_negatives_after_each_epoch_from_its_warm_up(data):
    _, truth, observed = data
    known = (truth == 0) & (np.random.default_rng(3).random(truth.shape) < 0.3)
    stack, _ = fit(["em_apl"], data, known=known)
    state = stack.pseudo_negatives_[:, 0]
    chosen = state >= 0
    unlabelled = (observed == 0) & ~known
    assert chosen.any() and not (chosen & ~unlabelled).any()
    warmup = EPOCHS // 2  # the data-derived default
    per_epoch = np.floor(0.9 / (EPOCHS - warmup) * unlabelled.sum(0))
    np.testing.assert_array_equal(chosen.sum(0),
                                  np.minimum((EPOCHS - warmup + 1) * per_epoch, unlabelled.sum(0)))
    assert ((state[chosen] > 0) & (state[chosen] < 1)).all()  # each a probability, frozen when chosen

"""Benchmark: the head stack against this machine's limits, against a loop over its heads, and
with the field's losses against plain CE heads of the same count.

    .venv/bin/python bench/heads.py [--steps 12] [--skip-all-methods] [--smoke]

COCO-sized random data: 24,731 training rows of 1536 features (Inception-ResNet-v2 avg-pooled),
80 classes. Limits measured in the same run with TensorFlow (bench/machine.py): its best matmul
rate and the bandwidth of an in-place variable update. A step cannot beat its matrix products
at that rate (2 x batch x weights FLOP for the forward product, the same for the weight
gradients and for the input gradients, except the first layer's) followed by the
optimiser's pass over its four arrays (weights, gradient, two accumulators, read and written
once) at that bandwidth: the two happen one after the other, so the bound is their sum.

1. 12 paper heads (2048-1024-256, Adadelta), batch 32 and 256: ms per step, x the bound.
2. The stack of n heads against a loop over n one-head stacks, n = 1, 4, 12: the loop's time
   is the sum of its heads' step times.
3. Every registered method x every protocol (4 ratios, single positive and a partial-label
   protocol whose verified negatives reach every loss) in one stack, for the linear head and the
   paper head (on 256-d features: see every_method), against the same number of CE heads (goal:
   at most 1.5x).
4. Where a step of 12 paper heads spends its time: the forward pass, the losses, the backward
   pass and the optimiser's update, each timed alone.
5. The Adadelta update of as many values as 12 paper heads hold: TensorFlow's kernel (what the
   stack runs) against the same formula as TensorFlow ops, plain and compiled by XLA.
6. A searched stack (`heads.search`): n heads at n different learning rates (and every
   method's declared grid) against the same n heads at one setting, per step (goal <= 1.1x):
   n CE heads (the cost of per-head rates alone), and every method's grid points at 5 rates.
"""
from __future__ import annotations

import argparse
import gc
import itertools
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import copy_gbps, matmul_gflops
from heads import inputs as run_inputs
from heads import methods, models
from heads.inputs import needs
from runtime.tf_quiet import tf

N_TRAIN, DIM, N_CLASSES, PAPER = 24_731, 1536, 80, (2048, 1024, 256)
PROTOCOLS = 6  # 0, .25, .5, .75, single positive, partial 0.5 (the last: verified negatives)
FIELD_DIM = 256  # the paper heads' input in the every-method stack (see every_method)


def use_tiny_sizes() -> None:
    """--smoke: a few hundred rows of 32 features, small heads: every part runs, nothing is measured."""
    global N_TRAIN, DIM, PAPER, FIELD_DIM
    N_TRAIN, DIM, PAPER, FIELD_DIM = 512, 32, (16, 8), 16


def data(seed: int = 0):
    """Features (n, DIM); targets (P, n, L); the bank of per-entry arrays: weights (row 0) and
    pseudo-positives (row 1)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (N_TRAIN, DIM)).astype(np.float32)
    targets = (rng.random((PROTOCOLS, N_TRAIN, N_CLASSES)) < 0.06).astype(np.uint8)
    bank = np.stack([rng.random((N_TRAIN, N_CLASSES)),
                     rng.random((N_TRAIN, N_CLASSES)) < 0.01]).astype(np.float32)
    return x, targets, bank


def stack_inputs(names: list[str], targets, bank, verified_last: bool = True) -> models.StackInputs:
    """Heads `names` spread over the protocols of `targets` (P, n, L), the last protocol with
    verified negatives (half its zeros) when `verified_last`; every weighted-CE head shares one
    weights row (row 0 of `bank`), Score-PL's pseudo-positives are row 1."""
    weighted = [needs(n).weighted for n in names]
    n_classes = targets.shape[2]
    known = None
    if verified_last:
        known = np.zeros(targets.shape, np.uint8)
        known[-1] = (targets[-1] == 0) & (np.arange(targets.shape[1])[:, None] % 2 == 0)
    return models.StackInputs(
        methods=list(names), needs=[needs(n) for n in names],
        params=[run_inputs.resolved(methods.parameters(n), 1) for n in names], targets=targets,
        target_of=np.arange(len(names)) % len(targets), bank=bank, weights_of=np.where(weighted, 0, -1),
        constants={"pos_weight": np.ones((len(names), n_classes), np.float32),
                   "k": np.full(len(names), 3.0, np.float32),
                   "prior": np.full((len(names), n_classes), 0.1, np.float32)},
        verified_negative=known, pseudo_of=np.where([needs(n).pseudo for n in names], 1, -1))


def timed_steps(stack: models.HeadStack, inputs: models.StackInputs, x: np.ndarray, batch: int, steps: int,
                warm: int = 3) -> float:
    """Median seconds per step of `stack` fitted on `steps` random batches of `x`, after `warm`."""
    rng = np.random.default_rng(0)
    order = [rng.choice(len(x), batch, replace=False) for _ in range(steps + warm)]
    times = []

    def batches():
        for rows in order:
            times.append(time.perf_counter())
            yield rows, x[rows]

    def blocks():  # EM+APL's pass over the training rows after the epoch (not timed)
        for start in range(0, len(x), 4096):
            yield np.arange(start, min(start + 4096, len(x))), x[start:start + 4096]

    stack.fit(batches, inputs, d_in=x.shape[1], train_blocks=blocks)
    return float(np.median(np.diff(times[warm:])))


def step_seconds(names, hidden, x, targets, weights, batch: int, steps: int, points=None) -> float:
    """Median seconds per step of one stack over heads `names`, after a warm-up; `points`: each
    head's (learning-rate factor, parameters), else one rate and the registry's defaults."""
    gc.collect()  # the previous stack's variables go before this one's are made
    stack = models.HeadStack([f"h{i}" for i in range(len(names))], hidden=hidden, epochs=1, seed=0)
    inputs = stack_inputs(names, targets, weights)
    if points is not None:
        inputs.params = [run_inputs.resolved(dict(params), 1) for _, params in points]
        inputs.lr_scale = np.array([scale for scale, _ in points])
    return timed_steps(stack, inputs, x, batch, steps)


def parameters(hidden, n_heads: int) -> int:
    sizes = (DIM, *hidden, N_CLASSES)
    return n_heads * sum(a * b + b for a, b in itertools.pairwise(sizes))


def bound(hidden, n_heads: int, batch: int, gflops: float, gbps: float) -> float:
    """Matrix products at `gflops`: forward, weight gradients and input gradients, 2 x batch x
    weights FLOP each, except the first layer's input gradient, which no one needs (the
    features are data). Then the optimiser's pass over its four arrays at `gbps`."""
    params = parameters(hidden, n_heads)
    first = n_heads * DIM * ((*hidden, N_CLASSES)[0])
    flop = 2 * batch * (3 * params - first)
    return flop / gflops / 1e9 + 4 * 2 * 4 * params / gbps / 1e9


def paper_stack(x, targets, weights, steps, gflops, gbps) -> None:
    for batch in (32, 256):
        seconds = step_seconds(["ce"] * 12, PAPER, x, targets, weights, batch, steps)
        limit = bound(PAPER, 12, batch, gflops, gbps)
        fold = seconds * -(-N_TRAIN // batch) * 20
        print(f"12 paper heads, batch {batch}: {seconds * 1e3:.0f} ms/step, bound {limit * 1e3:.0f} ms "
              f"({seconds / limit:.2f}x, goal <= 2x); 20 epochs = {fold / 60:.0f} min per fold")


def stack_against_loop(x, targets, weights, steps) -> None:
    for n_heads in (1, 4, 12):
        names = ["ce"] * n_heads
        stacked = step_seconds(names, PAPER, x, targets, weights, 32, steps)
        loop = n_heads * step_seconds(["ce"], PAPER, x, targets, weights, 32, steps)
        same = (" (one head: the same graph twice, so the ratio is the run-to-run noise)"
                if n_heads == 1 else "")
        print(f"{n_heads:2d} paper heads, batch 32: stack {stacked * 1e3:.0f} ms/step, loop {loop * 1e3:.0f} "
              "ms: "
              f"stack {loop / stacked:.2f}x as fast{same}")


def every_method(x, targets, weights, steps) -> None:
    """The paper heads read the first FIELD_DIM features: 120 of them on all 1536 hold 660 M
    parameters, which with gradients, Adadelta's two accumulators and the stacked temporaries
    outgrow this machine's 24 GiB (measured: killed at 24 GiB)."""
    names = [name for name in methods.METHODS for _ in range(PROTOCOLS)]
    for head, hidden, dim in (("linear", (), DIM), ("paper", PAPER, FIELD_DIM)):
        part = np.ascontiguousarray(x[:, :dim])
        field = step_seconds(names, hidden, part, targets, weights, 32, steps)
        plain = step_seconds(["ce"] * len(names), hidden, part, targets, weights, 32, steps)
        print(f"{len(names)} {head} heads on {dim}-d features ({len(methods.METHODS)} methods x {PROTOCOLS} "
              f"protocols), batch 32: {field * 1e3:.0f} ms/step against {plain * 1e3:.0f} ms for as many CE "
              f"heads: {field / plain:.2f}x (goal <= 1.5x)")


def phases(x, targets, weights, steps) -> None:
    """A step of 12 paper heads taken apart: each phase timed in its own tf.function."""
    names = ["ce"] * 12
    stack = models.HeadStack([f"h{i}" for i in range(12)], hidden=PAPER, epochs=1, seed=0)
    inputs = stack_inputs(names, targets, weights)
    stack.fit(lambda: iter([(np.arange(32), x[:32])]), inputs, d_in=DIM)
    variables = stack._w + stack._b
    rows = np.arange(32)
    xb, yb = tf.constant(x[rows]), tf.constant(targets[inputs.target_of][:, rows].astype(np.float32))
    nb = tf.constant(weights[:, rows])
    state = stack._state_rows(tf.constant(rows, tf.int64), None)

    def first_layer():
        d_in, n_heads, d_out = stack._w[0].shape
        flat = tf.matmul(xb, tf.reshape(stack._w[0], [d_in, n_heads * d_out]))
        return tf.transpose(tf.reshape(flat, [-1, n_heads, d_out]), [1, 0, 2])

    def loss():
        return tf.reduce_sum(stack._head_losses(stack._logits(xb), yb, nb, 1, state)[0])

    def gradient():
        with tf.GradientTape() as tape:
            total = loss()
        return tape.gradient(total, variables)

    grads = [tf.zeros_like(v) for v in variables]
    parts = {"first layer product + reshape/transpose": first_layer,
             "forward pass (all layers)": stack._logits,
             "forward + losses": loss, "forward + losses + backward": gradient,
             "optimiser update (Adadelta, stacked variables)": lambda: stack._apply(grads)}
    for name, part in parts.items():
        fn = tf.function(part if name != "forward pass (all layers)" else lambda: stack._logits(xb))
        fn()
        start = time.perf_counter()
        for _ in range(steps):
            out = fn()
        if out is not None:
            tf.nest.map_structure(lambda t: t.numpy(), out)
        print(f"  {name}: {(time.perf_counter() - start) / steps * 1e3:.0f} ms")


def adadelta_update(n: int, trials: int = 7) -> None:
    var, accum, accum_update = (tf.Variable(tf.random.normal([n])) for _ in range(3))
    grad = tf.random.normal([n])
    rho, eps, lr = models.ADADELTA["rho"], models.ADADELTA["epsilon"], 0.1

    def kernel():
        tf.raw_ops.ResourceApplyAdadelta(var=var.handle, accum=accum.handle, accum_update=accum_update.handle,
                                         lr=lr, rho=rho, epsilon=eps, grad=grad)

    def formula():
        new_accum = accum * rho + tf.square(grad) * (1 - rho)
        update = tf.sqrt(accum_update + eps) * tf.math.rsqrt(new_accum + eps) * grad
        accum.assign(new_accum)
        var.assign_sub(update * lr)
        accum_update.assign(accum_update * rho + tf.square(update) * (1 - rho))

    print(f"Adadelta update of {n / 1e6:.0f} M values:")
    for name, fn in (("TensorFlow's kernel", tf.function(kernel)), ("TensorFlow ops", tf.function(formula)),
                     ("TensorFlow ops, XLA", tf.function(formula, jit_compile=True))):
        fn()
        times = []
        for _ in range(trials):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        print(f"  {name}: {np.median(times) * 1e3:.0f} ms")


def searched(x, targets, weights, steps) -> None:
    """Per-head learning rates and parameters against one setting, the same heads otherwise."""
    factors = methods.LR_FACTORS
    ce = ["ce"] * 60
    spread = [(factors[i % len(factors)], methods.parameters("ce")) for i in range(len(ce))]
    grid_names, grid_points = [], []
    for name in methods.METHODS:
        grid = methods.get(name).search
        keys = sorted(grid)
        for factor in factors:
            for values in itertools.product(*(grid[k] for k in keys)):
                grid_names.append(name)
                grid_points.append((factor, {**methods.parameters(name), **dict(zip(keys, values))}))
    part = np.ascontiguousarray(x[:, :FIELD_DIM])
    for label, names, points in (("CE heads at 5 rates", ce, spread),
                                 ("grid points of every method (5 rates x its grid)", grid_names,
                                  grid_points)):
        one = step_seconds(names, (256,), part, targets, weights, 32, steps)
        many = step_seconds(names, (256,), part, targets, weights, 32, steps, points)
        print(f"{len(names)} {label}, one-layer 256 heads on {FIELD_DIM}-d features, batch 32: "
              f"{many * 1e3:.0f} ms/step against {one * 1e3:.0f} ms at one setting: {many / one:.2f}x (goal "
              "<= 1.1x)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--skip-all-methods", action="store_true")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes: checks the code runs, measures nothing")
    args = parser.parse_args()
    if args.smoke:
        use_tiny_sizes()
    steps = 2 if args.smoke else args.steps
    x, targets, weights = data()
    gflops, gbps = (matmul_gflops(sizes=(256,), trials=1), copy_gbps(2**20, 1)) if args.smoke else \
        (matmul_gflops(), copy_gbps())
    print(f"machine (TensorFlow): matmul {gflops:.0f} GFLOP/s, in-place update {gbps:.1f} GB/s; 12 paper "
          "heads hold "
          f"{parameters(PAPER, 12) / 1e6:.0f} M parameters")
    paper_stack(x, targets, weights, steps, gflops, gbps)
    stack_against_loop(x, targets, weights, steps)
    print("a step of 12 paper heads, batch 32, by phase:")
    phases(x, targets, weights, steps)
    adadelta_update(parameters(PAPER, 12), trials=2 if args.smoke else 7)
    if not args.skip_all_methods:
        every_method(x, targets, weights, steps)
    searched(x, targets, weights, steps)


if __name__ == "__main__":
    main()

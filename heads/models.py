"""Heads on stored features, many trained at once as one stack.

`HeadStack` trains H independent heads in one TF graph: every feature batch is read once and
fed to all of them through stacked weights (H, d_in, d_out) and batched matrix products; head h
has its own targets, positive weights, negative weights and loss. Each head's initial weights
come from its own seed key, so a head trained in a stack equals the same head trained alone.

    paper_mlp: d -> 2048 -> 1024 -> 256 sigmoid layers -> L logits; weights truncated normal
               (std 0.1), biases 0.1; Adadelta lr 0.1 decayed x0.95 every 1000 steps (staircase)
    linear:    d -> L logits (logistic regression), same initialisation and optimiser settings
"""
from __future__ import annotations

import itertools
import time
import zlib

import numpy as np
import tensorflow as tf

from . import losses

RHO, ADADELTA_EPS = 0.95, 1e-8  # TF1 AdadeltaOptimizer's defaults, as the paper's notebooks


def head_seed(seed: int, key: str) -> np.random.SeedSequence:
    """The initialisation seed of one head: the same alone or in any stack."""
    return np.random.SeedSequence([seed, zlib.crc32(key.encode())])


def truncated_normal(rng: np.random.Generator, shape, std: float) -> np.ndarray:
    """Normal(0, std) redrawn beyond two standard deviations (tf.truncated_normal's law)."""
    values = rng.normal(0, std, shape)
    while (bad := np.abs(values) > 2 * std).any():
        values[bad] = rng.normal(0, std, bad.sum())
    return values.astype(np.float32)


class HeadStack:
    """H heads of the same shape trained together (estimator-style: settings, fit, predict).

    fit(batches, targets, pos_weight, neg_weight, ...) -> self; predict_proba(x) -> (H, n, L).
    Learned state: weights_ (list of (H, d_in, d_out)), biases_, history_ (per-epoch losses).
    """

    def __init__(self, head_keys, hidden=(2048, 1024, 256), optimizer="adadelta", learning_rate=0.1,
                 lr_decay=0.95, decay_steps=1000, epochs=20, patience=0, seed=0):
        self.head_keys = list(head_keys)
        self.hidden = tuple(hidden)
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.lr_decay = lr_decay
        self.decay_steps = decay_steps
        self.epochs = epochs
        self.patience = patience
        self.seed = seed

    def parameter_count(self, d_in: int, n_classes: int) -> int:
        sizes = (d_in,) + self.hidden + (n_classes,)
        return len(self.head_keys) * sum(a * b + b for a, b in itertools.pairwise(sizes))

    def _init(self, d_in: int, n_classes: int) -> None:
        sizes = (d_in,) + self.hidden + (n_classes,)
        weights = [[] for _ in sizes[1:]]
        for key in self.head_keys:
            rng = np.random.default_rng(head_seed(self.seed, key))
            for layer, (a, b) in enumerate(itertools.pairwise(sizes)):
                weights[layer].append(truncated_normal(rng, (a, b), 0.1))
        # the first layer is stored (d_in, H, d_out): one plain matrix product serves every head
        # and its gradient, with no transpose of the largest weights (see _logits)
        self._w = [tf.Variable(np.stack(w, axis=1 if layer == 0 else 0)) for layer, w in enumerate(weights)]
        self._b = [tf.Variable(np.full((len(self.head_keys), 1, b), 0.1, np.float32)) for b in sizes[1:]]
        self._slots = [(tf.Variable(tf.zeros_like(v)), tf.Variable(tf.zeros_like(v)))
                       for v in self._w + self._b]
        self._step = tf.Variable(0, dtype=tf.int64)

    def _logits(self, x):
        """x: (n, d) shared by all heads -> (H, n, L) logits."""
        d_in, n_heads, d_out = self._w[0].shape
        flat = tf.matmul(x, tf.reshape(self._w[0], [d_in, n_heads * d_out]))  # (n, H * d_out)
        net = tf.transpose(tf.reshape(flat, [-1, n_heads, d_out]), [1, 0, 2]) + self._b[0]
        for w, b in zip(self._w[1:], self._b[1:]):
            net = tf.matmul(tf.sigmoid(net), w) + b
        return net

    def _loss(self, x, targets, pos_weight, neg_weight):
        """(H,) mean loss per head; heads add up, so each gets its own gradient."""
        logits = self._logits(x)
        per_entry = tf.stack([losses.get(method)(logits[h], targets[h], pos_weight[h], neg_weight[h])
                              for h, method in enumerate(self._methods)])
        return tf.reduce_mean(per_entry, axis=[1, 2])

    def _apply(self, grads) -> None:
        lr = self.learning_rate * self.lr_decay ** tf.cast(self._step // self.decay_steps, tf.float32)
        for var, grad, (slot_a, slot_b) in zip(self._w + self._b, grads, self._slots):
            if self.optimizer == "adadelta":
                tf.raw_ops.ResourceApplyAdadelta(var=var.handle, accum=slot_a.handle, accum_update=slot_b.handle,
                                                 lr=lr, rho=RHO, epsilon=ADADELTA_EPS, grad=grad)
            elif self.optimizer == "adam":
                t = tf.cast(self._step + 1, tf.float32)
                tf.raw_ops.ResourceApplyAdam(var=var.handle, m=slot_a.handle, v=slot_b.handle,
                                             beta1_power=0.9 ** t, beta2_power=0.999 ** t, lr=lr,
                                             beta1=0.9, beta2=0.999, epsilon=1e-7, grad=grad)
            else:
                tf.raw_ops.ResourceApplyGradientDescent(var=var.handle, alpha=lr, delta=grad)
        self._step.assign_add(1)

    def fit(self, batches, targets, pos_weight, neg_weight, methods, validation=None, d_in=None):
        """Train on `batches()`: a callable yielding (rows, x) per step for one epoch, where x
        is (batch, d) float32 and rows index the (H, n, L) `targets` / `neg_weight` arrays.

        validation: optional (blocks, targets (H, m, L), neg_weight (H, m, L)), `blocks()` yielding
        (positions, x) over the m validation rows, for the validation loss per epoch (observed
        labels only) and, when `patience` > 0, early stopping on it: training ends once no head
        improved for `patience` epochs, and each head keeps its weights from its best epoch.
        """
        n_heads, _, n_classes = targets.shape
        assert n_heads == len(self.head_keys) == len(methods)
        self._methods = list(methods)
        self._init(d_in, n_classes)
        variables = self._w + self._b
        head_axes = [1] + [0] * (len(variables) - 1)  # where each variable keeps its heads
        pos_weight = tf.constant(pos_weight, tf.float32)

        @tf.function(reduce_retracing=True)
        def step(x, y, nw):
            with tf.GradientTape() as tape:
                per_head = self._loss(x, y, pos_weight, nw)
                total = tf.reduce_sum(per_head)
            self._apply(tape.gradient(total, variables))
            return per_head

        self.history_ = []
        best = (np.full(n_heads, np.inf), [v.numpy() for v in variables], np.zeros(n_heads, int))
        start = time.perf_counter()
        for epoch in range(self.epochs):
            sums, count = np.zeros(n_heads), 0
            for rows, x in batches():
                sums += step(tf.constant(x), tf.constant(targets[:, rows]), tf.constant(neg_weight[:, rows])).numpy()
                count += 1
            record = {"epoch": epoch + 1, "train_loss": sums / max(count, 1)}
            if validation is not None:
                val_loss = self._validation_loss(validation, pos_weight)
                record["val_loss"] = val_loss
                if self.patience:
                    better = val_loss < best[0]
                    best[0][better] = val_loss[better]
                    best[2][better] = 0
                    best[2][~better] += 1
                    for snapshot, var, axis in zip(best[1], variables, head_axes):
                        pick = (slice(None),) * axis + (better,)
                        snapshot[pick] = var.numpy()[pick]
                    if (best[2] >= self.patience).all():
                        self.history_.append(record)
                        break
            self.history_.append(record)
        if validation is not None and self.patience:
            for snapshot, var in zip(best[1], variables):
                var.assign(snapshot)
        self.fit_seconds_ = time.perf_counter() - start
        self.weights_ = [np.moveaxis(self._w[0].numpy(), 1, 0)] + [w.numpy() for w in self._w[1:]]
        self.biases_ = [b.numpy() for b in self._b]
        return self

    def _validation_loss(self, validation, pos_weight) -> np.ndarray:
        """(H,) mean loss per head over every validation row, block by block."""
        blocks, targets, neg_weight = validation
        total = np.zeros(len(self.head_keys))
        for positions, x in blocks():
            mean = self._loss(tf.constant(x), targets[:, positions], pos_weight, neg_weight[:, positions])
            total += mean.numpy() * len(positions)
        return total / targets.shape[1]

    def predict_proba(self, x: np.ndarray, batch_size: int = 4096) -> np.ndarray:
        """(H, n, L) float32 probabilities for features x (n, d)."""
        parts = [tf.sigmoid(self._logits(tf.constant(x[i:i + batch_size], tf.float32))).numpy()
                 for i in range(0, len(x), batch_size)]
        return np.concatenate(parts, axis=1)


def make(head: str, head_keys, cfg_heads, seed: int) -> HeadStack:
    """The configured head type as a stack over `head_keys`."""
    hidden = {"paper_mlp": cfg_heads.hidden, "linear": ()}
    if head not in hidden:
        raise ValueError(f"unknown head {head!r}; known: {', '.join(hidden)}")
    return HeadStack(head_keys, hidden=hidden[head], optimizer=cfg_heads.optimizer,
                     learning_rate=cfg_heads.learning_rate, lr_decay=cfg_heads.lr_decay,
                     decay_steps=cfg_heads.decay_steps, epochs=cfg_heads.epochs,
                     patience=cfg_heads.patience, seed=seed)

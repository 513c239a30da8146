"""Heads on stored features, many trained at once as one stack.

`HeadStack` trains H independent heads in one TF graph: every feature batch is read once and
fed to all of them through stacked weights and batched matrix products; head h has its own
method, targets, weights, parameters and state. Heads of the same loss and parameters are one
group, whose loss is computed once over all of them (`heads.losses` take a leading head axis).
Each head's initial weights (and ROLE's initial label estimates) come from its own seed key,
so a head trained in a stack equals the same head trained alone.

The head types, their initialisation and the optimisers' constants are `heads.network`'s
(shared with finetune); a stack's inputs are `heads.inputs.StackInputs`.

Per-head learning rates (a search's grid points, `heads.search`) keep the fused optimiser
kernels, which take one rate: head h with rate a_h x the stack's rate stores its weights as
theta = w / a_h, computes with w = a_h theta (each layer's pre-activation scaled by a_h) and
adds its loss / a_h to the total. Its gradient in theta is then exactly its gradient in w, so
the optimiser's state (Adam's moments, Adadelta's accumulators) is that of w, and its step on
theta, times a_h, is the step on w at rate a_h x the stack's: the head trains as alone at its
rate. ROLE's estimates are reparameterised the same way, with lr_mult folded into a_h.

Per-head state: ROLE's label estimates, logits (n_train, R, L), trained with the head's
optimiser at `lr_mult` x its learning rate, updated on the batch's rows only (a lazy update;
the reference's dense Adam also drifts rows outside the batch); LL-Cp's corrected labels
(n_train, Q, L), set once an entry is corrected and observed as positive ever after.
"""
from __future__ import annotations

import itertools
import math
import time
import zlib
from dataclasses import dataclass

import numpy as np

from runtime.tf_quiet import tf

from . import losses, network, search
from .inputs import Needs, StackInputs, given_constants

ADADELTA, ADAM = network.OPTIMIZERS["adadelta"], network.OPTIMIZERS["adam"]
ROLE_START = {"positive": 0.995, "spread": 0.6}  # Cole'21: logit(0.995) on positives, U(+-logit(0.6)) elsewhere


def head_seed(seed: int, key: str) -> np.random.SeedSequence:
    """The initialisation seed of one head: the same alone or in any stack."""
    return np.random.SeedSequence([seed, zlib.crc32(key.encode())])


def truncated_normal(rng: np.random.Generator, shape, std: float) -> np.ndarray:
    """Normal(0, std) redrawn beyond two standard deviations (tf.truncated_normal's law)."""
    values = rng.normal(0, std, shape)
    while (bad := np.abs(values) > 2 * std).any():
        values[bad] = rng.normal(0, std, bad.sum())
    return values.astype(np.float32)


def logit(p: float) -> float:
    return math.log(p / (1 - p))


def role_start(observed: np.ndarray, rng: np.random.Generator | None) -> np.ndarray:
    """ROLE's initial estimates (logits) for observed labels (n, L): logit(0.995) on positives,
    uniform in +-logit(0.6) elsewhere (0, the middle, when `rng` is None: validation rows)."""
    spread = logit(ROLE_START["spread"])
    start = np.zeros(observed.shape, np.float32) if rng is None else \
        rng.uniform(-spread, spread, observed.shape).astype(np.float32)
    start[observed.astype(bool)] = logit(ROLE_START["positive"])
    return start


@dataclass(frozen=True)
class Group:
    """Heads trained with the same loss and parameters: one loss call over all of them."""
    needs: Needs  # what their loss takes (all share it)
    params: tuple
    heads: tuple[int, ...]


def groups(inputs: StackInputs) -> list[Group]:
    """Heads grouped by what their loss call takes: loss, parameters, class weights, state and
    whether they have negative weights. A stateful method's heads form one group."""
    by_key: dict = {}
    for h, (kind, params) in enumerate(zip(inputs.needs, inputs.params)):
        key = (kind.loss, tuple(sorted(params.items())), kind.class_weights, kind.state,
               bool(inputs.negatives_of[h] >= 0))
        by_key.setdefault(key, (kind, []))[1].append(h)
    return [Group(kind, key[1], tuple(heads)) for key, (kind, heads) in by_key.items()]


class BestEpochs:
    """Early stopping per head: each head's lowest validation loss, a copy of its weights from
    that epoch, and its epochs since. Variables hold the heads on axis 1 (the first layer,
    stored (d_in, H, d_out)) or axis 0 (the others)."""

    def __init__(self, variables):
        self.variables = variables
        self.axes = [1] + [0] * (len(variables) - 1)
        n_heads = variables[0].shape[1]
        self.loss = np.full(n_heads, np.inf)
        self.snapshots = [v.numpy() for v in variables]
        self.waited = np.zeros(n_heads, int)

    def update(self, val_loss: np.ndarray, patience: int) -> bool:
        """Record an epoch's (H,) validation losses; True once no head improved for `patience` epochs."""
        better = val_loss < self.loss
        self.loss[better] = val_loss[better]
        self.waited[better] = 0
        self.waited[~better] += 1
        for snapshot, var, axis in zip(self.snapshots, self.variables, self.axes):
            pick = (slice(None),) * axis + (better,)
            snapshot[pick] = var.numpy()[pick]
        return bool((self.waited >= patience).all())

    def restore(self) -> None:
        for snapshot, var in zip(self.snapshots, self.variables):
            var.assign(snapshot)


class HeadStack:
    """H heads of the same shape trained together (estimator-style: settings, fit, predict).

    fit(batches, inputs, ...) -> self; predict_proba(x) -> (H, n, L).
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
        sizes = (d_in, *self.hidden, n_classes)
        return len(self.head_keys) * sum(a * b + b for a, b in itertools.pairwise(sizes))

    def _init(self, d_in: int, inputs: StackInputs) -> None:
        n_classes = inputs.targets.shape[2]
        sizes = (d_in, *self.hidden, n_classes)
        n_heads = len(self.head_keys)
        # the first layer is stored (d_in, H, d_out): one plain matrix product serves every head
        # and its gradient, with no transpose of the largest weights (see _logits)
        weights = [np.empty((a, n_heads, b) if layer == 0 else (n_heads, a, b), np.float32)
                   for layer, (a, b) in enumerate(itertools.pairwise(sizes))]
        scale = self._scale
        for h, key in enumerate(self.head_keys):
            rng = np.random.default_rng(head_seed(self.seed, key))
            for layer, (a, b) in enumerate(itertools.pairwise(sizes)):
                start = truncated_normal(rng, (a, b), network.WEIGHT_STD)
                (weights[0][:, h] if layer == 0 else weights[layer][h])[...] = start if scale is None else \
                    start / np.float32(scale[h])
        self._w = []
        while weights:  # one layer's NumPy copy at a time beside the variables
            self._w.append(tf.Variable(weights.pop(0)))
        bias = np.full((n_heads, 1, 1), network.BIAS_INIT, np.float32)
        if scale is not None:
            bias = bias / scale.astype(np.float32)[:, None, None]
        self._b = [tf.Variable(np.broadcast_to(bias, (n_heads, 1, b)).copy()) for b in sizes[1:]]
        self._slots = [(tf.Variable(tf.zeros_like(v)), tf.Variable(tf.zeros_like(v))) for v in self._w + self._b]
        self._step = tf.Variable(0, dtype=tf.int64)
        self._init_state(inputs)

    def _init_state(self, inputs: StackInputs) -> None:
        """ROLE estimates (n, R, L) with their optimiser slots, LL-Cp corrections (n, Q, L)."""
        stateful = {name: [h for h, kind in enumerate(inputs.needs) if kind.state == name]
                    for name in ("estimates", "corrections")}
        self._role, self._cp = stateful["estimates"], stateful["corrections"]
        self._state_index = {h: i for rows in (self._role, self._cp) for i, h in enumerate(rows)}
        self._role_lr = float(inputs.params[self._role[0]]["lr_mult"]) if self._role else 1.0
        # ROLE head h's lr_mult against the first's; its estimates step at a_h x that x the stack's rate
        ratio = np.array([float(inputs.params[h]["lr_mult"]) / self._role_lr for h in self._role])
        role_scale = (ratio if self._scale is None else ratio * self._scale[self._role]).astype(np.float32)
        self._role_scale = None if np.all(role_scale == 1) else tf.constant(role_scale[:, None, None])
        # the estimates' gradient in theta is `ratio` x theirs in u: divided back
        self._role_ratio = None if np.all(ratio == 1) else tf.constant(ratio.astype(np.float32)[None, :, None])
        starts = [role_start(inputs.targets[inputs.target_of[h]],
                             np.random.default_rng(head_seed(self.seed, self.head_keys[h] + "/estimates")))
                  / (1.0 if self._role_scale is None else role_scale[i])
                  for i, h in enumerate(self._role)]
        n, n_classes = inputs.targets.shape[1:]
        self._estimates = tf.Variable(np.stack(starts, axis=1) if starts else np.zeros((n, 0, n_classes), np.float32))
        self._estimate_slots = (tf.Variable(tf.zeros_like(self._estimates)), tf.Variable(tf.zeros_like(self._estimates)))
        self._corrections = tf.Variable(tf.zeros((n, len(self._cp), n_classes), tf.float32))

    def _logits(self, x):
        """x: (n, d) shared by all heads -> (H, n, L) logits."""
        d_in, n_heads, d_out = self._w[0].shape
        flat = tf.matmul(x, tf.reshape(self._w[0], [d_in, n_heads * d_out]))  # (n, H * d_out)
        net = self._scaled(tf.transpose(tf.reshape(flat, [-1, n_heads, d_out]), [1, 0, 2]) + self._b[0])
        for w, b in zip(self._w[1:], self._b[1:]):
            net = self._scaled(tf.matmul(tf.sigmoid(net), w) + b)
        return net

    def _scaled(self, net):
        """A layer's (H, n, d) pre-activation of theta times each head's a_h (its w's)."""
        return net if self._scale is None else net * self._scale_t

    def _head_losses(self, logits, targets, negatives, epoch, estimates, corrections):
        """(H,) loss per head and the (Q, n, L) LL-Cp entries corrected in this batch (or None).

        targets (H, n, L); negatives (W, n, L); estimates (R, n, L) for the ROLE heads;
        corrections (Q, n, L) for the LL-Cp heads, added to their observed labels."""
        order, values, fixed, corrected = [], [], [], []
        for group in self._groups:
            heads = list(group.heads)
            spec = group.needs
            observed = tf.gather(targets, heads)
            mine = [self._state_index.get(h, -1) for h in heads]  # the group's rows of its state (ROLE / LL-Cp)
            if spec.state == "corrections":
                observed = tf.maximum(observed, tf.gather(corrections, mine))
            weighted = self._negatives_of[heads] >= 0  # all or none of a group's heads (`groups`)
            constants = {name: tf.gather(value, heads) for name, value in given_constants(spec, self._constants).items()}
            inputs = losses.Inputs(
                neg_weight=tf.gather(negatives, self._negatives_of[heads]) if weighted.all() else None,
                epoch=epoch, estimates=tf.gather(estimates, mine) if spec.state == "estimates" else None, **constants)
            terms = losses.terms(spec.loss, tf.gather(logits, heads), observed, inputs, dict(group.params))
            order.append(heads)
            values.append(terms.loss)
            if terms.corrected is not None:
                fixed.append(mine)
                corrected.append(terms.corrected)
        return tf.dynamic_stitch(order, values), tf.dynamic_stitch(fixed, corrected) if corrected else None

    def _learning_rate(self):
        return self.learning_rate * self.lr_decay ** tf.cast(self._step // self.decay_steps, tf.float32)

    def _apply(self, grads) -> None:
        lr = self._learning_rate()
        for var, grad, (slot_a, slot_b) in zip(self._w + self._b, grads, self._slots):
            if self.optimizer == "adadelta":
                tf.raw_ops.ResourceApplyAdadelta(var=var.handle, accum=slot_a.handle, accum_update=slot_b.handle,
                                                 lr=lr, rho=ADADELTA["rho"], epsilon=ADADELTA["epsilon"], grad=grad)
            elif self.optimizer == "adam":
                t = tf.cast(self._step + 1, tf.float32)
                tf.raw_ops.ResourceApplyAdam(var=var.handle, m=slot_a.handle, v=slot_b.handle,
                                             beta1_power=ADAM["beta1"] ** t, beta2_power=ADAM["beta2"] ** t, lr=lr,
                                             beta1=ADAM["beta1"], beta2=ADAM["beta2"], epsilon=ADAM["epsilon"],
                                             grad=grad)
            else:
                tf.raw_ops.ResourceApplyGradientDescent(var=var.handle, alpha=lr, delta=grad)

    def _apply_estimates(self, grad: tf.IndexedSlices) -> None:
        """The head's optimiser on the rows of ROLE's estimates the batch touched, at lr_mult x lr."""
        lr = self._learning_rate() * self._role_lr
        var, (slot_a, slot_b) = self._estimates, self._estimate_slots
        rows, g = grad.indices, grad.values
        if self._role_ratio is not None:
            g = g / self._role_ratio
        if self.optimizer == "adadelta":
            tf.raw_ops.ResourceSparseApplyAdadelta(var=var.handle, accum=slot_a.handle, accum_update=slot_b.handle,
                                                   lr=lr, rho=ADADELTA["rho"], epsilon=ADADELTA["epsilon"], grad=g, indices=rows)
        elif self.optimizer == "adam":
            t = tf.cast(self._step + 1, tf.float32)
            m = ADAM["beta1"] * tf.gather(slot_a, rows) + (1 - ADAM["beta1"]) * g
            v = ADAM["beta2"] * tf.gather(slot_b, rows) + (1 - ADAM["beta2"]) * g * g
            slot_a.scatter_update(tf.IndexedSlices(m, rows))
            slot_b.scatter_update(tf.IndexedSlices(v, rows))
            scale = lr * tf.sqrt(1 - ADAM["beta2"] ** t) / (1 - ADAM["beta1"] ** t)
            var.scatter_sub(tf.IndexedSlices(scale * m / (tf.sqrt(v) + ADAM["epsilon"]), rows))
        else:
            var.scatter_sub(tf.IndexedSlices(lr * g, rows))

    def _state_rows(self, rows):
        """ROLE estimates (R, b, L) and LL-Cp corrections (Q, b, L) of the batch's rows."""
        estimates = tf.transpose(tf.gather(self._estimates, rows), [1, 0, 2])
        if self._role_scale is not None:
            estimates = estimates * self._role_scale
        return estimates, tf.transpose(tf.gather(self._corrections, rows), [1, 0, 2])

    def fit(self, batches, inputs: StackInputs, validation=None, d_in=None, select=None):
        """Train on `batches()`: a callable yielding (rows, x) per step for one epoch, where x
        is (batch, d) float32 and rows index the n training rows of `inputs`.

        validation: optional (blocks, targets (P, m, L), negatives (W, m, L)), `blocks()` yielding
        (positions, x) over the m validation rows, for the validation loss per epoch (observed
        labels only) and, when `patience` > 0, early stopping on it: training ends once no head
        improved for `patience` epochs, and each head keeps its weights from its best epoch.
        select: optional (labels (S, m, L), labels_of (H,)): each head then keeps the weights of
        the epoch with its best validation mAP against its row of `labels` (`heads.search`),
        recorded in `val_score_` and `best_epoch_`; patience then counts epochs without a better score.
        """
        # setup: variables, state and the compiled step
        assert len(self.head_keys) == len(inputs.methods)
        self._groups = groups(inputs)
        scale = None if inputs.lr_scale is None else np.asarray(inputs.lr_scale, np.float64)
        self._scale = None if scale is None or np.all(scale == 1) else scale
        self._scale_t = None if self._scale is None else tf.constant(self._scale.astype(np.float32)[:, None, None])
        self._init(d_in, inputs)
        self._constants = {name: tf.constant(value, tf.float32) for name, value in inputs.constants.items()}
        self._negatives_of = np.asarray(inputs.negatives_of)
        step = self._compiled_step(inputs)
        best = BestEpochs(self._w + self._b) if validation is not None and (self.patience or select) else None

        # loop: epochs of steps, the validation loss (and score) after each
        self.history_ = []
        self.best_epoch_ = np.zeros(len(self.head_keys), int)
        start = time.perf_counter()
        for epoch in range(1, self.epochs + 1):
            sums, count = np.zeros(len(self.head_keys)), 0
            for rows, x in batches():
                sums += step(tf.constant(x), tf.constant(rows, tf.int64), tf.constant(inputs.targets[:, rows]),
                             tf.constant(inputs.negatives[:, rows]), tf.constant(epoch, tf.int64)).numpy()
                count += 1
            record = {"epoch": epoch, "train_loss": sums / max(count, 1)}
            if validation is not None:
                record["val_loss"], probabilities = self._validation_pass(validation, inputs, epoch, select is not None)
                if select is not None:
                    labels, labels_of = select
                    record["val_score"] = search.mean_average_precision(labels[labels_of], probabilities)
            self.history_.append(record)
            if best is not None:
                criterion = -np.nan_to_num(record["val_score"], nan=-1.0) if select is not None else record["val_loss"]
                improved = criterion < best.loss
                self.best_epoch_[improved] = epoch
                if best.update(criterion, self.patience) and self.patience:
                    break

        # learned state: each head's best epoch under early stopping or selection, else its last
        if best is not None:
            best.restore()
        else:
            self.best_epoch_[:] = len(self.history_)
        if select is not None:
            self.val_score_ = -best.loss
        self.fit_seconds_ = time.perf_counter() - start
        scale = (np.ones(len(self.head_keys)) if self._scale is None else self._scale).astype(np.float32)[:, None, None]
        self.weights_ = [np.moveaxis(self._w[0].numpy(), 1, 0) * scale] + [w.numpy() * scale for w in self._w[1:]]
        self.biases_ = [b.numpy() * scale for b in self._b]
        self.corrections_ = self._corrections.numpy()
        estimates = self._estimates.numpy()
        self.estimates_ = estimates if self._role_scale is None else \
            estimates * self._role_scale.numpy().transpose(1, 0, 2)
        return self

    def _compiled_step(self, inputs: StackInputs):
        """One training step of every head as a tf.function: (x, rows, targets, negatives, epoch)
        -> (H,) losses; updates the weights, ROLE's estimates and LL-Cp's corrections."""
        variables = self._w + self._b
        target_of = tf.constant(inputs.target_of, tf.int32)

        @tf.function(reduce_retracing=True, autograph=False)  # Python control flow only: no autograph files in the temp dir
        def step(x, rows, targets, negatives, epoch):
            observed = tf.gather(tf.cast(targets, tf.float32), target_of)
            with tf.GradientTape() as tape:
                estimates, corrections = self._state_rows(rows)
                per_head, corrected = self._head_losses(self._logits(x), observed, negatives, epoch, estimates,
                                                        corrections)
                total = tf.reduce_sum(per_head if self._scale is None else per_head / self._scale_t[:, 0, 0])
            grads = tape.gradient(total, [*variables, self._estimates])
            self._apply(grads[:-1])
            if self._role:
                self._apply_estimates(grads[-1])
            if corrected is not None:
                self._corrections.scatter_max(tf.IndexedSlices(
                    tf.transpose(corrected, [1, 0, 2]), rows))
            self._step.assign_add(1)
            return per_head

        return step

    def _validation_pass(self, validation, inputs: StackInputs, epoch: int, probabilities: bool = False):
        """((H,) mean loss per head over every validation row, block by block; (H, m, L) float32
        probabilities when asked, else None). ROLE's estimates of validation rows are their
        starting values without noise, LL-Cp corrects none."""
        blocks, targets, negatives = validation
        total = np.zeros(len(self.head_keys))
        kept = np.empty((len(self.head_keys), targets.shape[1], targets.shape[2]), np.float32) if probabilities else None
        for positions, x in blocks():
            observed = targets[inputs.target_of][:, positions].astype(np.float32)
            estimates = np.stack([role_start(observed[h], None) for h in self._role]) if self._role else \
                np.zeros((0, *observed.shape[1:]), np.float32)
            corrections = np.zeros((len(self._cp), *observed.shape[1:]), np.float32)
            logits = self._logits(tf.constant(x))
            mean, _ = self._head_losses(logits, tf.constant(observed), tf.constant(negatives[:, positions]), epoch,
                                        tf.constant(estimates), tf.constant(corrections))
            total += mean.numpy() * len(positions)
            if kept is not None:
                kept[:, positions] = tf.sigmoid(logits).numpy()
        return total / targets.shape[1], kept

    def predict_proba(self, x: np.ndarray, batch_size: int = 4096) -> np.ndarray:
        """(H, n, L) float32 probabilities for features x (n, d)."""
        parts = [tf.sigmoid(self._logits(tf.constant(x[i:i + batch_size], tf.float32))).numpy()
                 for i in range(0, len(x), batch_size)]
        return np.concatenate(parts, axis=1)


def make(head: str, head_keys, cfg_heads, seed: int) -> HeadStack:
    """The configured head type as a stack over `head_keys`."""
    return HeadStack(head_keys, hidden=network.hidden_layers(head, cfg_heads), optimizer=cfg_heads.optimizer,
                     learning_rate=cfg_heads.learning_rate, lr_decay=cfg_heads.lr_decay,
                     decay_steps=cfg_heads.decay_steps, epochs=cfg_heads.epochs,
                     patience=cfg_heads.patience, seed=seed)

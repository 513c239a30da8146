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
(n_train, Q, L), set once an entry is corrected and observed as positive ever after; EM+APL's
pseudo-negatives (n_train, E, L), -1 where none: after each epoch from `warmup` on, a forward
pass over the training rows (`train_blocks`) picks per class the floor(theta U_j / (epochs -
warmup)) still unlabelled entries of lowest p (U_j: the class's unknown entries at the start)
and freezes their p as soft targets, as Zhou'22's reference does.

Three states: the stack's verified negatives (`StackInputs.verified_negative`, one array per
protocol like its targets) reach each head's loss with its targets (`heads.losses`).
"""
from __future__ import annotations

import dataclasses
import itertools
import math
import time
import zlib
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

import metrics
from runtime.tf_quiet import tf

from . import losses, network
from .inputs import Needs, StackInputs, given_constants

ADADELTA, ADAM = network.OPTIMIZERS["adadelta"], network.OPTIMIZERS["adam"]
ROLE_START = {"positive": 0.995, "spread": 0.6}
# a forward pass without gradients holds at most this much of one layer's activations  # Cole'21: logit(0.995)
# on positives, U(+-logit(0.6)) elsewhere
PASS_BYTES = 1 << 28


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


class BatchState(NamedTuple):
    """What a batch's heads read besides logits, targets and the per-entry bank."""
    estimates: object  # (R, n, L) ROLE's estimates of the rows
    corrections: object  # (Q, n, L) LL-Cp's corrections of the rows
    pseudo_negatives: object  # (E, n, L) EM+APL's soft pseudo-negatives, -1 where none
    verified_negative: object = None  # (H, n, L) 0/1 verified negatives of each head's protocol, or None


class Validation(NamedTuple):
    """The validation rows a stack scores after each epoch."""
    blocks: object  # blocks() -> (positions, x (b, d) float32) over the m rows, in order
    targets: np.ndarray  # (P, m, L) each protocol's observed labels
    bank: np.ndarray  # (W, m, L) the rows' per-entry arrays (negative weights, pseudo-positives)
    verified_negative: np.ndarray | None = None  # (P, m, L) uint8 verified negatives; None without


class Selection(NamedTuple):
    """What a search scores each head's validation probabilities against (`heads.search`)."""
    labels: np.ndarray  # (S, m, L) 0/1
    labels_of: np.ndarray  # (H,) each head's row of `labels`
    known: np.ndarray | None = None  # (S, m, L) bool: the entries that count (partial labels); None: all


class Schedule(NamedTuple):
    """How a searched stack thins out, and which epoch each head ends at (`heads.search`)."""
    run_of: np.ndarray  # (H,) each head's run: halving compares the points of one run
    milestones: tuple[int, ...] = ()  # epochs after which each run keeps its best 1 / halving points
    halving: int = 1
    epochs_of: np.ndarray | None = None  # (H,) the epoch whose weights each head keeps; None: selection's
    restore: bool = True  # under selection each head ends at its best epoch; False: at its last
    protect: np.ndarray | None = None  # (H,) bool: heads halving never drops (a run's unsearched setting)


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
               bool(inputs.weights_of[h] >= 0), kind.prior, kind.pseudo)
        by_key.setdefault(key, (kind, []))[1].append(h)
    return [Group(kind, key[1], tuple(heads)) for key, (kind, heads) in by_key.items()]


def halved(scores: np.ndarray, run_of: np.ndarray, halving: int,
           protect: np.ndarray | None = None) -> np.ndarray:
    """Positions of the heads that stay after a milestone: per run the ceil(n / halving) of its n
    heads with the best scores (ties: the earlier head), and the `protect`ed ones, in head order."""
    keep = [] if protect is None else np.flatnonzero(protect).tolist()
    for run in np.unique(run_of):
        heads = np.flatnonzero(run_of == run)
        values = np.where(np.isnan(scores[heads]), -np.inf, scores[heads])
        order = heads[np.argsort(-values, kind="stable")]
        keep += order[:-(-len(heads) // halving)].tolist()
    return np.array(sorted(set(keep)), int)


def subset_inputs(inputs: StackInputs, keep: np.ndarray) -> StackInputs:
    """A stack's inputs of only the heads `keep`: the shared arrays (targets, bank) as they are."""
    keep = np.asarray(keep)
    return dataclasses.replace(
        inputs, methods=[inputs.methods[h] for h in keep], needs=[inputs.needs[h] for h in keep],
        params=[inputs.params[h] for h in keep], target_of=np.asarray(inputs.target_of)[keep],
        constants={name: value[keep] for name, value in inputs.constants.items()},
        weights_of=np.asarray(inputs.weights_of)[keep],
        lr_scale=None if inputs.lr_scale is None else np.asarray(inputs.lr_scale)[keep],
        pseudo_of=(np.full(len(inputs.methods), -1) if inputs.pseudo_of is None
                   else np.asarray(inputs.pseudo_of))[keep])


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

    def keep(self, heads: np.ndarray) -> None:
        """Copy the current weights of `heads` (a bool mask) into their snapshots."""
        for snapshot, var, axis in zip(self.snapshots, self.variables, self.axes):
            pick = (slice(None),) * axis + (heads,)
            snapshot[pick] = var.numpy()[pick]

    def subset(self, keep: np.ndarray, variables) -> None:
        """Only the heads `keep` (positions), over the stack's new `variables`."""
        self.variables = variables
        self.snapshots = [np.take(snapshot, keep, axis=axis) for snapshot,
                          axis in zip(self.snapshots, self.axes)]
        self.loss, self.waited = self.loss[keep], self.waited[keep]

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
        self.widths_ = sizes[1:]
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
        self._slots = [(tf.Variable(tf.zeros_like(v)), tf.Variable(tf.zeros_like(v)))
                       for v in self._w + self._b]
        self._step = tf.Variable(0, dtype=tf.int64)
        self._init_state(inputs)

    def _init_state(self, inputs: StackInputs) -> None:
        """ROLE estimates (n, R, L) with their optimiser slots, LL-Cp corrections (n, Q, L),
        EM+APL pseudo-negatives (n, E, L)."""
        stateful = {name: [h for h, kind in enumerate(inputs.needs) if kind.state == name]
                    for name in ("estimates", "corrections", "pseudo_negatives")}
        self._role, self._cp = stateful["estimates"], stateful["corrections"]
        self._apl = stateful["pseudo_negatives"]
        self._state_index = {h: i for rows in (self._role, self._cp, self._apl) for i, h in enumerate(rows)}
        self._role_lr = float(inputs.params[self._role[0]]["lr_mult"]) if self._role else 1.0
        # ROLE head h's lr_mult against the first's; its estimates step at a_h x that x the stack's rate
        ratio = np.array([float(inputs.params[h]["lr_mult"]) / self._role_lr for h in self._role])
        role_scale = (ratio if self._scale is None else ratio * self._scale[self._role]).astype(np.float32)
        self._role_scale = None if np.all(role_scale == 1) else tf.constant(role_scale[:, None, None])
        # the estimates' gradient in theta is `ratio` x theirs in u: divided back
        self._role_ratio = None if np.all(ratio == 1) else \
            tf.constant(ratio.astype(np.float32)[None, :, None])
        starts = [role_start(inputs.targets[inputs.target_of[h]],
                             np.random.default_rng(head_seed(self.seed, self.head_keys[h] + "/estimates")))
                  / (1.0 if self._role_scale is None else role_scale[i])
                  for i, h in enumerate(self._role)]
        n, n_classes = inputs.targets.shape[1:]
        self._estimates = tf.Variable(np.stack(starts, axis=1) if starts
                                      else np.zeros((n, 0, n_classes), np.float32))
        self._estimate_slots = (tf.Variable(tf.zeros_like(self._estimates)),
                                tf.Variable(tf.zeros_like(self._estimates)))
        self._corrections = tf.Variable(tf.zeros((n, len(self._cp), n_classes), tf.float32))
        self._pseudo_negatives = tf.Variable(tf.fill((n, len(self._apl), n_classes), -1.0))
        self._unlabelled_start = np.stack([self._unlabelled(inputs, h)
                                           for h in self._apl]).sum(1) if self._apl else None

    def _unlabelled(self, inputs: StackInputs, h: int) -> np.ndarray:
        """(n, L) bool: head h's training entries neither observed positive nor verified negative."""
        p = inputs.target_of[h]
        known = inputs.verified_negative[p].astype(bool) if inputs.verified_negative is not None else False
        return (inputs.targets[p] == 0) & ~known
    def _logits(self, x):
        """x: (n, d) shared by all heads -> (H, n, L) logits."""
        d_in, n_heads, d_out = self._w[0].shape
        if self._standardize is not None:
            mean, std = self._standardize
            x = (x - mean) / std
        flat = tf.matmul(x, tf.reshape(self._w[0], [d_in, n_heads * d_out]))  # (n, H * d_out)
        net = self._scaled(tf.transpose(tf.reshape(flat, [-1, n_heads, d_out]), [1, 0, 2]) + self._b[0])
        for w, b in zip(self._w[1:], self._b[1:]):
            net = self._scaled(tf.matmul(tf.sigmoid(net), w) + b)
        return net

    def _scaled(self, net):
        """A layer's (H, n, d) pre-activation of theta times each head's a_h (its w's)."""
        return net if self._scale is None else net * self._scale_t

    def _head_losses(self, logits, targets, bank, epoch, state: BatchState):
        """(H,) loss per head and the (Q, n, L) LL-Cp entries corrected in this batch (or None).

        targets (H, n, L); bank (W, n, L), the per-entry arrays; `state`: ROLE's
        estimates, LL-Cp's corrections (added to their observed labels), EM+APL's
        pseudo-negatives, the verified negatives."""
        order, values, fixed, corrected = [], [], [], []
        for group in self._groups:
            heads = list(group.heads)
            spec = group.needs
            observed = tf.gather(targets, heads)
            mine = [self._state_index.get(h, -1) for h in heads]  # the group's rows of its state
            if spec.state == "corrections":
                observed = tf.maximum(observed, tf.gather(state.corrections, mine))
            weighted = self._weights_of[heads] >= 0  # all or none of a group's heads (`groups`)
            constants = {name: tf.gather(value, heads) for name,
                         value in given_constants(spec, self._constants).items()}
            inputs = losses.Inputs(
                neg_weight=tf.gather(bank, self._weights_of[heads]) if weighted.all() else None,
                epoch=epoch,
                estimates=tf.gather(state.estimates, mine) if spec.state == "estimates" else None,
                verified_negative=None if state.verified_negative is None
                else tf.gather(state.verified_negative, heads),
                pseudo=tf.gather(bank, self._pseudo_of[heads]) if spec.pseudo else None,
                pseudo_negative=tf.gather(state.pseudo_negatives, mine)
                if spec.state == "pseudo_negatives" else None,
                **constants)
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
                tf.raw_ops.ResourceApplyAdadelta(var=var.handle, accum=slot_a.handle,
                                                 accum_update=slot_b.handle,
                                                 lr=lr, rho=ADADELTA["rho"],
                                                 epsilon=ADADELTA["epsilon"], grad=grad)
            elif self.optimizer == "adam":
                t = tf.cast(self._step + 1, tf.float32)
                tf.raw_ops.ResourceApplyAdam(var=var.handle, m=slot_a.handle, v=slot_b.handle,
                                             beta1_power=ADAM["beta1"] ** t,
                                             beta2_power=ADAM["beta2"] ** t, lr=lr,
                                             beta1=ADAM["beta1"], beta2=ADAM["beta2"],
                                             epsilon=ADAM["epsilon"],
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
            tf.raw_ops.ResourceSparseApplyAdadelta(var=var.handle, accum=slot_a.handle,
                                                   accum_update=slot_b.handle,
                                                   lr=lr, rho=ADADELTA["rho"], epsilon=ADADELTA["epsilon"],
                                                   grad=g, indices=rows)
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

    def _state_rows(self, rows, verified_negative) -> BatchState:
        """The state of the batch's rows: ROLE estimates (R, b, L), LL-Cp corrections (Q, b, L),
        EM+APL pseudo-negatives (E, b, L); `verified_negative`: each head's verified negatives."""
        estimates = tf.transpose(tf.gather(self._estimates, rows), [1, 0, 2])
        if self._role_scale is not None:
            estimates = estimates * self._role_scale
        return BatchState(estimates, tf.transpose(tf.gather(self._corrections, rows), [1, 0, 2]),
                          tf.transpose(tf.gather(self._pseudo_negatives, rows), [1, 0, 2]), verified_negative)

    def fit(self, batches, inputs: StackInputs, validation=None, d_in=None, select=None, train_blocks=None,
            standardize=None, schedule: Schedule | None = None, observe=None):
        """Train on `batches()`: a callable yielding (rows, x) per step for one epoch, where x
        is (batch, d) float32 and rows index the n training rows of `inputs`.

        validation: an optional `Validation` of the m validation rows, for the validation loss
        per epoch (observed labels only) and, when `patience` > 0, early stopping on it: training
        ends once no head improved for `patience` epochs, and each head keeps its weights from
        its best epoch.
        select: an optional `Selection`: each head then keeps the weights of the epoch with its
        best validation mAP against its row of `labels` (over its known entries when given:
        `heads.search`), recorded in `val_score_` and `best_epoch_`; patience then counts epochs
        without a better score.
        train_blocks: `blocks()` over the n training rows in order, for EM+APL's pseudo-negatives.
        standardize: optional (mean (d,), std (d,)): every head reads (x - mean) / std; the learned
        weights_ and biases_ fold it into the first layer, so they take raw features.
        schedule: an optional `Schedule`: successive halving (after each milestone epoch each run
        keeps the ceil(1 / halving) share of its points with the best validation score so far, and
        its `protect`ed ones; the others are dropped from the stack, which is rebuilt without them,
        so they cost no more steps: `alive_`), or a fixed epoch per head (`epochs_of`: its weights
        of that epoch are kept; training runs to the largest). Per-head records (`history_`, `best_epoch_`,
        `val_score_`, `val_scores_`) stay over the H heads given, NaN once a head is dropped.
        observe: an optional callable(epoch, stack) after each epoch (bench/selection.py scores
        every head's test rows there).
        """
        # setup: variables, state and the compiled step
        self._setup(inputs, d_in, standardize)
        step = self._compiled_step(inputs)
        n_heads = len(self.head_keys)
        epochs_of = None if schedule is None or schedule.epochs_of is None else np.asarray(schedule.epochs_of)
        tracked = validation is not None and (self.patience or select is not None) and epochs_of is None
        best = BestEpochs(self._w + self._b) if tracked else None
        kept = BestEpochs(self._w + self._b) if epochs_of is not None else None

        # loop: epochs of steps, the validation loss (and score) after each, halving at milestones
        self.alive_ = np.arange(n_heads)
        self.history_, self.val_scores_ = [], np.full((self.epochs, n_heads), np.nan)
        self.best_epoch_ = np.zeros(n_heads, int)
        last = self.epochs if epochs_of is None else int(epochs_of.max())
        start = time.perf_counter()
        for epoch in range(1, last + 1):
            record = self._epoch_record(step, batches, inputs, epoch, validation, select, train_blocks)
            if select is not None:
                self.val_scores_[epoch - 1, self.alive_] = record["val_score"]
            self.history_.append(self._over_all_heads(record, n_heads))
            if observe is not None:
                observe(epoch, self)
            if kept is not None:
                kept.keep(epochs_of[self.alive_] == epoch)
            if best is not None:
                criterion = -np.nan_to_num(record["val_score"], nan=-1.0) if select is not None else \
                    record["val_loss"]
                self.best_epoch_[self.alive_[criterion < best.loss]] = epoch
                if best.update(criterion, self.patience) and self.patience:
                    break
            milestone = schedule is not None and epoch in schedule.milestones
            if milestone and best is not None and select is not None:
                survivors = halved(-best.loss, schedule.run_of[self.alive_], schedule.halving,
                                   None if schedule.protect is None else schedule.protect[self.alive_])
                if len(survivors) < len(self.alive_):
                    inputs = self._shrink(survivors, inputs)
                    best.subset(survivors, self._w + self._b)
                    step = self._compiled_step(inputs)

        # learned state: each head's best epoch (early stopping, selection), its fixed one, or its last
        self._ended(best, kept, epochs_of, schedule, select, n_heads)
        self.fit_seconds_ = time.perf_counter() - start
        self._learned_state()
        return self

    def _epoch_record(self, step, batches, inputs, epoch, validation, select, train_blocks) -> dict:
        """One epoch of steps, then its validation loss and score: {epoch, train_loss (H,), ...}."""
        record = {"epoch": epoch, "train_loss": self._epoch(step, batches, inputs, epoch)}
        if self._apl:
            self._choose_pseudo_negatives(inputs, epoch, train_blocks)
        if validation is not None:
            record["val_loss"], probabilities = self._validation_pass(validation, inputs, epoch,
                                                                      select is not None)
            if select is not None:
                labels_of = select.labels_of[self.alive_]
                known = None if select.known is None else select.known[labels_of]
                record["val_score"] = metrics.mean_average_precision(select.labels[labels_of],
                                                                     probabilities, known)
        return record

    def _over_all_heads(self, record: dict, n_heads: int) -> dict:
        """A record's per-head arrays over every head given to fit (NaN where dropped)."""
        out = {}
        for key, value in record.items():
            if key == "epoch":
                out[key] = value
                continue
            full = np.full(n_heads, np.nan)
            full[self.alive_] = value
            out[key] = full
        return out

    def _ended(self, best, kept, epochs_of, schedule, select, n_heads) -> None:
        """Restore each head's epoch (its best, or its fixed one) and record it."""
        if best is not None and (schedule is None or schedule.restore):
            best.restore()
        if kept is not None:
            kept.restore()
            self.best_epoch_ = epochs_of.astype(int)
        elif best is None or (schedule is not None and not schedule.restore):
            self.best_epoch_[self.alive_] = len(self.history_)
        self.val_score_ = np.full(n_heads, np.nan)
        if select is not None and best is not None:
            self.val_score_[self.alive_] = -best.loss

    def _shrink(self, keep: np.ndarray, inputs: StackInputs) -> StackInputs:
        """The stack without the heads not in `keep` (positions among the alive heads): every
        per-head variable, optimiser slot and state sliced as it stands, the groups and constants
        remade; the kept heads go on exactly as in the whole stack. Returns their inputs."""
        keep = np.asarray(keep)
        axes = [1] + [0] * (len(self._w) - 1) + [0] * len(self._b)
        variables = [tf.Variable(tf.gather(v, keep, axis=a)) for v, a in zip(self._w + self._b, axes)]
        self._slots = [(tf.Variable(tf.gather(a, keep, axis=ax)), tf.Variable(tf.gather(b, keep, axis=ax)))
                       for (a, b), ax in zip(self._slots, axes)]
        self._w, self._b = variables[:len(self._w)], variables[len(self._w):]
        position = {int(h): i for i, h in enumerate(keep)}
        kept_state = {}
        for name in ("_role", "_cp", "_apl"):
            rows = getattr(self, name)
            kept_state[name] = [i for i, h in enumerate(rows) if h in position]
            setattr(self, name, [position[rows[i]] for i in kept_state[name]])
        role, cp, apl = (np.asarray(kept_state[name], np.int32) for name in ("_role", "_cp", "_apl"))
        self._estimates = tf.Variable(tf.gather(self._estimates, role, axis=1))
        self._estimate_slots = tuple(tf.Variable(tf.gather(v, role, axis=1)) for v in self._estimate_slots)
        if self._role_scale is not None:
            self._role_scale = tf.gather(self._role_scale, role, axis=0)
        if self._role_ratio is not None:
            self._role_ratio = tf.gather(self._role_ratio, role, axis=1)
        self._corrections = tf.Variable(tf.gather(self._corrections, cp, axis=1))
        self._pseudo_negatives = tf.Variable(tf.gather(self._pseudo_negatives, apl, axis=1))
        if self._unlabelled_start is not None:
            self._unlabelled_start = self._unlabelled_start[apl] if len(apl) else None
        self._state_index = {h: i for rows in (self._role, self._cp, self._apl) for i, h in enumerate(rows)}
        self.head_keys = [self.head_keys[h] for h in keep]
        self.alive_ = self.alive_[keep]
        inputs = subset_inputs(inputs, keep)
        self._groups = groups(inputs)
        self._constants = {name: tf.constant(value, tf.float32) for name, value in inputs.constants.items()}
        self._weights_of = np.asarray(inputs.weights_of)
        self._pseudo_of = np.asarray(inputs.pseudo_of)
        if self._scale is not None:
            self._scale = self._scale[keep]
            self._scale_t = tf.constant(self._scale.astype(np.float32)[:, None, None])
        return inputs

    def _setup(self, inputs: StackInputs, d_in: int, standardize=None) -> None:
        """Groups, per-head rates, variables and state, the constants the losses read, the inputs'
        shift and scale."""
        assert len(self.head_keys) == len(inputs.methods)
        self._standardize = None if standardize is None else \
            tuple(tf.constant(np.asarray(v, np.float32)[None]) for v in standardize)
        self._groups = groups(inputs)
        scale = None if inputs.lr_scale is None else np.asarray(inputs.lr_scale, np.float64)
        self._scale = None if scale is None or np.all(scale == 1) else scale
        self._scale_t = None if self._scale is None else \
            tf.constant(self._scale.astype(np.float32)[:, None, None])
        self._init(d_in, inputs)
        self._constants = {name: tf.constant(value, tf.float32) for name, value in inputs.constants.items()}
        self._weights_of = np.asarray(inputs.weights_of)
        self._pseudo_of = np.full(len(self.head_keys),
                                  -1) if inputs.pseudo_of is None else np.asarray(inputs.pseudo_of)

    def _epoch(self, step, batches, inputs: StackInputs, epoch: int) -> np.ndarray:
        """One epoch of steps; (H,) the mean training loss per head."""
        sums, count = np.zeros(len(self.head_keys)), 0
        for rows, x in batches():
            verified = inputs.verified_negative
            known = None if verified is None else tf.constant(verified[:, rows])
            arguments = [tf.constant(x), tf.constant(rows, tf.int64), tf.constant(inputs.targets[:, rows]),
                         tf.constant(inputs.bank[:, rows]), tf.constant(epoch, tf.int64)]
            sums += step(*arguments, *([] if known is None else [known])).numpy()
            count += 1
        return sums / max(count, 1)

    def _learned_state(self) -> None:
        """weights_, biases_ (in w, not theta) and the per-row state, as NumPy arrays."""
        scale = (np.ones(len(self.head_keys)) if self._scale is None
                 else self._scale).astype(np.float32)[:, None, None]
        self.weights_ = [np.moveaxis(self._w[0].numpy(), 1, 0) * scale] + [w.numpy() * scale
                                                                           for w in self._w[1:]]
        self.biases_ = [b.numpy() * scale for b in self._b]
        if self._standardize is not None:  # ((x - m) / s) w + b = x (w / s) + b - (m / s) w
            mean, std = (v.numpy()[0] for v in self._standardize)
            self.biases_[0] -= np.einsum("d,hdo->ho", mean / std, self.weights_[0])[:, None]
            self.weights_[0] /= std[None, :, None]
        self.corrections_ = self._corrections.numpy()
        self.pseudo_negatives_ = self._pseudo_negatives.numpy()
        estimates = self._estimates.numpy()
        self.estimates_ = estimates if self._role_scale is None else \
            estimates * self._role_scale.numpy().transpose(1, 0, 2)

    def _choose_pseudo_negatives(self, inputs: StackInputs, epoch: int, train_blocks) -> None:
        """EM+APL after an epoch from its warm-up on: per head and class, the floor(theta U_j /
        (epochs - warmup)) still unlabelled training entries of lowest p become pseudo-negatives
        with their p as soft target (module docstring)."""
        due = [i for i, h in enumerate(self._apl) if epoch >= inputs.params[h]["warmup"]]
        if not due:
            return
        if train_blocks is None:
            raise ValueError("EM+APL chooses pseudo-negatives over the training rows: fit needs train_blocks")
        state = self._pseudo_negatives.numpy()
        heads = [self._apl[i] for i in due]
        p = np.concatenate([self.predict_proba(x)[heads] for _, x in train_blocks()], axis=1)
        for j, (i, h) in enumerate(zip(due, heads)):
            params = inputs.params[h]
            open_ = self._unlabelled(inputs, h) & (state[:, i] < 0)
            share = params["theta"] / max(params["epochs"] - params["warmup"], 1.0)
            counts = np.floor(share * self._unlabelled_start[i]).astype(int)
            scores = np.where(open_, p[j], np.inf)
            order = np.argsort(scores, axis=0, kind="stable")
            for c in np.flatnonzero(counts):
                rows = order[:min(counts[c], int(open_[:, c].sum())), c]
                state[rows, i, c] = p[j][rows, c]
        self._pseudo_negatives.assign(state)

    def _compiled_step(self, inputs: StackInputs):
        """One training step of every head as a tf.function: (x, rows, targets, bank, epoch,
        verified negatives or None) -> (H,) losses; updates the weights, ROLE's estimates and
        LL-Cp's corrections."""
        variables = self._w + self._b
        target_of = tf.constant(inputs.target_of, tf.int32)

        # Python control flow only: no autograph files in the temp dir. The batch axis is left open,
        # so an epoch's shorter last batch runs the same graph (one trace per stack, not two)
        def step(x, rows, targets, bank, epoch, known=None):
            observed = tf.gather(tf.cast(targets, tf.float32), target_of)
            verified = None if known is None else tf.gather(tf.cast(known, tf.float32), target_of)
            with tf.GradientTape() as tape:
                per_head, corrected = self._head_losses(self._logits(x), observed, bank, epoch,
                                                        self._state_rows(rows, verified))
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

        return tf.function(step, input_signature=self._step_signature(inputs), autograph=False)

    def _step_signature(self, inputs: StackInputs) -> list:
        """The compiled step's argument specs: every shape but the batch axis fixed; `known` only
        where some protocol has verified negatives."""
        n_classes = inputs.targets.shape[2]
        d_in = self._w[0].shape[0]
        signature = [tf.TensorSpec((None, d_in), tf.float32), tf.TensorSpec((None,), tf.int64),
                     tf.TensorSpec((len(inputs.targets), None, n_classes), tf.as_dtype(inputs.targets.dtype)),
                     tf.TensorSpec((len(inputs.bank), None, n_classes), tf.as_dtype(inputs.bank.dtype)),
                     tf.TensorSpec((), tf.int64)]
        if inputs.verified_negative is not None:
            signature.append(tf.TensorSpec((len(inputs.verified_negative), None, n_classes),
                                           tf.as_dtype(inputs.verified_negative.dtype)))
        return signature

    def _validation_pass(self, validation: Validation, inputs: StackInputs, epoch: int,
                         probabilities: bool = False):
        """((H,) mean loss per head over every validation row, block by block; (H, m, L) float32
        probabilities when asked, else None). ROLE's estimates of validation rows are their
        starting values without noise, LL-Cp corrects none, EM+APL has no pseudo-negatives there."""
        blocks, targets, bank, verified = validation
        total = np.zeros(len(self.head_keys))
        kept = np.empty((len(self.head_keys), targets.shape[1], targets.shape[2]),
                        np.float32) if probabilities else None
        for positions, x in blocks():
            observed = targets[inputs.target_of][:, positions].astype(np.float32)
            estimates = np.stack([role_start(observed[h], None) for h in self._role]) if self._role else \
                np.zeros((0, *observed.shape[1:]), np.float32)
            state = BatchState(tf.constant(estimates), tf.zeros((len(self._cp), *observed.shape[1:])),
                               tf.fill((len(self._apl), *observed.shape[1:]), -1.0),
                               None if verified is None else
                               tf.constant(verified[inputs.target_of][:, positions], tf.float32))
            logits = self._logits(tf.constant(x))
            mean, _ = self._head_losses(logits, tf.constant(observed), tf.constant(bank[:, positions]),
                                        epoch, state)
            total += mean.numpy() * len(positions)
            if kept is not None:
                kept[:, positions] = tf.sigmoid(logits).numpy()
        return total / targets.shape[1], kept

    def predict_proba(self, x: np.ndarray, batch_size: int = 4096) -> np.ndarray:
        """(H, n, L) float32 probabilities for features x (n, d), at most `batch_size` rows at a
        time and fewer when the stack's widest layer would hold more than PASS_BYTES."""
        rows = max(1, min(batch_size, PASS_BYTES // (4 * len(self.head_keys) * max(self.widths_))))
        parts = [tf.sigmoid(self._logits(tf.constant(x[i:i + rows], tf.float32))).numpy()
                 for i in range(0, len(x), rows)]
        return np.concatenate(parts, axis=1)


def make(head: str, head_keys, cfg_heads, seed: int) -> HeadStack:
    """The configured head type as a stack over `head_keys`."""
    return HeadStack(head_keys, hidden=network.hidden_layers(head, cfg_heads), optimizer=cfg_heads.optimizer,
                     learning_rate=cfg_heads.learning_rate, lr_decay=cfg_heads.lr_decay,
                     decay_steps=cfg_heads.decay_steps, epochs=cfg_heads.epochs,
                     patience=cfg_heads.patience, seed=seed)

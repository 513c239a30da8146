"""Finetune: train the backbone and a head end to end from the images, per fold x ratio x method.

The paper's alternative to frozen features. The network is [extract]'s backbone (restored from
the same checkpoint as extraction), its endpoint pooled as [extract] says, then [heads]' head
(`paper_mlp` hidden sigmoid layers or `linear`) giving L logits; the loss is the method's
loss (`heads.network.loss`) on the run's inputs from `heads.inputs`, as the heads get them.

- Trainable: the head, and the backbone from `finetune.trainable_from` up ("" = all of it),
  with separate learning rates. Batch norm runs in training mode in the trainable blocks while
  training (their moving statistics update) and in inference mode in frozen blocks and at
  evaluation.
  `batch_norm = "frozen"` keeps inference mode everywhere (for small per-device batches).
- Input: tf.data over the image files: decode, resize, random crop of `crop` of each side
  resized back, random flip; stateless, seeded by (seed, epoch, row), so a resumed epoch sees
  the same pixels. Each example carries its observed labels, negative and positive weights.
- Devices: every visible GPU through tf.distribute.MirroredStrategy (gradients summed across
  replicas, batch norm statistics synchronised on read); the CPU when there is none.
- A checkpoint after every epoch (the last two kept) under the run's `checkpoints/`; a rerun
  resumes from the last one. A complete run (predictions.h5) is skipped unless --force.

Writes each run through `heads.predictions` (`runs/<name>/[seed<s>/]finetune/fold<k>/<protocol>/
<method>/`: predictions.h5 with source "finetune", history.csv, timing.json).
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

import artifacts
from extract import checkpoints, images, preprocessing, registry
from extract.extraction import Plan, checkpoint_identity
from extract.slim_compat import slim
from heads import inputs as run_inputs
from heads import network as head_network
from heads import predictions
from heads.predictions import HeadRun
from runtime import cluster
from runtime.progress import bar
from runtime.tf_quiet import tf
from splits import store as splits_store

STAGE = "finetune"


def augment(image, seed, size: int, crop: float, flip: bool):
    """(size, size, 3) float32 -> the same shape: stateless random crop resized back, and flip."""
    if crop < 1:
        side = max(1, round(crop * size))
        image = tf.image.stateless_random_crop(image, [side, side, 3], seed=seed)
        image = tf.image.resize(image, [size, size], method="bilinear")
    if flip:
        image = tf.image.stateless_random_flip_left_right(image, seed=seed + 1)
    return image


def train_batches(paths, rows, targets, neg_weight, size, cfg, seed: int, epoch: int):
    """One epoch of (images, targets, neg_weight) numpy batches in a seeded order.

    `targets` and `neg_weight` are (n, L) over `rows`; unreadable images are dropped."""
    ft = cfg.finetune
    order = np.random.default_rng([seed, rows[0], epoch]).permutation(len(rows))
    data = tf.data.Dataset.from_tensor_slices((
        [paths[i] for i in rows[order]], rows[order].astype(np.int64), targets[order].astype(np.float32),
        neg_weight[order].astype(np.float32)))

    def load(path, row, y, nw):
        image = images.decode(path, size)
        pixels_seed = tf.stack([tf.constant(seed * 1000 + epoch, tf.int64), row])
        return augment(image, pixels_seed, size, ft.crop, ft.flip), y, nw

    data = data.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).ignore_errors()
    return data.batch(ft.batch_size).prefetch(2).as_numpy_iterator()


class Network:
    """The backbone + head graph, replicated over `devices` for training, in its own session."""

    def __init__(self, cfg, n_classes: int, head: run_inputs.HeadInputs, devices: list[str], seed: int,
                 backbone: Path):
        self.plan = Plan.from_config(cfg)
        self.spec = registry.get(self.plan.backbone)
        self.cfg, self.head, self.n_classes = cfg, head, n_classes
        size = self.plan.image_size
        self.graph = tf.Graph()
        with self.graph.as_default():
            tf.compat.v1.set_random_seed(seed)
            self.strategy = tf.distribute.MirroredStrategy(devices)
            n = self.strategy.num_replicas_in_sync
            self.inputs = [[tf.compat.v1.placeholder(tf.float32, shape, name=f"{name}_{r}")
                            for name,
                            shape in (("images", [None, size, size, 3]), ("targets", [None, n_classes]),
                                                ("neg_weight", [None, n_classes]), ("scale", []))]
                           for r in range(n)]
            with self.strategy.scope():
                self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="finetune_epoch")
                per_replica = [self.strategy.experimental_distribute_values_from_function(
                    lambda ctx, i=i: self.inputs[ctx.replica_id_in_sync_group][i]) for i in range(4)]
                loss, train_op = self.strategy.run(self._tower, per_replica)
                self.loss = self.strategy.reduce(tf.distribute.ReduceOp.SUM, loss, axis=None)
                self.train_op = self.strategy.group(train_op)
            self.eval_images = tf.compat.v1.placeholder(tf.float32, [None, size, size, 3], name="eval_images")
            with tf.compat.v1.variable_scope(tf.compat.v1.get_variable_scope(), reuse=True):
                self.probabilities = tf.sigmoid(self._forward(self.eval_images, training=False))
            names = checkpoints.check(self.spec, backbone, self.backbone_variables)
            tf.compat.v1.train.init_from_checkpoint(str(backbone), dict(zip(names, self.backbone_variables)))
            self.saver = tf.compat.v1.train.Saver(max_to_keep=2)
            self.session = tf.compat.v1.Session(graph=self.graph)

    def _blocks(self) -> list[str]:
        names = [registry.variable_name(v) for v in self.backbone_variables]
        return list(dict.fromkeys(name.split("/")[1] for name in names))

    def _forward(self, images, training: bool):
        """Logits (n, L); in training, batch norm trains in the blocks from `trainable_from` on."""
        ft = self.cfg.finetune
        started = [not ft.trainable_from]  # becomes True at the first layer of `trainable_from`

        def batch_norm(inputs, **params):  # replaces the backbone's normalizer: per-block mode
            scope = tf.compat.v1.get_variable_scope().name
            started[0] = started[0] or scope.startswith(f"{self.spec.scope}/{ft.trainable_from}")
            train_here = training and started[0] and ft.batch_norm == "train"
            return slim.batch_norm(inputs, **{**params, "is_training": train_here})

        net_in = preprocessing.get(self.plan.preprocessing)(images)
        scope = self.spec.arg_scope()
        normalised = [op for op in (slim.conv2d, slim.fully_connected)
                      if scope.get(slim.arg_scope_func_key(op), {}).get("normalizer_fn") is slim.batch_norm]
        with slim.arg_scope(scope), slim.arg_scope(normalised, normalizer_fn=batch_norm):
            _, end_points = self.spec.builder(net_in, is_training=training)
        net = self.plan.pooled(end_points)
        net = tf.reshape(net, [-1, int(np.prod(net.shape.as_list()[1:]))])
        hidden = head_network.hidden_layers(self.cfg.heads.head, self.cfg.heads)
        weights_init = tf.compat.v1.truncated_normal_initializer(stddev=head_network.WEIGHT_STD)
        init = {"weights_initializer": weights_init,
                "biases_initializer": tf.compat.v1.constant_initializer(head_network.BIAS_INIT)}
        with tf.compat.v1.variable_scope("Head"):
            for k, width in enumerate(hidden):
                net = slim.fully_connected(net, width, activation_fn=tf.sigmoid,
                                           scope=f"hidden{k + 1}", **init)
            return slim.fully_connected(net, self.n_classes, activation_fn=None, scope="logits", **init)

    def _tower(self, images, targets, neg_weight, scale):
        """One replica: the method's loss on its share of the batch, weighted by the share's
        entries x `scale` (1 / the global batch's entries): summed over replicas, the global
        mean. Batch-level terms (EPR's, the large-loss selection) see the replica's share."""
        ft = self.cfg.finetune
        updates = len(tf.compat.v1.get_collection(tf.compat.v1.GraphKeys.UPDATE_OPS))
        logits = self._forward(images, training=True)
        self.backbone_variables = registry.backbone_variables(self.spec)  # before any optimiser slot
        mean = head_network.loss(self.head, logits, targets, neg_weight, self.epoch + 1)
        loss = mean * tf.cast(tf.size(targets), tf.float32) * scale
        trainable = self._trainable()
        head = [v for v in tf.compat.v1.trainable_variables()
                if registry.variable_name(v).startswith("Head/")]
        new_updates = tf.compat.v1.get_collection(tf.compat.v1.GraphKeys.UPDATE_OPS)[updates:]
        with tf.control_dependencies(new_updates):
            steps = [head_network.v1_optimizer(ft.optimizer, ft.head_lr).minimize(loss, var_list=head)]
            if trainable:
                steps.append(head_network.v1_optimizer(ft.optimizer, ft.backbone_lr).minimize(loss,
                                                                                              var_list=trainable))
        return loss, tf.group(*steps)

    def _trainable(self) -> list:
        """Backbone variables from the block `trainable_from` on (creation order is network order)."""
        ft = self.cfg.finetune
        variables = [v for v in self.backbone_variables if v.trainable]
        if not ft.trainable_from:
            return variables
        prefix = f"{self.spec.scope}/{ft.trainable_from}"
        first = next((i for i, v in enumerate(variables) if registry.variable_name(v).startswith(prefix)),
                     None)
        if first is None:
            raise ValueError(f"{self.cfg.source}: finetune.trainable_from = {ft.trainable_from!r} is no "
                             "block of "
                             f"{self.spec.name}; blocks: {', '.join(self._blocks())}")
        return variables[first:]

    def start(self, checkpoint_dir: Path) -> int:
        """Resume from the run's last checkpoint, else start from the backbone checkpoint (the
        backbone's initialisers read it) and fresh head weights; return the epochs done."""
        with self.graph.as_default():
            last = tf.train.latest_checkpoint(str(checkpoint_dir))
            if last:
                self.saver.restore(self.session, last)
                return int(self.session.run(self.epoch))
            self.session.run(tf.compat.v1.global_variables_initializer())
            return 0

    def save(self, checkpoint_dir: Path, epoch: int) -> None:
        with self.graph.as_default():
            self.session.run(self.epoch.assign(epoch))
            checkpoint_dir.mkdir(parents=True, exist_ok=True)
            self.saver.save(self.session, str(checkpoint_dir / "epoch"), global_step=epoch,
                            write_meta_graph=False)

    def step(self, batch) -> float:
        """One training step on a global batch, split evenly over the replicas."""
        n = len(self.inputs)
        total = batch[1].size
        feed = {}
        for placeholders, *parts in zip(self.inputs, *(np.array_split(b, n) for b in batch)):
            feed.update(zip(placeholders, parts + [1.0 / total]))
        return float(self.session.run([self.loss, self.train_op], feed)[0])

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(self.probabilities, {self.eval_images: x})


def evaluate(network: Network, paths, rows: np.ndarray, size: int, batch_size: int):
    """(probabilities (n_read, L), rows read): batch norm frozen; unreadable images left out."""
    parts, kept = [], []
    chunked = [(k, rows[i:i + batch_size]) for k, i in enumerate(range(0, len(rows), batch_size))]
    for (_, chunk_rows), (_, batch, valid, _) in zip(chunked, images.chunks(chunked, paths, size)):
        parts.append(network.predict(batch[valid]))
        kept.append(chunk_rows[valid])
    return np.concatenate(parts), np.concatenate(kept)


def visible_devices() -> list[str]:
    gpus = tf.config.list_logical_devices("GPU")
    return [d.name for d in gpus] if gpus else ["/cpu:0"]


def run_provenance(cfg, run: HeadRun, sf) -> dict:
    """A finetuned run's provenance (`heads.predictions.finetune_provenance`), the checkpoint
    identified as for extraction."""
    _, identity = checkpoint_identity(cfg, registry.get(cfg.extract.backbone))
    return predictions.finetune_provenance(cfg, run, sf.fingerprint, identity)


class RunState(NamedTuple):
    """A finetune run's directory, provenance and epochs done so far."""
    path: Path
    recipe: dict
    history: list[str]  # "epoch,train_loss" lines of the epochs done


def prepare(cfg, run: HeadRun, sf, force: bool = False) -> tuple[Path, dict]:
    """(the run's directory, its provenance), recorded in started.json: a rerun resumes only
    partial state that was made the same way; `force` starts afresh (the partial state goes, a
    complete predictions.h5 stays until the new one replaces it)."""
    recipe = run_provenance(cfg, run, sf)
    path = predictions.run_dir(cfg, run, STAGE)
    started = path / "started.json"
    if force:
        artifacts.remove(path / "checkpoints")
        artifacts.remove(started)
    if started.exists() and artifacts.recorded(started)[1] != json.loads(json.dumps(recipe, default=str)):
        raise ValueError(artifacts.stale_message(started,
                                                 artifacts.changes(artifacts.recorded(started)[1], recipe)))
    path.mkdir(parents=True, exist_ok=True)
    artifacts.record(started, recipe)
    return path, recipe


def finetune_run(cfg, run: HeadRun, on_epoch=None, devices=None, force: bool = False) -> dict:
    """Train, checkpoint each epoch, evaluate and write one run; `on_epoch(epoch)` after each.
    A run with checkpoints of the same provenance resumes after its last epoch (unless `force`).
    devices: the replicas' devices (default: every GPU, else the CPU). A task (`runtime.cluster`)."""
    # setup: the run directory, resumed only when its partial state was made the same way
    tf.config.experimental.enable_op_determinism()
    sf = splits_store.load(splits_store.path(cfg, run.seed))
    path, recipe = prepare(cfg, run, sf, force)

    # data: this fold's rows, the run's observed labels and inputs (as the heads get them)
    train, validation_rows = sf.train_rows(run.fold), np.flatnonzero(sf.validation(run.fold))
    observed = sf.observed(run.fold, run.protocol)
    head = run_inputs.head_inputs(cfg, sf, run.fold, run.protocol, run.method, train,
                                  validation_rows, observed)
    neg_weight = head.negative_weights if head.negative_weights is not None else \
        np.ones((len(train), len(sf.classes)), np.float32)

    # model: restored backbone + fresh head, or the run's last checkpoint
    spec = registry.get(cfg.extract.backbone)
    backbone = checkpoints.resolve(spec, cfg.extract.checkpoint, cfg.extract.cache_dir)
    devices = devices or visible_devices()
    network = Network(cfg, len(sf.classes), head, devices, run.seed + run.fold, backbone)
    done = network.start(path / "checkpoints")
    history = (path / "history.csv").read_text().splitlines()[1:1 + done] if done else []
    steps = -(-len(train) // cfg.finetune.batch_size)
    print(f"finetune {run.label}: {network.plan.backbone} + {cfg.heads.head} on {len(network.inputs)} "
          f"replica(s) ({', '.join(devices)}); {len(train)} training images, {cfg.finetune.epochs} epochs of "
          f"{steps} steps" + (f"; resuming after epoch {done}" if done else ""))

    # loop: an epoch, then its checkpoint
    start = time.perf_counter()
    state = RunState(path, recipe, history)
    train_epochs(cfg, run, network, sf, state, (train, observed[train], neg_weight), done, steps, on_epoch)
    seconds = time.perf_counter() - start

    # save: predictions of the test (and validation) rows in the heads' format
    save(cfg, run, network, sf, state, observed, validation_rows)
    timing = {"train_seconds_this_session": seconds, "epochs": cfg.finetune.epochs,
              "resumed_after_epoch": done,
              "steps_per_epoch": steps, "train_rows": len(train),
              "test_rows": int((sf.test_fold == run.fold).sum())}
    artifacts.write_text(path / "timing.json", json.dumps(timing))
    network.session.close()
    return {"run": run.label, **timing}


def train_epochs(cfg, run, network: Network, sf, state: RunState, data, done: int, steps: int,
                 on_epoch) -> None:
    """Epochs done+1 .. [finetune] epochs over `data` (rows, targets, negative weights), each
    followed by its checkpoint and its line of history.csv."""
    ft = cfg.finetune
    rows, targets, neg_weight = data
    for epoch in range(done, ft.epochs):
        progress = bar(steps, f"epoch {epoch + 1}/{ft.epochs}", "step")
        total, count = 0.0, 0
        for batch in train_batches(sf.image_paths, rows, targets, neg_weight, network.plan.image_size, cfg,
                                   run.seed, epoch):
            total += network.step(batch) * len(batch[0])
            count += len(batch[0])
            progress.update()
        progress.close()
        network.save(state.path / "checkpoints", epoch + 1)
        state.history.append(f"{epoch + 1},{total / max(count, 1):.6f}")
        artifacts.write_text(state.path / "history.csv",
                             "epoch,train_loss\n" + "\n".join(state.history) + "\n")
        if on_epoch:
            on_epoch(epoch + 1)


def save(cfg, run, network: Network, sf, state: RunState, observed: np.ndarray,
         validation_rows: np.ndarray) -> None:
    """predictions.h5 of the test rows (and the validation rows' observed labels and
    probabilities), in the heads' format."""
    size, batch_size = network.plan.image_size, cfg.finetune.batch_size
    test = np.flatnonzero(sf.test_fold == run.fold)
    probabilities, kept = evaluate(network, sf.image_paths, test, size, batch_size)
    validation = None
    if len(validation_rows):
        val_probabilities, val_kept = evaluate(network, sf.image_paths, validation_rows, size, batch_size)
        validation = predictions.ValidationRows(sf.ids[val_kept], observed[val_kept], val_probabilities)
    attrs = predictions.run_attrs(cfg, run, STAGE, f"{network.plan.backbone}+{cfg.heads.head}",
                                  skipped_invalid=len(test) - len(kept),
                                  trainable_from=cfg.finetune.trainable_from or "all",
                                  replicas=len(network.inputs))
    predictions.write(state.path, ids=sf.ids[kept], labels=sf.labels[kept], probabilities=probabilities,
                      attrs=attrs, provenance=state.recipe, validation=validation)


def check_two_state(cfg, sf, protocols) -> None:
    """ValueError for what finetune does not train: verified negatives (partial-label protocols,
    three-state data) and pseudo-positives from a score file, which its input pipeline does not
    carry; train those as heads."""
    partial = sorted(p for p in protocols if splits_store.protocol_kind(p)[0] in splits_store.PARTIAL_KINDS)
    if partial or sf.known is not None:
        raise ValueError(f"{cfg.source}: finetune trains two-state labels; "
                         + (f"protocol {partial[0]} has verified negatives" if partial
                            else f"{sf.path} has unknown labels")
                         + ": set finetune.ratios to the ratios, or train these as heads")
    pseudo = [m for m in cfg.finetune.methods if run_inputs.needs(m).pseudo]
    if pseudo:
        raise ValueError(f"{cfg.source}: finetune.methods holds {pseudo[0]!r}, whose pseudo-positives "
                         "finetune does "
                         "not carry; train it as a head")


def finetune(cfg, only: dict | None = None, force: bool = False) -> list[dict]:
    """Finetune every run of the [finetune] grid (or the `only` part of it): one task per run."""
    run_inputs.check_stateless(cfg.finetune.methods, cfg.source, "finetune.methods")
    splits_files = {seed: splits_store.load(splits_store.path(cfg, seed)) for seed in cfg.finetune.seeds
                    or cfg.seeds}
    for sf in splits_files.values():
        run_inputs.check_truth(cfg.finetune.methods, sf.ground_truth, sf.path)
    first = next(iter(splits_files.values()))
    two_state = [p for p in first.protocols
                 if splits_store.protocol_kind(p)[0] not in splits_store.PARTIAL_KINDS]
    runs = predictions.select(predictions.grid(cfg, STAGE, first.n_folds, two_state), only,
                              f"[finetune] of {cfg.source}")
    check_two_state(cfg, first, {run.protocol for run in runs})

    def provenance(run):
        return run_provenance(cfg, run, splits_files[run.seed])

    with predictions.claimed(cfg, runs, provenance, force, STAGE) as todo:
        if not todo:
            return []
        artifacts.writable(cfg.run_dir)
        print(f"finetune: {len(todo)} run(s): " + "; ".join(run.label for run in todo))
        tasks = [cluster.Task(f"finetune {run.label}", finetune_run, (cfg, run, None, None, force))
                 for run in todo]
        return cluster.run(cfg, tasks)

"""`python -m finetune train --final`: the final model trained end to end, backbone and head.

As `python -m model fit` (`model.final`) but from the images: [model] method (or "best") on
every labelled row, a stratified [model] validation share held out for the thresholds, the
[finetune] recipe (its epochs, rates, augmentation). The model directory (`model.directory`) then
carries the trained backbone (`backbone/model.ckpt`), so `model predict` and `model export` run
the finetuned network; it holds no out-of-fold predictions (K more end-to-end trainings):
`model suggest` wants a model from `model fit`. Its working state (a checkpoint per epoch, so a
rerun resumes; history.csv) lives under runs/<name>/finetune/final/<method>/.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

import artifacts
import configs
import metrics
from extract import checkpoints, registry
from extract.extraction import checkpoint_identity
from heads import inputs as run_inputs
from heads import methods
from heads.predictions import HeadRun, finetune_provenance
from model import directory
from model import final as model_final
from runtime.tf_quiet import tf
from splits import store as splits_store

from . import train


def provenance(cfg, method: str, rows, checkpoint: str) -> dict:
    """What a finetuned final model is made from: a study run's recipe (`finetune_provenance`),
    [model], the rows."""
    recipe = finetune_provenance(cfg, HeadRun(cfg.seeds[0], 0, rows.protocol, method),
                                 rows.fingerprint, checkpoint)
    return {**recipe, "fold": "all", **configs.section(cfg, "model", exclude=("dir", "method", "folds"))}


def final(cfg, force: bool = False, on_epoch=None) -> Path:
    """Write the config's model directory from an end-to-end training (module docstring)."""
    # setup: the method, the rows (no out-of-fold folds), the run's inputs as the heads get them
    model_final.check(cfg)
    method, why = model_final.resolve_method(cfg)
    run_inputs.check_stateless([method], cfg.source, "model.method")
    sf = splits_store.load(splits_store.path(cfg))
    train.check_two_state(cfg, sf, set())
    if run_inputs.needs(method).pseudo:
        raise ValueError(f"{cfg.source}: model.method = {method!r} takes pseudo-positives from a score file, "
                         "which "
                         "finetune does not carry; fit it as a head (python -m model fit)")
    rows = model_final.labelled_rows(cfg, sf, n_folds=0)
    run = HeadRun(cfg.seeds[0], rows.final_fold, rows.protocol, method)
    validation = np.flatnonzero(rows.validation(run.fold))
    train_rows = np.flatnonzero(~rows.validation(run.fold))
    head = run_inputs.head_inputs(cfg, rows, run.fold, run.protocol, method, train_rows, validation)
    _, identity = checkpoint_identity(cfg, registry.get(cfg.extract.backbone))
    recipe = provenance(cfg, method, rows, identity)
    out = cfg.model_dir
    with artifacts.claim(out):
        if not artifacts.must_make(directory.manifest_path(out), recipe, force):
            print(f"{out}: already done (use --force to redo)")
            return out
        # train: the [finetune] recipe over every labelled row but the validation share, resumable
        network, work = _trained(cfg, run, sf, rows, head, train_rows, recipe, force, on_epoch)
        # save: thresholds on the validation rows, the head's weights and the trained backbone
        probabilities, kept = train.evaluate(network, sf.image_paths, validation, network.plan.image_size,
                                             cfg.finetune.batch_size)
        observed = rows.trained_labels[kept]
        prefix = _save_backbone(network, work)
        weights, biases = _head_weights(network)
        meta = _manifest(cfg, method, why, network, rows, run, observed, probabilities, weights, prefix,
                         len(train_rows))
        directory.write(out, meta, weights, biases, recipe, backbone=prefix)
        network.session.close()
    print(f"{out}: {meta['display']} finetuned end to end ({cfg.finetune.epochs} epochs), thresholds: global "
          f"{meta['thresholds']['global']:.3f}")
    return out


def _trained(cfg, run, sf, rows, head, train_rows, recipe, force, on_epoch):
    """The network after [finetune] epochs over `train_rows` (resumed from the work directory's
    last epoch when it was started the same way), and that directory."""
    work = cfg.run_dir / "finetune" / "final" / run.method
    if force:
        artifacts.remove(work)
    started = work / "started.json"
    if started.exists() and artifacts.recorded(started)[1] != json.loads(json.dumps(recipe, default=str)):
        raise ValueError(artifacts.stale_message(started,
                                                 artifacts.changes(artifacts.recorded(started)[1], recipe)))
    work.mkdir(parents=True, exist_ok=True)
    artifacts.record(started, recipe)
    spec = registry.get(cfg.extract.backbone)
    backbone = checkpoints.resolve(spec, cfg.extract.checkpoint, cfg.extract.cache_dir)
    network = train.Network(cfg, len(sf.classes), head, train.visible_devices(),
                            run.seed + run.fold, backbone)
    done = network.start(work / "checkpoints")
    history = (work / "history.csv").read_text().splitlines()[1:1 + done] if done else []
    steps = -(-len(train_rows) // cfg.finetune.batch_size)
    neg_weight = head.negative_weights if head.negative_weights is not None else \
        np.ones((len(train_rows), len(sf.classes)), np.float32)
    print(f"final model, finetuned: {network.plan.backbone} + {cfg.heads.head}, {run.method}; "
          f"{len(train_rows)} "
          f"training images, {cfg.finetune.epochs} epochs of {steps} steps"
          + (f"; resuming after {done}" if done else ""))
    start = time.perf_counter()
    state = train.RunState(work, recipe, history)
    data = (train_rows, rows.trained_labels[train_rows], neg_weight)
    train.train_epochs(cfg, run, network, sf, state, data, done, steps, on_epoch)
    artifacts.write_text(work / "timing.json",
                         json.dumps({"train_seconds_this_session": time.perf_counter() - start,
                                                           "resumed_after_epoch": done}))
    return network, work


def _save_backbone(network, work: Path) -> Path:
    """The trained backbone's variables, named as its checkpoint's, at <work>/backbone/model.ckpt
    (saved from a graph of plain variables: a replicated one's cannot be saved by name)."""
    prefix = work / "backbone" / "model.ckpt"
    prefix.parent.mkdir(parents=True, exist_ok=True)
    values = network.session.run({registry.variable_name(v): v for v in network.backbone_variables})
    with tf.Graph().as_default() as graph:
        stored = [tf.compat.v1.Variable(value, name=name) for name, value in values.items()]
        with tf.compat.v1.Session(graph=graph) as session:
            session.run(tf.compat.v1.variables_initializer(stored))
            tf.compat.v1.train.Saver(stored).save(session, str(prefix), write_meta_graph=False)
    return prefix


def _head_weights(network) -> tuple[list, list]:
    """The head's (weights, biases) per layer, hidden layers first, then the logits."""
    with network.graph.as_default():
        head = {registry.variable_name(v): v for v in tf.compat.v1.global_variables()
                if registry.variable_name(v).startswith("Head/")}
    layers = sorted({name.split("/")[1] for name in head}, key=lambda s: (s == "logits", s))
    values = network.session.run({name: head[name] for name in head})
    return [values[f"Head/{layer}/weights"] for layer in layers], [values[f"Head/{layer}/biases"]
                                                                   for layer in layers]


def _manifest(cfg, method, why, network, rows, run, observed, probabilities, weights, prefix,
              n_train) -> dict:
    plan = network.plan
    return {
        "method": method, "display": methods.display_name(method), "chosen_by": why,
        "params": methods.configured(cfg, method), "learning_rate": cfg.finetune.head_lr,
        "epoch": cfg.finetune.epochs,
        "head": {"type": cfg.heads.head, "hidden": [int(w.shape[1]) for w in weights[:-1]],
                 "activation": "sigmoid"},
        "feat_dim": int(weights[0].shape[0]), "classes": list(rows.classes),
        "thresholds": {"global": metrics.best_global_threshold(observed, probabilities),
                       "class": metrics.best_f1_thresholds(observed, probabilities).tolist()},
        "features": {"backbone": plan.backbone, "endpoint": plan.endpoint, "image_size": plan.image_size,
                     "preprocessing": plan.preprocessing, "pooling": plan.pooling, "dtype": "float32",
                     "checkpoint_sha256": checkpoints.sha256(prefix), "checkpoint": "finetuned: backbone/"},
        "training": {"rows": n_train, "validation_rows": len(observed), "protocol": run.protocol,
                     "hide": cfg.model.hide,
                     "fold": "all",
                     "missing_rate": run_inputs.missing_rate(cfg, rows, run.fold, run.protocol),
                     "seed": run.seed, "finetuned": True,
                     "trainable_from": cfg.finetune.trainable_from or "all"},
    }

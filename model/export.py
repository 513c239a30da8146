"""`python -m model export --model DIR`: a model as a TensorFlow SavedModel for other tools.

The SavedModel (default <model>/saved_model) needs TensorFlow only, not this project:

    loaded = tf.saved_model.load(PATH)
    loaded.signatures["images"](images=batch)["probabilities"]      # (n, h, w, 3) float32 RGB
    loaded.signatures["features"](features=rows)["probabilities"]   # (n, feat_dim) float32

`images`: RGB pixel values in [0, 255], any height and width (resized inside with a plain
bilinear resize to the model's image size, as `extract.images` does; decode the files yourself),
then the backbone the model expects (its checkpoint, or a finetuned model's own), its endpoint
pooled as the model's features were, rounded to the feature store's dtype as the model's
training features were, and the head. `features`: the head alone. `serving_default` is
`images` (`features`, the only one, for a model whose features no backbone of this project made:
imported ones, which have no network to run).
Probabilities are the sigmoid of the logits, columns in the order of model.json's `classes`.
Written under a temporary name and renamed into place once complete. `--out` is a new path, an
empty folder, or an earlier export (a folder holding this project's `cbwce_model.json` beside
`saved_model.pb`), which is replaced only once the new one is complete; anything else there
(your files, a file, the model directory or a folder holding it, `.`) is refused, never
deleted or written into. The model is claimed for reading meanwhile (`model.directory.reading`),
the target for writing (`artifacts.claim`).
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

import artifacts
from runtime.tf_quiet import tf

from . import directory
from .predict import checkpoint_for

EXPORT = "saved_model"
MARKER = "cbwce_model.json"  # what an export of this project holds beside saved_model.pb


def _head(x, variables):
    """The head on (n, d) features: sigmoid hidden layers, sigmoid of the logits."""
    net = x
    for layer, (w, b) in enumerate(variables):
        net = tf.matmul(net, w) + b
        net = tf.sigmoid(net)  # hidden layers, and the probabilities after the last
    return net


def _images_branch(model: directory.Model, images):
    """(n, h, w, 3) [0, 255] -> (n, feat_dim) features as the model's store held them."""
    from extract import preprocessing, registry
    from extract.extraction import Plan

    contract = model.features
    plan = Plan(contract["backbone"], contract["endpoint"], int(contract["image_size"]),
                contract["preprocessing"],
                contract["pooling"], contract.get("dtype", "float32"))
    resized = tf.image.resize(images, [plan.image_size, plan.image_size], method="bilinear")
    _, end_points = registry.get(plan.backbone).build(preprocessing.get(plan.preprocessing)(resized),
                                                      is_training=False)
    net = plan.pooled(end_points)
    flat = tf.reshape(net, [-1, int(np.prod(net.shape.as_list()[1:]))])
    return tf.cast(tf.cast(flat, plan.dtype), tf.float32) if plan.dtype != "float32" else flat


def check_target(target: Path, model: directory.Model) -> None:
    """ValueError when `target` may not take the SavedModel (module docstring): the model
    directory, the current directory or a folder holding either, or an existing path that is
    neither an empty folder nor an earlier export."""
    where = target.resolve()
    for kept, what in ((model.path.resolve(), f"the model directory {model.path}"),
                       (Path.cwd().resolve(), "the current directory")):
        if where == kept or where in kept.parents:
            raise ValueError(f"--out {target} is {what} or holds it; the export goes beside or inside the "
                             f"model (default {model.path / EXPORT}): give a new path")
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise ValueError(f"--out {target} exists and is not a folder; the export never replaces your files: "
                         "give a new path")
    if target.is_dir() and any(target.iterdir()) and not is_export(target):
        raise ValueError(f"--out {target} is a folder that holds other files than an export of this project "
                         f"(no {MARKER} beside saved_model.pb); the export never deletes or writes into your "
                         "files: give a new path, or an empty folder")


def is_export(folder: Path) -> bool:
    """Whether `folder` is an earlier export of this project (its marker beside saved_model.pb)."""
    try:
        marker = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(marker, dict) and "fingerprint" in marker and (folder / "saved_model.pb").is_file()


def export(model_path, out: str = "", checkpoint: str = "") -> Path:
    """Write the model's SavedModel (module docstring) at `out` (default <model>/saved_model)."""
    with directory.reading(model_path):
        model = directory.load(model_path)
        target = Path(out) if out else model.path / EXPORT
        check_target(target, model)
        artifacts.writable(target.parent)
        with artifacts.claim(target):
            signatures = _written(model, target, checkpoint)
    print(f"{target}: SavedModel with signature(s) {', '.join(sorted(signatures))} -> probabilities over "
          f"{len(model.classes)} classes")
    return target


def _written(model: directory.Model, target: Path, checkpoint: str) -> dict:
    """Build the SavedModel under a temporary name beside `target` and rename it into place
    (an earlier export replaced only then); its signatures."""
    from extract import checkpoints, registry

    with_images = model.from_backbone
    prefix = checkpoint_for(model, checkpoint)[0] if with_images else None
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        with tf.Graph().as_default() as graph:
            tf.compat.v1.set_random_seed(0)
            features = tf.compat.v1.placeholder(tf.float32, [None, model.feat_dim], name="features")
            variables = [(tf.compat.v1.get_variable(f"head/w{k}", w.shape, trainable=False),
                          tf.compat.v1.get_variable(f"head/b{k}", b.shape, trainable=False))
                         for k, (w, b) in enumerate(zip(model.weights, model.biases))]
            signatures = {"features": ({"features": features}, _head(features, variables))}
            if with_images:
                images = tf.compat.v1.placeholder(tf.float32, [None, None, None, 3], name="images")
                signatures["images"] = ({"images": images}, _head(_images_branch(model, images), variables))
            with tf.compat.v1.Session(graph=graph) as session:
                session.run(tf.compat.v1.global_variables_initializer())
                if with_images:
                    checkpoints.restore(session, registry.get(model.features["backbone"]), prefix)
                for (w, b), (w_value, b_value) in zip(variables, zip(model.weights, model.biases)):
                    w.load(w_value, session)
                    b.load(b_value, session)
                _save(session, staging / EXPORT, signatures, "images" if with_images else "features")
        artifacts.write_text(staging / EXPORT / MARKER, json.dumps(
            {"model": str(model.path), "fingerprint": model.meta["fingerprint"], "classes": model.classes,
             "signatures": sorted(signatures)}, indent=1))
        artifacts.replace_directory(staging / EXPORT, target)
    except OSError as err:
        raise artifacts.write_failed(target, err) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return signatures


def _save(session, path: Path, signatures: dict, default: str) -> None:
    """A TF1 SavedModel of `signatures` ({name: (inputs, probabilities)}), `default` as serving_default."""
    builder = tf.compat.v1.saved_model.Builder(str(path))
    defs = {name: tf.compat.v1.saved_model.predict_signature_def(inputs, {"probabilities": outputs})
            for name, (inputs, outputs) in signatures.items()}
    defs["serving_default"] = defs[default]
    builder.add_meta_graph_and_variables(session, [tf.saved_model.SERVING], signature_def_map=defs)
    builder.save()

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
`images` (`features` for a model trained on imported features, which has no backbone).
Probabilities are the sigmoid of the logits, columns in the order of model.json's `classes`.
Written under a temporary name and renamed into place once complete.
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


def export(model_path, out: str = "", checkpoint: str = "") -> Path:
    """Write the model's SavedModel (module docstring) at `out` (default <model>/saved_model)."""
    from extract import checkpoints, registry

    model = directory.load(model_path)
    target = Path(out) if out else model.path / EXPORT
    with_images = model.features.get("backbone") != "imported"
    prefix = checkpoint_for(model, checkpoint)[0] if with_images else None
    artifacts.writable(target.parent)
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
        artifacts.write_text(staging / EXPORT / "cbwce_model.json", json.dumps(
            {"model": str(model.path), "fingerprint": model.meta["fingerprint"], "classes": model.classes,
             "signatures": sorted(signatures)}, indent=1))
        artifacts.remove(target)
        (staging / EXPORT).rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    print(f"{target}: SavedModel with signature(s) {', '.join(sorted(signatures))} -> probabilities over "
          f"{len(model.classes)} classes")
    return target


def _save(session, path: Path, signatures: dict, default: str) -> None:
    """A TF1 SavedModel of `signatures` ({name: (inputs, probabilities)}), `default` as serving_default."""
    builder = tf.compat.v1.saved_model.Builder(str(path))
    defs = {name: tf.compat.v1.saved_model.predict_signature_def(inputs, {"probabilities": outputs})
            for name, (inputs, outputs) in signatures.items()}
    defs["serving_default"] = defs[default]
    builder.add_meta_graph_and_variables(session, [tf.saved_model.SERVING], signature_def_map=defs)
    builder.save()

"""What heads and finetune share of a head: its layers, initialisation, optimisers and loss.

    paper_mlp: d -> hidden sigmoid layers ([heads] hidden; the paper's 2048, 1024, 256) -> L logits
    linear:    d -> L logits (logistic regression)
Weights truncated normal (std 0.1), biases 0.1, as the paper's notebooks. `heads.models`
builds H of these as one stack on stored features; `extract.finetune` builds one on top of
the backbone. `OPTIMIZERS` holds each optimiser's constants for both; `loss` is one head's
method loss inside a graph, from its `heads.inputs.HeadInputs`.
"""
from __future__ import annotations

import numpy as np

from runtime.tf_quiet import tf

from . import losses
from .inputs import HeadInputs, given_constants

WEIGHT_STD, BIAS_INIT = 0.1, 0.1
HEAD_TYPES = ("paper_mlp", "linear")

# Adam's epsilon: heads run TF's fused kernel with Keras' 1e-7; finetune's runs were made with
# tf.compat.v1.train.AdamOptimizer's 1e-8 and keep it, so its published numbers stand.
OPTIMIZERS = {
    "adadelta": {"rho": 0.95, "epsilon": 1e-8},  # TF1 AdadeltaOptimizer's defaults, as the paper's notebooks
    "adam": {"beta1": 0.9, "beta2": 0.999, "epsilon": 1e-7, "finetune_epsilon": 1e-8},
    "momentum": {"momentum": 0.9},
    "sgd": {},
}


def hidden_layers(head: str, cfg_heads) -> tuple[int, ...]:
    """The hidden widths of head type `head` ([heads] hidden for paper_mlp, none for linear)."""
    if head not in HEAD_TYPES:
        raise ValueError(f"unknown head {head!r}; known: {', '.join(HEAD_TYPES)}")
    return tuple(cfg_heads.hidden) if head == "paper_mlp" else ()


def v1_optimizer(name: str, learning_rate):
    """A tf.compat.v1 optimiser of `OPTIMIZERS` (graph mode: finetune)."""
    constants = OPTIMIZERS[name]
    if name == "adam":
        return tf.compat.v1.train.AdamOptimizer(learning_rate, constants["beta1"], constants["beta2"],
                                                constants["finetune_epsilon"])
    if name == "momentum":
        return tf.compat.v1.train.MomentumOptimizer(learning_rate, constants["momentum"])
    if name == "adadelta":
        return tf.compat.v1.train.AdadeltaOptimizer(learning_rate, constants["rho"], constants["epsilon"])
    return tf.compat.v1.train.GradientDescentOptimizer(learning_rate)


def loss(head: HeadInputs, logits, targets, neg_weight, epoch):
    """One head's mean batch loss (scalar): logits and 0/1 targets (n, L), its negative weights
    (n, L) of the batch's rows (read only when the method has some), epoch 1-based."""
    constants = {name: tf.constant(np.asarray(value, np.float32)[None])
                 for name, value in given_constants(head.needs, head.constants).items()}
    inputs = losses.Inputs(neg_weight=neg_weight[None] if head.needs.negatives else None, epoch=epoch,
                           **constants)
    return losses.terms(head.needs.loss, logits[None], targets[None], inputs, head.params).loss[0]

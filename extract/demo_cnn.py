"""demo_cnn: a small batch-normed Slim CNN for the embedded synthetic set (96 x 96 input).

Four conv + max-pool stages (16, 32, 64, 128 channels). End points: conv1..conv4, pool1..pool4
(`pool4`: (batch, 6, 6, 128) at 96 x 96, the default feature endpoint: 4,608 values) and,
with `num_classes`, `Logits` (batch, num_classes) from a global average pool of `pool4`.
"""
from __future__ import annotations

from runtime.tf_quiet import tf

from .slim_compat import slim

DEPTHS = (16, 32, 64, 128)


def demo_cnn(images, num_classes=None, is_training=False, scope="DemoCNN"):
    end_points = {}
    with (tf.compat.v1.variable_scope(scope, "DemoCNN", [images]),
          slim.arg_scope([slim.batch_norm], is_training=is_training)):
        net = images
        for k, depth in enumerate(DEPTHS, start=1):
            net = slim.conv2d(net, depth, 3, scope=f"conv{k}")
            end_points[f"conv{k}"] = net
            net = slim.max_pool2d(net, 2, stride=2, scope=f"pool{k}")
            end_points[f"pool{k}"] = net
        if num_classes:
            with tf.compat.v1.variable_scope("Logits"):
                pooled = tf.reduce_mean(net, axis=[1, 2])
                net = slim.fully_connected(pooled, num_classes, activation_fn=None, scope="Logits")
            end_points["Logits"] = net
    return net, end_points


def demo_cnn_arg_scope(weight_decay=1e-4):
    with slim.arg_scope([slim.conv2d], activation_fn=tf.nn.relu, normalizer_fn=slim.batch_norm,
                        weights_regularizer=slim.l2_regularizer(weight_decay),
                        normalizer_params={"decay": 0.99, "epsilon": 1e-3, "fused": None}) as scope:
        return scope

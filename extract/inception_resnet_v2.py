"""Inception-ResNet-v2 (Szegedy et al., 2016) as a TF-Slim graph.

Variable names and shapes equal the official Slim checkpoint
`inception_resnet_v2_2016_08_30.ckpt` (908 variables at 299 x 299 with 1001 classes), so it
restores from that file. With `num_classes=None` only the backbone is built (no logits, no
auxiliary head) and `end_points` maps every block name to its activation, e.g.

    Conv2d_7b_1x1: (batch, 5, 5, 1536) at 224 x 224, (batch, 8, 8, 1536) at 299 x 299.
"""
from __future__ import annotations

from runtime.tf_quiet import tf

from .slim_compat import slim

relu = tf.nn.relu


def _residual(net, branches, scale, activation_fn, scope):
    """Concatenate branches, project back to the input depth, add scaled, activate."""
    mixed = tf.concat(branches, axis=3)
    up = slim.conv2d(mixed, net.get_shape()[3], 1, normalizer_fn=None, activation_fn=None,
                     scope="Conv2d_1x1")
    net = net + scale * up
    return activation_fn(net) if activation_fn else net


def block35(net, scale=0.17, activation_fn=relu, scope=None):
    """35 x 35 residual block (Repeat/block35_k)."""
    with tf.compat.v1.variable_scope(scope, "Block35", [net]):
        with tf.compat.v1.variable_scope("Branch_0"):
            b0 = slim.conv2d(net, 32, 1, scope="Conv2d_1x1")
        with tf.compat.v1.variable_scope("Branch_1"):
            b1 = slim.conv2d(net, 32, 1, scope="Conv2d_0a_1x1")
            b1 = slim.conv2d(b1, 32, 3, scope="Conv2d_0b_3x3")
        with tf.compat.v1.variable_scope("Branch_2"):
            b2 = slim.conv2d(net, 32, 1, scope="Conv2d_0a_1x1")
            b2 = slim.conv2d(b2, 48, 3, scope="Conv2d_0b_3x3")
            b2 = slim.conv2d(b2, 64, 3, scope="Conv2d_0c_3x3")
        return _residual(net, [b0, b1, b2], scale, activation_fn, scope)


def block17(net, scale=0.10, activation_fn=relu, scope=None):
    """17 x 17 residual block (Repeat_1/block17_k)."""
    with tf.compat.v1.variable_scope(scope, "Block17", [net]):
        with tf.compat.v1.variable_scope("Branch_0"):
            b0 = slim.conv2d(net, 192, 1, scope="Conv2d_1x1")
        with tf.compat.v1.variable_scope("Branch_1"):
            b1 = slim.conv2d(net, 128, 1, scope="Conv2d_0a_1x1")
            b1 = slim.conv2d(b1, 160, [1, 7], scope="Conv2d_0b_1x7")
            b1 = slim.conv2d(b1, 192, [7, 1], scope="Conv2d_0c_7x1")
        return _residual(net, [b0, b1], scale, activation_fn, scope)


def block8(net, scale=0.20, activation_fn=relu, scope=None):
    """8 x 8 residual block (Repeat_2/block8_k and the final Block8)."""
    with tf.compat.v1.variable_scope(scope, "Block8", [net]):
        with tf.compat.v1.variable_scope("Branch_0"):
            b0 = slim.conv2d(net, 192, 1, scope="Conv2d_1x1")
        with tf.compat.v1.variable_scope("Branch_1"):
            b1 = slim.conv2d(net, 192, 1, scope="Conv2d_0a_1x1")
            b1 = slim.conv2d(b1, 224, [1, 3], scope="Conv2d_0b_1x3")
            b1 = slim.conv2d(b1, 256, [3, 1], scope="Conv2d_0c_3x1")
        return _residual(net, [b0, b1], scale, activation_fn, scope)


def _stem(inputs, end_points):
    net = slim.conv2d(inputs, 32, 3, stride=2, padding="VALID", scope="Conv2d_1a_3x3")
    net = slim.conv2d(net, 32, 3, padding="VALID", scope="Conv2d_2a_3x3")
    net = slim.conv2d(net, 64, 3, scope="Conv2d_2b_3x3")
    end_points["Conv2d_2b_3x3"] = net
    net = slim.max_pool2d(net, 3, stride=2, padding="VALID", scope="MaxPool_3a_3x3")
    net = slim.conv2d(net, 80, 1, padding="VALID", scope="Conv2d_3b_1x1")
    net = slim.conv2d(net, 192, 3, padding="VALID", scope="Conv2d_4a_3x3")
    end_points["Conv2d_4a_3x3"] = net
    net = slim.max_pool2d(net, 3, stride=2, padding="VALID", scope="MaxPool_5a_3x3")
    with tf.compat.v1.variable_scope("Mixed_5b"):
        with tf.compat.v1.variable_scope("Branch_0"):
            b0 = slim.conv2d(net, 96, 1, scope="Conv2d_1x1")
        with tf.compat.v1.variable_scope("Branch_1"):
            b1 = slim.conv2d(net, 48, 1, scope="Conv2d_0a_1x1")
            b1 = slim.conv2d(b1, 64, 5, scope="Conv2d_0b_5x5")
        with tf.compat.v1.variable_scope("Branch_2"):
            b2 = slim.conv2d(net, 64, 1, scope="Conv2d_0a_1x1")
            b2 = slim.conv2d(b2, 96, 3, scope="Conv2d_0b_3x3")
            b2 = slim.conv2d(b2, 96, 3, scope="Conv2d_0c_3x3")
        with tf.compat.v1.variable_scope("Branch_3"):
            b3 = slim.avg_pool2d(net, 3, stride=1, padding="SAME", scope="AvgPool_0a_3x3")
            b3 = slim.conv2d(b3, 64, 1, scope="Conv2d_0b_1x1")
        net = tf.concat([b0, b1, b2, b3], 3)
    end_points["Mixed_5b"] = net
    return net


def _reduction_a(net):
    with tf.compat.v1.variable_scope("Mixed_6a"):
        with tf.compat.v1.variable_scope("Branch_0"):
            b0 = slim.conv2d(net, 384, 3, stride=2, padding="VALID", scope="Conv2d_1a_3x3")
        with tf.compat.v1.variable_scope("Branch_1"):
            b1 = slim.conv2d(net, 256, 1, scope="Conv2d_0a_1x1")
            b1 = slim.conv2d(b1, 256, 3, scope="Conv2d_0b_3x3")
            b1 = slim.conv2d(b1, 384, 3, stride=2, padding="VALID", scope="Conv2d_1a_3x3")
        with tf.compat.v1.variable_scope("Branch_2"):
            b2 = slim.max_pool2d(net, 3, stride=2, padding="VALID", scope="MaxPool_1a_3x3")
        return tf.concat([b0, b1, b2], 3)


def _reduction_b(net):
    with tf.compat.v1.variable_scope("Mixed_7a"):
        with tf.compat.v1.variable_scope("Branch_0"):
            b0 = slim.conv2d(net, 256, 1, scope="Conv2d_0a_1x1")
            b0 = slim.conv2d(b0, 384, 3, stride=2, padding="VALID", scope="Conv2d_1a_3x3")
        with tf.compat.v1.variable_scope("Branch_1"):
            b1 = slim.conv2d(net, 256, 1, scope="Conv2d_0a_1x1")
            b1 = slim.conv2d(b1, 288, 3, stride=2, padding="VALID", scope="Conv2d_1a_3x3")
        with tf.compat.v1.variable_scope("Branch_2"):
            b2 = slim.conv2d(net, 256, 1, scope="Conv2d_0a_1x1")
            b2 = slim.conv2d(b2, 288, 3, scope="Conv2d_0b_3x3")
            b2 = slim.conv2d(b2, 320, 3, stride=2, padding="VALID", scope="Conv2d_1a_3x3")
        with tf.compat.v1.variable_scope("Branch_3"):
            b3 = slim.max_pool2d(net, 3, stride=2, padding="VALID", scope="MaxPool_1a_3x3")
        return tf.concat([b0, b1, b2, b3], 3)


def _aux_logits(net, num_classes):
    with tf.compat.v1.variable_scope("AuxLogits"):
        aux = slim.avg_pool2d(net, 5, stride=3, padding="VALID", scope="Conv2d_1a_3x3")
        aux = slim.conv2d(aux, 128, 1, scope="Conv2d_1b_1x1")
        aux = slim.conv2d(aux, 768, aux.get_shape()[1:3], padding="VALID", scope="Conv2d_2a_5x5")
        aux = slim.flatten(aux)
        return slim.fully_connected(aux, num_classes, activation_fn=None, scope="Logits")


def _logits(net, num_classes, dropout_keep_prob, is_training):
    with tf.compat.v1.variable_scope("Logits"):
        net = slim.avg_pool2d(net, net.get_shape()[1:3], padding="VALID", scope="AvgPool_1a_8x8")
        net = slim.flatten(net)
        net = slim.dropout(net, dropout_keep_prob, is_training=is_training, scope="Dropout")
        return slim.fully_connected(net, num_classes, activation_fn=None, scope="Logits")


def inception_resnet_v2(inputs, num_classes=None, is_training=False, dropout_keep_prob=0.8,
                        create_aux_logits=True, reuse=None, scope="InceptionResnetV2"):
    """Build the network on `inputs` (batch, height, width, 3).

    Returns (net, end_points): `net` is the logits (batch, num_classes) when `num_classes` is
    set, otherwise the `Conv2d_7b_1x1` activation (batch, h, w, 1536).
    """
    end_points = {}
    with (tf.compat.v1.variable_scope(scope, "InceptionResnetV2", [inputs], reuse=reuse),
          slim.arg_scope([slim.batch_norm, slim.dropout], is_training=is_training),
          slim.arg_scope([slim.conv2d, slim.max_pool2d, slim.avg_pool2d], stride=1, padding="SAME")):
        net = _stem(inputs, end_points)
        net = slim.repeat(net, 10, block35, scale=0.17)
        end_points["Repeat"] = net
        net = _reduction_a(net)
        end_points["Mixed_6a"] = net
        net = slim.repeat(net, 20, block17, scale=0.10)
        end_points["PreAuxLogits"] = net
        if num_classes and create_aux_logits:
            end_points["AuxLogits"] = _aux_logits(net, num_classes)
        net = _reduction_b(net)
        end_points["Mixed_7a"] = net
        net = slim.repeat(net, 9, block8, scale=0.20)
        net = block8(net, activation_fn=None, scope="Block8")
        net = slim.conv2d(net, 1536, 1, scope="Conv2d_7b_1x1")
        end_points["Conv2d_7b_1x1"] = net
        if num_classes:
            net = _logits(net, num_classes, dropout_keep_prob, is_training)
            end_points["Logits"] = net
    return net, end_points


def inception_resnet_v2_arg_scope(weight_decay=0.00004, batch_norm_decay=0.9997, batch_norm_epsilon=0.001):
    """Convolutions with L2 decay, batch norm without scale (gamma), ReLU: the checkpoint's."""
    with (slim.arg_scope([slim.conv2d, slim.fully_connected],
                         weights_regularizer=slim.l2_regularizer(weight_decay),
                         biases_regularizer=slim.l2_regularizer(weight_decay)),
          slim.arg_scope([slim.conv2d], activation_fn=relu, normalizer_fn=slim.batch_norm,
                         normalizer_params={"decay": batch_norm_decay, "epsilon": batch_norm_epsilon,
                                            "fused": None}) as scope):
        return scope

"""Backbones by name: builder, arg scope, variable scope, checkpoint and excluded scopes.

    spec = registry.get("inception_resnet_v2")
    net, end_points = spec.build(images, is_training=False)
    features = end_points[spec.defaults.endpoint]   # (batch, 5, 5, 1536) at 224 x 224

What a name means in a config (default endpoint, image size, preprocessing, pooling) is in
`configs.backbones`, TensorFlow-free, under the same names. An unknown name raises ValueError
listing the known ones.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from configs import backbones
from runtime.tf_quiet import tf

from .slim_compat import slim

OFFICIAL = "http://download.tensorflow.org/models/"


@dataclass(frozen=True)
class Backbone:
    name: str
    scope: str  # top variable scope: what a checkpoint must hold
    builder: Callable  # (images, is_training) -> (net, end_points)
    arg_scope: Callable
    url: str  # official checkpoint tarball ("" = none: train it with `pretrain`)
    checkpoint_file: str  # the checkpoint inside the tarball
    exclude: tuple[str, ...]  # scopes never restored (classifier heads)

    @property
    def defaults(self) -> backbones.Defaults:
        """Default endpoint, image size, preprocessing and pooling (configs.backbones)."""
        return backbones.defaults(self.name)

    def build(self, images, is_training: bool = False):
        with slim.arg_scope(self.arg_scope()):
            return self.builder(images, is_training=is_training)


def _irv2(images, is_training):
    from .inception_resnet_v2 import inception_resnet_v2
    return inception_resnet_v2(images, num_classes=None, is_training=is_training)


def _irv2_scope():
    from .inception_resnet_v2 import inception_resnet_v2_arg_scope
    return inception_resnet_v2_arg_scope()


def _resnet(depth):
    def build(images, is_training):
        from tf_slim.nets import resnet_v1
        fn = {50: resnet_v1.resnet_v1_50, 101: resnet_v1.resnet_v1_101}[depth]
        return fn(images, num_classes=None, is_training=is_training, global_pool=False)
    return build


def _resnet_scope():
    from tf_slim.nets import resnet_v1
    return resnet_v1.resnet_arg_scope()


def _inception_v3(images, is_training):
    from tf_slim.nets import inception_v3
    return inception_v3.inception_v3_base(images, scope="InceptionV3")


def _inception_v3_scope():
    from tf_slim.nets import inception_v3
    return inception_v3.inception_v3_arg_scope()


def _vgg16(images, is_training):
    from tf_slim.nets import vgg
    return vgg.vgg_16(images, num_classes=1000, is_training=is_training, spatial_squeeze=False)


def _vgg_scope():
    from tf_slim.nets import vgg
    return vgg.vgg_arg_scope()


def _demo_cnn(images, is_training):
    from .demo_cnn import demo_cnn
    return demo_cnn(images, is_training=is_training)


def _demo_scope():
    from .demo_cnn import demo_cnn_arg_scope
    return demo_cnn_arg_scope()


BACKBONES = {b.name: b for b in [
    Backbone("inception_resnet_v2", "InceptionResnetV2", _irv2, _irv2_scope,
             OFFICIAL + "inception_resnet_v2_2016_08_30.tar.gz", "inception_resnet_v2_2016_08_30.ckpt",
             ("InceptionResnetV2/Logits", "InceptionResnetV2/AuxLogits")),
    Backbone("resnet_v1_50", "resnet_v1_50", _resnet(50), _resnet_scope,
             OFFICIAL + "resnet_v1_50_2016_08_28.tar.gz", "resnet_v1_50.ckpt", ("resnet_v1_50/logits",)),
    Backbone("resnet_v1_101", "resnet_v1_101", _resnet(101), _resnet_scope,
             OFFICIAL + "resnet_v1_101_2016_08_28.tar.gz", "resnet_v1_101.ckpt", ("resnet_v1_101/logits",)),
    Backbone("inception_v3", "InceptionV3", _inception_v3, _inception_v3_scope,
             OFFICIAL + "inception_v3_2016_08_28.tar.gz", "inception_v3.ckpt",
             ("InceptionV3/Logits", "InceptionV3/AuxLogits")),
    Backbone("vgg_16", "vgg_16", _vgg16, _vgg_scope,
             OFFICIAL + "vgg_16_2016_08_28.tar.gz", "vgg_16.ckpt", ("vgg_16/fc8",)),
    Backbone("demo_cnn", "DemoCNN", _demo_cnn, _demo_scope, "", "", ("DemoCNN/Logits",)),
]}


def get(name: str) -> Backbone:
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; known: {', '.join(BACKBONES)}")
    return BACKBONES[name]


def variable_name(variable) -> str:
    """A variable's checkpoint name; `.op.name` is not it for a replicated (distributed) one."""
    return variable.name.split(":")[0]


def backbone_variables(spec: Backbone) -> list:
    """The graph's variables of the backbone, without the excluded (classifier) scopes."""
    return [v for v in tf.compat.v1.global_variables()
            if variable_name(v).startswith(spec.scope + "/")
            and not any(variable_name(v).startswith(s + "/") for s in spec.exclude)]

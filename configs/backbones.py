"""What a backbone name means in a config: its default endpoint, image size, preprocessing and
pooling (TensorFlow-free). `configs.load` fills [extract]'s empty keys from here, so a loaded
config names every setting that shapes its features; `extract.registry` adds the builders,
scopes and checkpoints under the same names (a test keeps the two tables' names equal).
"""
from __future__ import annotations

from typing import NamedTuple


class Defaults(NamedTuple):
    endpoint: str
    image_size: int
    preprocessing: str  # paper | inception | vgg
    pooling: str  # none (flatten) | avg | max


BACKBONES = {
    "inception_resnet_v2": Defaults("Conv2d_7b_1x1", 299, "inception", "none"),
    "resnet_v1_50": Defaults("resnet_v1_50/block4", 224, "vgg", "avg"),
    "resnet_v1_101": Defaults("resnet_v1_101/block4", 224, "vgg", "avg"),
    "inception_v3": Defaults("Mixed_7c", 299, "inception", "avg"),
    "vgg_16": Defaults("vgg_16/fc7", 224, "vgg", "none"),
    "demo_cnn": Defaults("pool4", 96, "inception", "none"),
}
PREPROCESSING = ("paper", "inception", "vgg")
POOLING = ("none", "avg", "max")


def defaults(name: str) -> Defaults:
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; known: {', '.join(BACKBONES)}")
    return BACKBONES[name]

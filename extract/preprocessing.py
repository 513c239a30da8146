"""Image preprocessing by name, applied inside the model graph to resized RGB in [0, 255].

- `paper`: /255, then ImageNet mean/std per channel (the notebooks' MSCOCO-preprocessing, code
  cell 4, which then resizes the normalised image with skimage; the normalisation is affine per
  channel, so it commutes with a bilinear resize: only skimage's anti-aliasing differs).
- `inception`: scale to [-1, 1] (the Inception checkpoints' training input).
- `vgg`: subtract the ImageNet RGB mean (the VGG / ResNet-v1 checkpoints' training input).
Resizing to the model's image size happens in the input pipeline (`extract.images`): a plain
bilinear resize of the whole image (no anti-aliasing), no crop, as the paper.
"""
from __future__ import annotations

from runtime.tf_quiet import tf

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
VGG_MEAN = (123.68, 116.78, 103.94)


def paper(images):
    return (images / 255.0 - tf.constant(IMAGENET_MEAN)) / tf.constant(IMAGENET_STD)


def inception(images):
    return images / 127.5 - 1.0


def vgg(images):
    return images - tf.constant(VGG_MEAN)


PREPROCESSING = {"paper": paper, "inception": inception, "vgg": vgg}


def get(name: str):
    if name not in PREPROCESSING:
        raise ValueError(f"unknown preprocessing {name!r}; known: {', '.join(PREPROCESSING)}")
    return PREPROCESSING[name]

import pytest
import tensorflow as tf

from extract import registry
from tests.conftest import SHARED, shared_or_skip

# (backbone, tiny input size, endpoint shape at that size): static shapes, no weights needed
TINY = [
    ("inception_resnet_v2", 224, (5, 5, 1536)),  # the paper's endpoint: 38,400 values
    ("resnet_v1_50", 64, (2, 2, 2048)),
    ("resnet_v1_101", 64, (2, 2, 2048)),
    ("inception_v3", 75, (1, 1, 2048)),
    ("vgg_16", 224, (1, 1, 4096)),  # fc6 is a 7x7 VALID conv: VGG needs its full input
    ("demo_cnn", 32, (2, 2, 128)),
]


def test_every_registry_entry_is_covered_and_has_config_defaults():
    from configs import backbones
    assert {name for name, _, _ in TINY} == set(registry.BACKBONES) == set(backbones.BACKBONES)


@pytest.mark.parametrize("name, size, shape", TINY)
def test_entry_builds_on_tiny_input_with_documented_endpoint(name, size, shape):
    spec = registry.get(name)
    with tf.Graph().as_default():
        tf.compat.v1.set_random_seed(0)  # graph seeds: random ops stay legal under op determinism
        images = tf.compat.v1.placeholder(tf.float32, [1, size, size, 3])
        _, end_points = spec.build(images)
        assert tuple(end_points[spec.defaults.endpoint].shape.as_list()[1:]) == shape
        assert registry.backbone_variables(spec)  # the restore scope holds variables


def test_inception_resnet_v2_equals_the_official_layout():
    layout = shared_or_skip(SHARED / "slim_layouts" / "inception_resnet_v2_2016_08_30.tsv")
    want = dict(line.split("\t") for line in layout.read_text().splitlines()[1:])
    from extract.inception_resnet_v2 import inception_resnet_v2, inception_resnet_v2_arg_scope
    from extract.slim_compat import slim
    with tf.Graph().as_default():
        tf.compat.v1.set_random_seed(0)
        images = tf.compat.v1.placeholder(tf.float32, [1, 299, 299, 3])
        with slim.arg_scope(inception_resnet_v2_arg_scope()):
            inception_resnet_v2(images, num_classes=1001)
        got = {v.op.name: "x".join(map(str, v.shape.as_list())) for v in tf.compat.v1.global_variables()}
    assert len(want) == 908
    assert got == want


def test_unknown_backbone_lists_known_ones():
    with pytest.raises(ValueError,
                       match="unknown backbone 'resnet_v9'; known: inception_resnet_v2, resnet_v1_50"):
        registry.get("resnet_v9")

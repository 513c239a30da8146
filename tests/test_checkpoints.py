import numpy as np
import pytest
import tensorflow as tf

from extract import checkpoints, extraction, registry
from tests.helpers import save_random_checkpoint

PLAN = extraction.Plan("demo_cnn", "pool4", 32, "inception", "none", "float32")


def test_round_trip_restores_saved_weights_exactly(tmp_path):
    prefix = save_random_checkpoint("demo_cnn", 32, tmp_path / "a" / "model.ckpt", seed=1)
    images = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype(np.float32)
    first = extraction.FeatureModel(PLAN, prefix)
    second = extraction.FeatureModel(PLAN, prefix)
    np.testing.assert_array_equal(first(images), second(images))
    assert first.n_restored == 16  # 4 convs x (weights, beta, moving mean, moving variance)
    reader = tf.train.load_checkpoint(str(prefix))
    with first.graph.as_default():
        weights = next(v for v in tf.compat.v1.global_variables() if v.op.name == "DemoCNN/conv1/weights")
        np.testing.assert_array_equal(first.session.run(weights), reader.get_tensor("DemoCNN/conv1/weights"))
    other = extraction.FeatureModel(PLAN,
                                    save_random_checkpoint("demo_cnn", 32, tmp_path / "b" / "m.ckpt", seed=2))
    assert not np.allclose(first(images), other(images))  # the weights came from the file


def test_missing_variable_is_listed(tmp_path):
    prefix = save_random_checkpoint("demo_cnn", 32, tmp_path / "m.ckpt", drop="conv3/")
    with pytest.raises(ValueError, match=r"lacks 4 of 16 demo_cnn variables, e\.g\. DemoCNN/conv3/"):
        extraction.FeatureModel(PLAN, prefix)


def test_shape_mismatch_names_both_shapes(tmp_path):
    prefix = save_random_checkpoint("demo_cnn", 32, tmp_path / "m.ckpt", reshape="conv2/weights")
    with pytest.raises(ValueError, match=r"DemoCNN/conv2/weights \(3, 3, 16, 33\) vs \(3, 3, 16, 32\)"):
        extraction.FeatureModel(PLAN, prefix)


def test_offline_download_names_url_and_where_to_put_the_file(tmp_path):
    spec = registry.Backbone(**{**registry.get("resnet_v1_50").__dict__,
                                "url": "http://127.0.0.1:9/models/resnet_v1_50_2016_08_28.tar.gz"})
    with pytest.raises(ValueError) as err:
        checkpoints.resolve(spec, cache_dir=str(tmp_path))
    message = str(err.value)
    assert "could not download http://127.0.0.1:9/models/resnet_v1_50_2016_08_28.tar.gz" in message
    assert str(tmp_path / "resnet_v1_50_2016_08_28.tar.gz") in message


def test_missing_local_checkpoint(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        checkpoints.resolve(registry.get("demo_cnn"), str(tmp_path / "nothing.ckpt"))

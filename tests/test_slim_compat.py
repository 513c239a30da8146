import numpy as np
import tensorflow as tf

from extract.slim_compat import slim


def test_batch_norm_builds_and_runs_through_the_compat_module():
    with tf.Graph().as_default():
        tf.compat.v1.set_random_seed(0)
        x = tf.compat.v1.placeholder(tf.float32, [None, 4, 4, 3])
        y = slim.conv2d(x, 8, 3, normalizer_fn=slim.batch_norm)
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            out = session.run(y, {x: np.ones((2, 4, 4, 3), np.float32)})
    assert out.shape == (2, 4, 4, 8)
    assert tf.executing_eagerly()  # the slim graph never turned eager execution off

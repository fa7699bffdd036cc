"""Tiny TensorFlow models the tests export themselves.

Import after ``importorskip("tensorflow")``."""

from __future__ import annotations

import tensorflow as tf


class Affine(tf.Module):
    """y = a * x + b on a float vector ``x``: the answer tells which version served it."""

    def __init__(self, a: float, b: float) -> None:
        super().__init__()
        self.a, self.b = tf.Variable(a), tf.Variable(b)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
    def __call__(self, x):
        return {"y": self.a * x + self.b}

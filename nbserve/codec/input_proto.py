"""``tensorflow.serving.Input`` (classify/regress/multi-inference requests) -> serialized
tf.Examples."""

from __future__ import annotations

from typing import Any


def serialized_examples(input_proto: Any) -> list[bytes]:
    """The examples of an ``Input`` proto, serialized; with ``example_list_with_context`` the
    context is prepended to each example (protobuf merges the concatenation, as TF Serving does).
    An empty ``Input`` gives ``[]`` (the servable layer reports ``Input is empty.``)."""
    kind = input_proto.WhichOneof("kind")
    if kind == "example_list":
        return [e.SerializeToString() for e in input_proto.example_list.examples]
    if kind == "example_list_with_context":
        examples = input_proto.example_list_with_context
        context = examples.context.SerializeToString()
        return [context + e.SerializeToString() for e in examples.examples]
    return []

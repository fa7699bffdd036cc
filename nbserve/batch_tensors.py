"""Merging requests' tensors into one batch and splitting its outputs back (pure functions; the
batch scheduler, ``nbserve.batching``, runs them on its batch threads).

TF Serving's ``BatchingSession`` semantics: inputs are concatenated along dimension 0;
``allowed_batch_sizes`` pads a batch up to the next allowed size by repeating its first row;
``pad_variable_length_inputs`` pads non-batch dimensions with each tensor's first element; every
output must have the (padded) batch size as its 0th dimension.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from nbserve.errors import invalid_argument


def padded_batch_size(size: int, allowed_batch_sizes: Sequence[int]) -> int:
    """The smallest allowed batch size >= ``size`` (``size`` itself when none is)."""
    for allowed in allowed_batch_sizes:
        if allowed >= size:
            return allowed
    return size


def merge_inputs(inputs: Sequence[Mapping[str, np.ndarray]], padding: int = 0,
                 pad_variable_length: bool = False) -> dict[str, np.ndarray]:
    """Concatenate each alias along dimension 0; ``padding`` more rows repeat the first row;
    with ``pad_variable_length`` ragged non-batch dimensions are padded first."""
    merged = {}
    for alias in inputs[0]:
        arrays = [request[alias] for request in inputs]
        if pad_variable_length:
            arrays = pad_to_common_shape(arrays)
        if padding and arrays[0].shape[0]:
            arrays.append(np.repeat(arrays[0][:1], padding, axis=0))
        merged[alias] = np.concatenate(arrays) if len(arrays) > 1 else arrays[0]
    return merged


def pad_to_common_shape(arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Pad every array's non-batch dimensions up to the largest among ``arrays`` (same rank),
    with that array's own first element (TF Serving's ``PadTensor``)."""
    target = tuple(max(sizes) for sizes in zip(*(a.shape[1:] for a in arrays), strict=True))
    out = []
    for array in arrays:
        if array.shape[1:] == target:
            out.append(array)
            continue
        widths = [(0, 0)] + [(0, t - s) for s, t in zip(array.shape[1:], target, strict=True)]
        fill = array.flat[0] if array.size else (b"" if array.dtype == object else 0)
        out.append(np.pad(array, widths, mode="constant", constant_values=fill))
    return out


def check_outputs(outputs: Mapping[str, np.ndarray], padded: int) -> None:
    """Every output must be batched: at least 1-d with ``padded`` rows."""
    for array in outputs.values():
        if np.ndim(array) == 0:
            raise invalid_argument("Batched output tensor has 0 dimensions")
        if array.shape[0] != padded:
            raise invalid_argument("Batched output tensor's 0th dimension does not equal the sum "
                                   "of the 0th dimension sizes of the input tensors")


def split_outputs(outputs: Mapping[str, np.ndarray], sizes: Sequence[int]
                  ) -> list[dict[str, np.ndarray]]:
    """Slice each output along dimension 0 into consecutive pieces of ``sizes`` (views);
    rows past ``sum(sizes)`` (padding) are dropped."""
    results: list[dict[str, np.ndarray]] = [{} for _ in sizes]
    for alias, array in outputs.items():
        offset = 0
        for result, size in zip(results, sizes, strict=True):
            result[alias] = array[offset:offset + size]
            offset += size
    return results

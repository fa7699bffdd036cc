"""SavedModel warmup (TF Serving's ``saved_model_warmup.cc``, spec §5.7), and its file writer.

A version folder may hold ``assets.extra/tf_serving_warmup_requests``: a TFRecord file whose records
are serialized ``tensorflow.serving.PredictionLog`` protos. ``run_warmup`` replays each record's
request (``predict_log``, ``classify_log``, ``regress_log``, ``multi_inference_log``; responses are
ignored) ``num_request_iterations`` times against a freshly loaded servable, so the first real
request does not pay for graph optimisation and memory allocation. The loader calls it before the
version turns AVAILABLE; any failure fails the load. Errors, in TF Serving's words:

* more than ``MAX_WARMUP_RECORDS`` records: INVALID_ARGUMENT
  ``Number of warmup records exceeds the maximum (1000) at <path>`` (the first 1000 have run);
* a record that is not a PredictionLog: INVALID_ARGUMENT
  ``Failed to parse warmup record: <record> from <path>``;
* a file that is not TFRecord (bad length or checksum, truncated): DATA_LOSS
  ``corrupted record at <offset>. Please verify your warmup data is in TFRecord format.``;
* ``predict_streamed_log`` / ``session_run_log`` / no log at all: UNIMPLEMENTED
  ``Unsupported log_type for warmup: <field number>``;
* a request that fails: its own error. A missing file means no warmup.

TFRecord framing is read and written here in pure Python (no ``tf.data``): each record is
``uint64 length | uint32 masked_crc32c(length) | data | uint32 masked_crc32c(data)``, little endian;
CRC-32C runs over numpy lanes for large records. Only ``tensorflow_serving.apis`` protos and
``nbserve.codec.tensors`` are imported (lazily), never the TensorFlow runtime. Pure functions,
thread-safe.
"""

from __future__ import annotations

import functools
import logging
import os
import struct
import time
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np

from nbserve.codec.input_proto import serialized_examples
from nbserve.errors import ServingError, StatusCode, as_serving_error
from nbserve.servables.predict_util import find_signature

log = logging.getLogger("nbserve.warmup")

WARMUP_DIR = "assets.extra"
WARMUP_FILE = "tf_serving_warmup_requests"
MAX_WARMUP_RECORDS = 1000
TFRECORD_HINT = ". Please verify your warmup data is in TFRecord format."

# PredictionLog's log_type field numbers (``prediction_log.proto``), as TF Serving prints them.
_LOG_TYPE_NUMBERS = {"classify_log": 2, "regress_log": 3, "multi_inference_log": 4,
                     "session_run_log": 5, "predict_log": 6, "predict_streamed_log": 7}


def warmup_path(export_dir: str | os.PathLike[str]) -> str:
    """``<export_dir>/assets.extra/tf_serving_warmup_requests``."""
    return os.path.join(os.fspath(export_dir), WARMUP_DIR, WARMUP_FILE)


# -- CRC-32C (Castagnoli), as TFRecord uses it ------------------------------------------------------

_POLY = 0x82F63B78
_MASK_DELTA = 0xA282EAD8
_SMALL = 4096  # bytes below which a plain table loop is faster than numpy lanes


def _make_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ _POLY if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE = _make_table()
_TABLE_NP = np.array(_TABLE, dtype=np.uint32)


def _update(state: int, data: bytes) -> int:
    table = _TABLE
    for byte in data:
        state = table[(state ^ byte) & 0xFF] ^ (state >> 8)
    return state


def _apply(columns: Sequence[int], state: int) -> int:
    """A linear map on 32-bit states, given by the images of the 32 unit vectors."""
    result, bit = 0, 0
    while state:
        if state & 1:
            result ^= columns[bit]
        state >>= 1
        bit += 1
    return result


@functools.lru_cache(maxsize=64)
def _zeros_operator(count: int) -> tuple[int, ...]:
    """The map ``state -> state after count zero bytes`` (linear: CRC is linear over GF(2))."""
    result = tuple(1 << bit for bit in range(32))
    power = tuple(_update(1 << bit, b"\0") for bit in range(32))
    while count:
        if count & 1:
            result = tuple(_apply(power, column) for column in result)
        power = tuple(_apply(power, column) for column in power)
        count >>= 1
    return result


def _byte_tables(columns: Sequence[int]) -> list[np.ndarray]:
    """``_apply(columns, x)`` for numpy arrays: one 256-entry table per byte of ``x``."""
    return [np.array([_apply(columns, byte << (8 * k)) for byte in range(256)], dtype=np.uint32)
            for k in range(4)]


def _raw_lanes(data: bytes) -> int:
    """The CRC register after ``data`` from a zero register, over parallel numpy lanes.

    Zero bytes leave a zero register unchanged, so ``data`` is left-padded to lanes x length and
    each lane runs from zero; the lanes are then folded pairwise: crc(a+b) = Z_|b|(crc(a)) ^ crc(b).
    """
    lanes = 1 << max(0, (len(data) // 256).bit_length() - 1)
    length = -(-len(data) // lanes)
    buffer = np.zeros(lanes * length, dtype=np.uint8)
    buffer[lanes * length - len(data):] = np.frombuffer(data, dtype=np.uint8)
    columns = np.ascontiguousarray(buffer.reshape(lanes, length).T)
    state = np.zeros(lanes, dtype=np.uint32)
    for column in columns:
        state = _TABLE_NP[(state ^ column) & 0xFF] ^ (state >> 8)
    while len(state) > 1:
        t0, t1, t2, t3 = _byte_tables(_zeros_operator(length))
        left = state[0::2]
        state = (t0[left & 0xFF] ^ t1[(left >> 8) & 0xFF] ^ t2[(left >> 16) & 0xFF]
                 ^ t3[left >> 24] ^ state[1::2])
        length *= 2
    return int(state[0])


def crc32c(data: bytes) -> int:
    """CRC-32C of ``data`` (``crc32c(b"123456789") == 0xE3069283``)."""
    if len(data) < _SMALL:
        return _update(0xFFFFFFFF, data) ^ 0xFFFFFFFF
    start = _apply(_zeros_operator(len(data)), 0xFFFFFFFF)
    return start ^ _raw_lanes(bytes(data)) ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    """TFRecord's masked CRC: rotate right by 15 and add a constant."""
    crc = crc32c(data)
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + _MASK_DELTA) & 0xFFFFFFFF


# -- TFRecord framing -------------------------------------------------------------------------------

def encode_tfrecord(record: bytes) -> bytes:
    """One TFRecord frame holding ``record``."""
    length = struct.pack("<Q", len(record))
    return b"".join((length, struct.pack("<I", masked_crc32c(length)), record,
                     struct.pack("<I", masked_crc32c(record))))


def write_tfrecords(path: str | os.PathLike[str], records: Iterable[bytes]) -> int:
    """Write ``records`` as a TFRecord file (no compression); returns how many."""
    count = 0
    with open(path, "wb") as file:
        for record in records:
            file.write(encode_tfrecord(record))
            count += 1
    return count


def _data_loss(message: str) -> ServingError:
    return ServingError(StatusCode.DATA_LOSS, message)


def iter_tfrecords(data: bytes) -> Iterator[bytes]:
    """The records of an in-memory TFRecord file, checksums verified.

    Raises ServingError(DATA_LOSS) as TensorFlow's ``RecordReader`` words it:
    ``truncated record at <offset>`` / ``corrupted record at <offset>``.
    """
    view = memoryview(data)
    offset, end = 0, len(data)
    while offset < end:
        if end - offset < 12:
            raise _data_loss(f"truncated record at {offset}")
        header = view[offset:offset + 8]
        (crc,) = struct.unpack_from("<I", view, offset + 8)
        if crc != masked_crc32c(bytes(header)):
            raise _data_loss(f"corrupted record at {offset}")
        (length,) = struct.unpack_from("<Q", view, offset)
        start = offset + 12
        if end - start < length + 4:
            raise _data_loss(f"truncated record at {start}")
        record = bytes(view[start:start + length])
        (crc,) = struct.unpack_from("<I", view, start + length)
        if crc != masked_crc32c(record):
            raise _data_loss(f"corrupted record at {start}")
        yield record
        offset = start + length + 4


def read_tfrecords(path: str | os.PathLike[str]) -> Iterator[bytes]:
    """The records of a TFRecord file (see ``iter_tfrecords``); the file is read at once."""
    with open(path, "rb") as file:
        data = file.read()
    return iter_tfrecords(data)


# -- writing warmup files ---------------------------------------------------------------------------

def prediction_log(request: Any) -> Any:
    """A ``PredictionLog`` holding ``request``.

    ``request`` is a PredictionLog (returned as is), a Predict/Classification/Regression/
    MultiInference request proto, or a mapping alias -> array-like: a PredictRequest for
    ``serving_default`` with the arrays as they are (see ``predict_request`` to cast them).
    """
    from tensorflow_serving.apis import (classification_pb2, inference_pb2, predict_pb2,
                                         prediction_log_pb2, regression_pb2)

    if isinstance(request, prediction_log_pb2.PredictionLog):
        return request
    entry = prediction_log_pb2.PredictionLog()
    if isinstance(request, Mapping):
        request = predict_request(request)
    if isinstance(request, predict_pb2.PredictRequest):
        entry.predict_log.request.CopyFrom(request)
    elif isinstance(request, classification_pb2.ClassificationRequest):
        entry.classify_log.request.CopyFrom(request)
    elif isinstance(request, regression_pb2.RegressionRequest):
        entry.regress_log.request.CopyFrom(request)
    elif isinstance(request, inference_pb2.MultiInferenceRequest):
        entry.multi_inference_log.request.CopyFrom(request)
    else:
        raise TypeError(f"cannot make a warmup record from {type(request).__name__}")
    return entry


def predict_request(inputs: Mapping[str, Any], *, signature_name: str = "serving_default",
                    dtypes: Mapping[str, Any] | None = None, model_name: str = "") -> Any:
    """A PredictRequest with ``inputs`` (alias -> array-like) as TensorProtos; ``dtypes`` (alias
    -> numpy dtype) casts them first, e.g. to the signature's input dtypes."""
    from tensorflow_serving.apis import predict_pb2

    from nbserve.codec.tensors import to_tensor_proto

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature_name
    for alias, value in inputs.items():
        dtype = (dtypes or {}).get(alias)
        array = np.asarray(value, dtype=dtype) if dtype is not None else np.asarray(value)
        request.inputs[alias].CopyFrom(to_tensor_proto(array))
    return request


def write_warmup_file(path: str | os.PathLike[str], requests: Any) -> int:
    """Write a warmup file; returns the number of records.

    ``path`` is the file to write, or a SavedModel version folder (then its
    ``assets.extra/tf_serving_warmup_requests``, folder created). ``requests`` is one request or a
    list of them, each anything ``prediction_log`` takes (a mapping alias -> array is one predict
    request) or already serialized bytes. Raises ValueError for more than MAX_WARMUP_RECORDS.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        path = warmup_path(path)
    if isinstance(requests, (Mapping, bytes)) or hasattr(requests, "SerializeToString"):
        requests = [requests]
    records = [r if isinstance(r, bytes) else prediction_log(r).SerializeToString()
               for r in requests]
    if len(records) > MAX_WARMUP_RECORDS:
        raise ValueError(f"{len(records)} warmup records; TF Serving reads at most "
                         f"{MAX_WARMUP_RECORDS}")
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    return write_tfrecords(path, records)


# -- replaying warmup files -------------------------------------------------------------------------

def run_warmup(servable: Any, export_dir: str | os.PathLike[str],
               num_request_iterations: int = 1) -> int:
    """Replay ``export_dir``'s warmup file against ``servable``; returns the records read
    (0 when there is no file). Raises ServingError (see the module doc)."""
    path = warmup_path(export_dir)
    if not os.path.isfile(path):
        log.info("No warmup data file found at %s", path)
        return 0
    from tensorflow_serving.apis import prediction_log_pb2

    started = time.monotonic()
    iterations = max(1, int(num_request_iterations))
    count = 0
    try:
        for record in read_tfrecords(path):
            count += 1
            if count > MAX_WARMUP_RECORDS:
                raise ServingError(StatusCode.INVALID_ARGUMENT,
                                   "Number of warmup records exceeds the maximum "
                                   f"({MAX_WARMUP_RECORDS}) at {path}")
            entry = prediction_log_pb2.PredictionLog()
            try:
                entry.ParseFromString(record)
            except Exception:  # noqa: BLE001 - protobuf's DecodeError and friends
                raise ServingError(
                    StatusCode.INVALID_ARGUMENT,
                    f"Failed to parse warmup record: "
                    f"{record.decode('utf-8', 'backslashreplace')} from {path}") from None
            for _ in range(iterations):
                run_warmup_record(servable, entry)
    except ServingError as err:
        if err.code == StatusCode.DATA_LOSS and not err.message.endswith(TFRECORD_HINT):
            raise ServingError(StatusCode.DATA_LOSS, err.message + TFRECORD_HINT) from None
        raise
    except OSError as exc:
        raise as_serving_error(exc) from exc
    log.info("Finished reading warmup data for model at %s. Number of warmup records read: %d. "
             "Elapsed time (microseconds): %d.", path, count,
             int((time.monotonic() - started) * 1e6))
    return count


def run_warmup_record(servable: Any, entry: Any) -> None:
    """Run one PredictionLog's request against ``servable`` (the response is discarded)."""
    from nbserve.servables import inference

    kind = entry.WhichOneof("log_type")
    if kind == "predict_log":
        request = entry.predict_log.request
        signature = find_signature(servable.signatures, request.model_spec.signature_name)
        servable.run(signature, _predict_inputs(request),
                     output_filter=list(request.output_filter) or None)
    elif kind == "classify_log":
        request = entry.classify_log.request
        inference.run_classify(servable, request.model_spec.signature_name,
                               serialized_examples(request.input))
    elif kind == "regress_log":
        request = entry.regress_log.request
        inference.run_regress(servable, request.model_spec.signature_name,
                              serialized_examples(request.input))
    elif kind == "multi_inference_log":
        request = entry.multi_inference_log.request
        tasks = [(task.model_spec.signature_name, task.method_name) for task in request.tasks]
        inference.run_multi_inference(servable, tasks, serialized_examples(request.input))
    else:
        raise ServingError(StatusCode.UNIMPLEMENTED, "Unsupported log_type for warmup: "
                           f"{_LOG_TYPE_NUMBERS.get(kind or '', 0)}")


def _predict_inputs(request: Any) -> dict[str, np.ndarray]:
    from nbserve.codec.tensors import from_tensor_proto

    return {alias: from_tensor_proto(proto, alias=alias) for alias, proto in request.inputs.items()}

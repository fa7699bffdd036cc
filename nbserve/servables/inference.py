"""Classify, Regress and MultiInference over any Servable (TF Serving's classifier.cc,
regressor.cc, multi_inference.cc and util.cc, in their words).

Only ``Servable.signatures`` and ``Servable.run`` are used, so these work for SavedModels and
for fakes alike; no TensorFlow import. The serialized ``tf.Example`` protos (context already
merged by the caller, as TF Serving concatenates context + example bytes) are fed as a 1-D string
tensor to the signature's single input ``inputs``.

Order of checks, as upstream: signature lookup, signature shape (inputs/outputs), then
``Input is empty.``, then the run, then the output tensors. Method names are checked only when
``check_method_name`` is set (TF Serving's ``--enable_signature_method_name_check``, default off).
An empty ``signature_key`` means ``serving_default``.

MultiInference follows TF Serving's current ``multi_inference.cc``: the tasks' signatures may have
different input tensors (TF2 exports give every signature its own), and the same serialized
examples feed each task's own input; the rules it keeps are one model, no signature twice, and
classify/regress method names only.

Deviation: MultiInference runs one ``Servable.run`` per task instead of one session run feeding
every task's input tensor and fetching the union of the outputs (the Servable protocol runs one
signature at a time). Results are the same for stateless graphs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from nbserve.errors import ServingError, StatusCode
from nbserve.servables.signature import DT_TO_NUMPY, Servable, Signature, TensorInfo

DEFAULT_SIGNATURE = "serving_default"
CLASSIFY_METHOD_NAME = "tensorflow/serving/classify"
REGRESS_METHOD_NAME = "tensorflow/serving/regress"
CLASSIFY_INPUTS = "inputs"
CLASSIFY_OUTPUT_CLASSES = "classes"
CLASSIFY_OUTPUT_SCORES = "scores"
REGRESS_INPUTS = "inputs"
REGRESS_OUTPUTS = "outputs"

Classification = tuple["np.ndarray | None", "np.ndarray | None"]


@dataclass(frozen=True)
class InferenceResult:
    """One MultiInference task's result: ``classification`` (classes, scores) for classify
    tasks, ``regression`` (float32 [batch]) for regress tasks; the other is None."""

    signature_key: str
    method_name: str
    classification: Classification | None = None
    regression: np.ndarray | None = None


def _invalid(message: str) -> ServingError:
    return ServingError(StatusCode.INVALID_ARGUMENT, message)


# ---- SignatureDef debug string (approximates protobuf DebugString of a SignatureDef) ------

def _tensor_info_debug(info: TensorInfo, indent: str) -> list[str]:
    lines = [f'{indent}name: "{info.name}"', f"{indent}dtype: {info.dtype}"]
    if info.shape is None:
        lines += [f"{indent}tensor_shape {{", f"{indent}  unknown_rank: true", f"{indent}}}"]
    else:
        lines.append(f"{indent}tensor_shape {{")
        for size in info.shape:
            lines += [f"{indent}  dim {{", f"{indent}    size: {size}", f"{indent}  }}"]
        lines.append(f"{indent}}}")
    return lines


def signature_debug_string(signature: Signature) -> str:
    """The SignatureDef in protobuf text format, as TF Serving puts it in its error texts."""
    lines: list[str] = []
    for field_name, tensors in (("inputs", signature.inputs), ("outputs", signature.outputs)):
        for alias, info in tensors.items():
            lines += [f"{field_name} {{", f'  key: "{alias}"', "  value {"]
            lines += _tensor_info_debug(info, "    ")
            lines += ["  }", "}"]
    lines.append(f'method_name: "{signature.method_name}"')
    return "\n".join(lines) + "\n"


# ---- signature checks (PreProcessClassification / PreProcessRegression) --------------------

def _key(signature_key: str) -> str:
    return signature_key or DEFAULT_SIGNATURE


def _check_method(signature: Signature, expected: str, what: str) -> None:
    if signature.method_name != expected:
        raise _invalid(f"Expected {what} signature method_name to be {expected}. "
                       f"Was: {signature.method_name}")


def _preprocess_classification(signature: Signature, check_method_name: bool) -> tuple[str, ...]:
    """Validate a classify signature; the output aliases to fetch (classes first)."""
    if check_method_name:
        _check_method(signature, CLASSIFY_METHOD_NAME, "classification")
    if len(signature.inputs) != 1:
        raise _invalid("Expected one input Tensor.")
    if len(signature.outputs) not in (1, 2):
        raise _invalid(f"Expected one or two output Tensors, found {len(signature.outputs)}")
    if CLASSIFY_INPUTS not in signature.inputs:
        raise _invalid("No classification inputs found in SignatureDef: "
                       + signature_debug_string(signature))
    outputs = tuple(alias for alias in (CLASSIFY_OUTPUT_CLASSES, CLASSIFY_OUTPUT_SCORES)
                    if alias in signature.outputs)
    if not outputs:
        raise _invalid(
            'Expected classification signature outputs to contain at least one of "classes" '
            'or "scores". Signature was: ' + signature_debug_string(signature))
    return outputs


def _preprocess_regression(signature: Signature, check_method_name: bool) -> tuple[str, ...]:
    if check_method_name:
        _check_method(signature, REGRESS_METHOD_NAME, "regression")
    if len(signature.inputs) != 1:
        raise _invalid("Expected one input Tensor.")
    if len(signature.outputs) != 1:
        raise _invalid("Expected one output Tensor.")
    if REGRESS_INPUTS not in signature.inputs:
        raise _invalid("No regression inputs found in SignatureDef: "
                       + signature_debug_string(signature))
    if REGRESS_OUTPUTS not in signature.outputs:
        raise _invalid("No regression outputs found in SignatureDef: "
                       + signature_debug_string(signature))
    return (REGRESS_OUTPUTS,)


def _lookup(servable: Servable, signature_key: str) -> Signature:
    signature = servable.signatures.get(_key(signature_key))
    if signature is None:
        raise _invalid(f"No signature was found with the name: {_key(signature_key)}")
    return signature


# ---- running -------------------------------------------------------------------------------

def _examples_tensor(serialized_examples: Sequence[bytes]) -> np.ndarray:
    """``InputToSerializedExampleTensor``: a 1-D object array of bytes."""
    if len(serialized_examples) == 0:
        raise _invalid("Input is empty.")
    tensor = np.empty(len(serialized_examples), dtype=object)
    tensor[:] = [bytes(example) for example in serialized_examples]
    return tensor


def _run(servable: Servable, signature: Signature, examples: np.ndarray,
         output_aliases: tuple[str, ...], timeout_ms: int | None) -> Mapping[str, np.ndarray]:
    return servable.run(signature, {CLASSIFY_INPUTS: examples},
                        output_filter=list(output_aliases), timeout_ms=timeout_ms)


_NUMPY_TO_DT = {np.dtype(numpy_type): name for name, numpy_type in DT_TO_NUMPY.items()}


def _dt_name(array: np.ndarray) -> str:
    """``DataType_Name`` of the tensor an array stands for."""
    if array.dtype.kind in "OSU":
        return "DT_STRING"
    return _NUMPY_TO_DT.get(array.dtype, f"DT_{str(array.dtype).upper()}")


def _shape_string(array: np.ndarray) -> str:
    """``TensorShape::DebugString``: ``[2,1]``."""
    return "[" + ",".join(str(size) for size in array.shape) + "]"


def _postprocess_classification(num_examples: int,
                                outputs: Mapping[str, np.ndarray]) -> Classification:
    """``PostProcessClassificationResult``: validate and return (classes, scores)."""
    classes = outputs.get(CLASSIFY_OUTPUT_CLASSES)
    scores = outputs.get(CLASSIFY_OUTPUT_SCORES)
    for alias, tensor, dtype in ((CLASSIFY_OUTPUT_CLASSES, classes, "DT_STRING"),
                                 (CLASSIFY_OUTPUT_SCORES, scores, "DT_FLOAT")):
        if tensor is None:
            continue
        if tensor.ndim != 2:
            raise _invalid("Expected Tensor shape: [batch_size num_classes] but got "
                           + _shape_string(tensor))
        if _dt_name(tensor) != dtype:
            raise _invalid(f"Expected {alias} Tensor of {dtype}. Got: {_dt_name(tensor)}")
        if tensor.shape[0] != num_examples:
            raise _invalid(f"Expected {alias} output batch size of {num_examples}. "
                           f"Got: {tensor.shape[0]}")
    if classes is not None and scores is not None and classes.shape[1] != scores.shape[1]:
        raise _invalid("Tensors class and score should match in dim_size(1). "
                       f"Got {classes.shape[1]} vs. {scores.shape[1]}")
    if classes is not None and classes.dtype != object:
        classes = classes.astype(object)
    return classes, scores


def _postprocess_regression(num_examples: int, outputs: Mapping[str, np.ndarray]) -> np.ndarray:
    """``PostProcessRegressionResult``: validate and return float32 [batch]."""
    tensor = outputs.get(REGRESS_OUTPUTS)
    if tensor is None:
        raise _invalid(f"Could not find output tensor '{REGRESS_OUTPUTS}'")
    if not (tensor.ndim == 1 or (tensor.ndim == 2 and tensor.shape[1] == 1)):
        raise _invalid("Expected output Tensor shape to be either [batch_size] or "
                       f"[batch_size, 1] but got {_shape_string(tensor)}")
    if tensor.shape[0] != num_examples:
        raise _invalid("Input batch size did not match output batch size: "
                       f"{num_examples} vs. {tensor.shape[0]}")
    if _dt_name(tensor) != "DT_FLOAT":
        raise _invalid(f"Expected output Tensor of DT_FLOAT.  Got: {_dt_name(tensor)}")
    if tensor.size != num_examples:
        raise _invalid(f"Expected output batch size to be {num_examples}.  Got: {tensor.size}")
    return tensor.reshape(num_examples)


# ---- public API ----------------------------------------------------------------------------

def run_classify(servable: Servable, signature_key: str, serialized_examples: Sequence[bytes],
                 *, check_method_name: bool = False,
                 timeout_ms: int | None = None) -> Classification:
    """TF Serving's Classify: ``(classes, scores)``.

    ``classes`` is an object array of bytes [batch, n] or None when the signature has no
    ``classes`` output; ``scores`` float32 [batch, n] or None when it has no ``scores``.
    Raises ServingError (INVALID_ARGUMENT for every request/signature problem).
    """
    signature = _lookup(servable, signature_key)
    output_aliases = _preprocess_classification(signature, check_method_name)
    examples = _examples_tensor(serialized_examples)
    outputs = _run(servable, signature, examples, output_aliases, timeout_ms)
    return _postprocess_classification(len(examples), outputs)


def run_regress(servable: Servable, signature_key: str, serialized_examples: Sequence[bytes],
                *, check_method_name: bool = False, timeout_ms: int | None = None) -> np.ndarray:
    """TF Serving's Regress: float32 [batch]. Raises ServingError."""
    signature = _lookup(servable, signature_key)
    output_aliases = _preprocess_regression(signature, check_method_name)
    examples = _examples_tensor(serialized_examples)
    outputs = _run(servable, signature, examples, output_aliases, timeout_ms)
    return _postprocess_regression(len(examples), outputs)


def run_multi_inference(servable: Servable, tasks: Sequence[tuple[str, str]],
                        serialized_examples: Sequence[bytes], *,
                        timeout_ms: int | None = None) -> list[InferenceResult]:
    """TF Serving's MultiInference over one model: one result per ``(signature_key,
    method_name)`` task, in task order. Every task is validated before anything runs; then the
    same examples feed each task's own input tensor (signatures need not share one).

    Model-name checks (``Found ModelSpec with an empty model name.``, ``All ModelSpecs in a
    MultiInferenceRequest must access the same model name.``) belong to the caller, which picks
    the servable. Raises ServingError: INVALID_ARGUMENT, or UNIMPLEMENTED for a method other
    than classify/regress.
    """
    seen: set[str] = set()
    plans: list[tuple[Signature, str, tuple[str, ...]]] = []
    for signature_key, method_name in tasks:
        key = _key(signature_key)
        if key in seen:
            raise _invalid(f"Duplicate evaluation of signature: {key}")
        seen.add(key)
        signature = servable.signatures.get(key)
        if signature is None:
            raise _invalid(f"Requested signature not found in model graph: {key}")
        if method_name == CLASSIFY_METHOD_NAME:
            output_aliases = _preprocess_classification(signature, False)
        elif method_name == REGRESS_METHOD_NAME:
            output_aliases = _preprocess_regression(signature, False)
        else:
            raise ServingError(StatusCode.UNIMPLEMENTED,
                               f"Unsupported signature method_name: {method_name}")
        plans.append((signature, method_name, output_aliases))
    examples = _examples_tensor(serialized_examples)
    results: list[InferenceResult] = []
    for signature, method_name, output_aliases in plans:
        outputs = _run(servable, signature, examples, output_aliases, timeout_ms)
        if method_name == CLASSIFY_METHOD_NAME:
            results.append(InferenceResult(
                signature.key, method_name,
                classification=_postprocess_classification(len(examples), outputs)))
        else:
            results.append(InferenceResult(
                signature.key, method_name,
                regression=_postprocess_regression(len(examples), outputs)))
    return results

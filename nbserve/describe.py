"""Status building for the facade: the lifecycle's state (ServerCore, its monitor, a Signature)
turned into ``nbserve.status`` objects and into the wire view (``Server.status()``).

Pure reads of the core; thread-safe because every core read is. ``hints.diagnose`` adds the
cause of a wait when nbserve knows it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nbserve.core.events import ManagerState, ServableState
from nbserve.core.server_core import ServerCore
from nbserve.hints import diagnose
from nbserve.servables.signature import Signature, TensorInfo
from nbserve.service import state_entry
from nbserve.status import ModelStatus, SignatureInfo, StateChange, TensorSpec, VersionStatus


def version_detail(core: ServerCore, state: ServableState) -> dict[str, Any]:
    """What the loader told about the version (``device``, ``load_seconds``, ``kind``): the
    state's own detail, else the detail of its last AVAILABLE event."""
    detail = dict(state.detail or {})
    if "device" not in detail:
        for event in reversed(core.monitor.history(state.id.name)):
            if event.id == state.id and event.detail and "device" in event.detail:
                detail = {**event.detail, **detail}
                break
    seconds = detail.get("load_seconds", state.load_seconds)
    if seconds is not None:
        detail["load_seconds"] = seconds
    return detail


def version_status(core: ServerCore, state: ServableState) -> VersionStatus:
    """One version as a ``VersionStatus``."""
    detail = version_detail(core, state)
    seconds = detail.get("load_seconds")
    return VersionStatus(
        version=state.id.version, state=state.state.name,
        device=str(detail["device"]) if detail.get("device") else None,
        load_seconds=float(seconds) if seconds is not None else None,
        error=state.error.message if state.error is not None else None,
        kind=str(detail["kind"]) if detail.get("kind") else None)


def status_entry(core: ServerCore, state: ServableState) -> dict[str, Any]:
    """The wire view of one version (``GET /v1/models/m``'s entry) plus ``device`` /
    ``load_seconds`` when known."""
    entry = state_entry(state)
    detail = version_detail(core, state)
    if detail.get("device"):
        entry["device"] = detail["device"]
    if detail.get("load_seconds") is not None:
        entry["load_seconds"] = detail["load_seconds"]
    return entry


def model_status(core: ServerCore, name: str) -> ModelStatus:
    """Model ``name`` now: versions (highest first), the policy in force, labels and a hint
    when it waits for a known reason. A model removed from the config keeps its END versions
    and reports the policy ``"removed"``."""
    states = core.monitor.states(name)
    versions = tuple(version_status(core, states[v]) for v in sorted(states, reverse=True))
    config = core.models().get(name)
    if config is None:
        return ModelStatus(name, "", versions, "removed", {}, None)
    try:
        policy = core.effective_policy(name).describe()
    except KeyError:  # removed meanwhile
        policy = "removed"
    hint = None
    if not any(v.available for v in versions):
        hint = diagnose(name, config.base_path, versions, policy)
    return ModelStatus(name, config.base_path, versions, policy, core.labels(name), hint)


def model_statuses(core: ServerCore) -> list[ModelStatus]:
    """Every known model (configured ones, and removed ones the monitor still reports), by
    name."""
    return [model_status(core, name) for name in core.known_models()]


def tensor_spec(alias: str, info: TensorInfo) -> TensorSpec:
    return TensorSpec(alias, info.dtype, tuple(info.shape) if info.shape is not None else None)


def signature_info(signature: Signature) -> SignatureInfo:
    """A servable's ``Signature`` as the facade's ``SignatureInfo``."""
    return SignatureInfo(
        signature.key, signature.method_name,
        {alias: tensor_spec(alias, info) for alias, info in signature.inputs.items()},
        {alias: tensor_spec(alias, info) for alias, info in signature.outputs.items()})


def state_change(event: ServableState) -> StateChange:
    """A lifecycle event as subscribers of ``Server.subscribe`` see it."""
    return StateChange(event.id.name, event.id.version, event.state.name,
                       event.error.message if event.error is not None else None)


def available(states: Mapping[int, ServableState]) -> list[int]:
    """The AVAILABLE versions among ``states``, highest first."""
    return sorted((v for v, s in states.items() if s.state == ManagerState.AVAILABLE),
                  reverse=True)

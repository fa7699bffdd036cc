"""What the facade's version choices mean as TF Serving version policies and labels.

``Server.set_version_policy``, ``load_version``, ``unload_version`` and ``set_label`` (the
panel's picker, buttons and label actions) go through these pure functions, then through the
lifecycle itself (a policy override or a config with new labels), so REST and gRPC status
change as soon as the manager acts.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

from nbserve.options import ModelConfig, VersionPolicy

PolicyChoice = str | int | Sequence[int] | VersionPolicy | None


def versions_on_disk(base_path: str) -> list[int]:
    """Numeric version folders under ``base_path`` (highest first); [] if it cannot be read."""
    from nbserve.sources.filesystem import parse_version

    found: set[int] = set()
    try:
        with os.scandir(base_path) as it:
            for entry in it:
                version = parse_version(entry.name)
                if version is not None and entry.is_dir():
                    found.add(version)
    except OSError:
        return []
    return sorted(found, reverse=True)


def policy_for(choice: PolicyChoice, configured: VersionPolicy) -> VersionPolicy | None:
    """The override a choice asks for; None restores the configured policy.

    ``None`` -> the configured policy; ``"latest"`` / ``"latest N"`` -> the N highest versions;
    ``"all"`` -> every version; a version number or a sequence of them -> ``specific``; a
    ``VersionPolicy`` as is. A choice equal to the configured policy removes the override.
    Raises ValueError for anything else (or an empty sequence).
    """
    if choice is None:
        return None
    if isinstance(choice, VersionPolicy):
        policy = choice
    elif isinstance(choice, str):
        policy = _parse_policy(choice)
    elif isinstance(choice, int):
        policy = VersionPolicy.specific(choice)
    else:
        versions = [int(v) for v in choice]
        if not versions:
            raise ValueError("Give at least one version (or \"latest\" / \"all\")")
        policy = VersionPolicy.specific(*versions)
    return None if policy == configured else policy


def _parse_policy(text: str) -> VersionPolicy:
    words = text.strip().lower().split()
    if words == ["all"]:
        return VersionPolicy.all()
    if words and words[0] == "latest" and len(words) <= 2:
        try:
            count = int(words[1]) if len(words) == 2 else 1
        except ValueError:
            count = 0
        if count >= 1:
            return VersionPolicy.latest(count)
    if words and words[0] == "specific" and len(words) == 2:
        try:
            return VersionPolicy.specific(*(int(v) for v in words[1].split(",")))
        except ValueError:
            pass
    raise ValueError(f"Not a version policy: {text!r} (use \"latest\", \"latest N\", \"all\" "
                     "or a list of versions)")


def after_load(effective: VersionPolicy, on_disk: Iterable[int], version: int) -> VersionPolicy:
    """``specific`` of the versions ``effective`` aspires among ``on_disk``, plus ``version``."""
    aspired = set(effective.select(on_disk))
    return VersionPolicy.specific(*(aspired | {int(version)}))


def after_unload(effective: VersionPolicy, on_disk: Iterable[int], version: int
                 ) -> VersionPolicy:
    """``specific`` of the versions ``effective`` aspires among ``on_disk``, minus ``version``.
    Raises ValueError when that would leave no version (stop the server to unload all)."""
    remaining = set(effective.select(on_disk)) - {int(version)}
    if not remaining:
        raise ValueError(f"Version {version} is the only version served; load another one "
                         "first (or stop the server)")
    return VersionPolicy.specific(*remaining)


def with_label(config: ModelConfig, label: str, version: int | None) -> ModelConfig:
    """``config`` with ``label`` pointing at ``version`` (removed when ``version`` is None).
    Raises ValueError for an empty label."""
    if not label or not label.strip():
        raise ValueError("A version label needs a name (e.g. \"stable\")")
    labels = dict(config.version_labels)
    if version is None:
        labels.pop(label, None)
    else:
        labels[label] = int(version)
    return config.replace(version_labels=labels)

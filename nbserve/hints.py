"""Why a model has nothing to serve, when the base path tells: the hint of ``ModelStatus``.

``diagnose`` looks at a model's base path the way the file-system source does and names the
known causes of a wait, each with its fix:

- the folder does not exist (never created, or deleted);
- it cannot be read (permissions);
- a SavedModel was saved straight into it (``saved_model.pb`` in the base path, no numeric
  version folder): TF Serving's own hint text, plus the fix;
- it is empty;
- it holds only non-numeric names (``v1``, ``model``...);
- it has version folders, but the version policy selects none of them.

Read-only, cheap (one ``scandir``), safe from any thread. Returns None when nothing is wrong
that nbserve can tell (e.g. a version is settling or loading).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from nbserve.status import VersionStatus

TF_SERVING_HINT = "Did you forget to name your leaf directory as a number (eg. '/1/')?"
SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")


def shown_path(path: str) -> str:
    """``path`` relative to the current directory when it is below it, else as given."""
    try:
        rel = os.path.relpath(path)
    except ValueError:  # another drive (Windows)
        return path
    return path if rel.startswith(os.pardir) else rel


def diagnose(name: str, base_path: str, versions: Sequence[VersionStatus] = (),
             policy: str | None = None) -> str | None:
    """The known reason model ``name`` (at ``base_path``) has no version to serve, with its fix;
    None when there is none to tell. ``versions`` are the model's known versions (a version
    loading or failed explains itself, so it gets no hint); ``policy`` the policy in force, in
    TF Serving's words (``"specific 3"``), used to explain a policy that selects nothing."""
    if any(v.state in ("START", "LOADING", "AVAILABLE", "UNLOADING") for v in versions):
        return None
    where = shown_path(base_path)
    try:
        with os.scandir(base_path) as it:
            entries = [(e.name, e.is_dir()) for e in it if not e.name.startswith(".")]
    except FileNotFoundError:
        return (f"The folder {where} does not exist (was it deleted or renamed?). Export a "
                f'version into it: nbserve.export(model, "{where}") writes {where}/1.')
    except NotADirectoryError:
        return f"{where} is a file, not a model's base path (a folder of numeric version folders)."
    except PermissionError:
        return (f"nbserve cannot read the folder {where} (permission denied): let this process "
                "read it (chmod), or serve a copy.")
    except OSError as exc:
        return f"nbserve cannot read the folder {where}: {exc.strerror or exc}."
    numeric = sorted(int(n) for n, is_dir in entries if is_dir and n.isascii() and n.isdigit())
    files = {n for n, is_dir in entries if not is_dir}
    if not numeric and files & set(SAVED_MODEL_FILES):
        return (f"{TF_SERVING_HINT} A SavedModel was saved straight into {where}: a model's base "
                f"path holds numbered version folders. Export it with "
                f'nbserve.export(model, "{where}") (it writes {where}/1), or move its files '
                f"into {where}/1.")
    if not entries:
        return (f"{where} is empty: export a version into it, e.g. "
                f'nbserve.export(model, "{where}") writes {where}/1.')
    if not numeric:
        shown = ", ".join(sorted(n for n, _ in entries)[:5]) + (", ..." if len(entries) > 5 else "")
        return (f"{TF_SERVING_HINT} {where} holds no numbered version folder, only: {shown}. "
                f"Rename the version folder to a number (e.g. {where}/1), or export with "
                f'nbserve.export(model, "{where}").')
    wanted = _specific_versions(policy)
    if wanted is not None and not wanted & set(numeric):
        return (f"The version policy ({policy}) selects none of the versions on disk "
                f"({', '.join(str(v) for v in reversed(numeric))}): serve one of those.")
    return None


def _specific_versions(policy: str | None) -> set[int] | None:
    """The versions of a ``"specific 1,2"`` policy; None for any other policy."""
    if not policy or not policy.startswith("specific "):
        return None
    try:
        return {int(v) for v in policy[len("specific "):].split(",") if v.strip()}
    except ValueError:
        return None

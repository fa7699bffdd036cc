"""FileSystemStoragePathSource: numeric version folders under each model's base path.

TF Serving's rules (spec §5.5): a direct child whose name is a non-negative 64-bit integer is a
version (``00000123`` is 123; ``.tmp-upload``, ``v2``, ``1.tmp`` are ignored); the model's
VersionPolicy picks the aspired ones; a missing base path logs an error and emits nothing (loaded
versions stay); a base path with no version emits an empty list (everything unloads).

nbserve's improvements:

* **Watching.** Besides the full listing every ``poll_wait_seconds``, the source stats each base
  path every ``watch_interval_seconds`` (100 ms) and rescans at once when its change stamp moves,
  so a new version is seen within ~0.1 s. A stat is portable (network mounts, containers) where
  inotify is not; polling stays the fallback.
* **Settling.** A version folder is *taken* only once its content has stopped changing for
  ``settle_seconds`` and it holds a model file (``saved_model.pb``, ``.pbtxt`` or TFLite's
  ``model.tflite``: ``MODEL_FILES``); a folder without one is taken
  after ``incomplete_grace_seconds`` of quiet, so a broken export still surfaces as END with its
  error instead of staying invisible. Content whose newest mtime is already older than the settle
  time (an atomic rename of a finished export, or every folder at start-up) is taken at once.

Threads: ``start()`` runs one daemon thread, ``nbserve-source``; ``poll_once()`` lets tests drive
it.
The aspired-versions callback is called on that thread (or the caller's, for ``poll_once``).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from nbserve.core.ids import ServableId
from nbserve.core.loader import LoaderFactory
from nbserve.core.source import AspiredVersionsCallback, ServableData
from nbserve.options import FileSystemSourceOptions, ModelConfig

log = logging.getLogger("nbserve.source")

INT64_MAX = 2**63 - 1
SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")
MODEL_FILES = (*SAVED_MODEL_FILES, "model.tflite")  # what makes a version folder complete


def parse_version(name: str) -> int | None:
    """The version number a child folder name stands for, or None if it is not one."""
    if not name.isascii() or not name.isdigit():
        return None
    value = int(name)
    return value if value <= INT64_MAX else None


def tree_fingerprint(path: str) -> tuple[float, int, int]:
    """(newest mtime, number of entries, total bytes) of a folder tree; cheap for SavedModels."""
    newest, count, size = os.stat(path).st_mtime, 0, 0
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            try:
                st = os.stat(os.path.join(root, name))
            except OSError:
                continue
            newest = max(newest, st.st_mtime)
            count += 1
            size += st.st_size
    return newest, count, size


def has_model_file(path: str) -> bool:
    """True when ``path`` holds a file some servable kind loads (``MODEL_FILES``)."""
    return any(os.path.exists(os.path.join(path, f)) for f in MODEL_FILES)


@dataclass
class _Candidate:
    fingerprint: tuple[float, int, int]
    quiet_since: float


@dataclass
class _ModelWatch:
    config: ModelConfig
    stamp: float | None = None
    next_full_scan: float = 0.0
    taken: dict[int, str] = field(default_factory=dict)  # version -> folder path
    candidates: dict[str, _Candidate] = field(default_factory=dict)  # path -> settling state
    emitted: tuple[tuple[int, str], ...] | None = None
    missing_logged: bool = False


class FileSystemStoragePathSource:
    """Emits each model's aspired versions (as ServableData with a Loader) when they change."""

    def __init__(self, loader_factory: LoaderFactory, *, poll_wait_seconds: float = 1.0,
                 settle_seconds: float = 0.3, incomplete_grace_seconds: float = 3.0,
                 watch_interval_seconds: float = 0.1,
                 clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time) -> None:
        self._loader_factory = loader_factory
        self._poll_wait = poll_wait_seconds
        self._settle = settle_seconds
        self._grace = incomplete_grace_seconds
        self._watch_interval = watch_interval_seconds
        self._clock = clock
        self._wall_clock = wall_clock
        self._callback: AspiredVersionsCallback | None = None
        self._models: dict[str, _ModelWatch] = {}
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._scanned_once = False

    @classmethod
    def from_options(cls, loader_factory: LoaderFactory, options: FileSystemSourceOptions
                     ) -> FileSystemStoragePathSource:
        """The source ``ServerCore`` builds (its ``SourceFactory``), from its options record."""
        return cls(loader_factory, poll_wait_seconds=options.poll_wait_seconds,
                   settle_seconds=options.settle_seconds,
                   incomplete_grace_seconds=options.incomplete_grace_seconds)

    # -- configuration -------------------------------------------------------------------------
    def set_aspired_versions_callback(self, callback: AspiredVersionsCallback) -> None:
        """Set once, before ``start()``/``poll_once()``."""
        self._callback = callback

    def update_config(self, models: Sequence[ModelConfig]) -> None:
        """Watch exactly these models. Dropped models get an empty aspired list (they unload);
        a changed policy or base path is re-applied at once."""
        wanted = {m.name: m for m in models}
        with self._lock:
            for name in list(self._models):
                if name not in wanted:
                    del self._models[name]
                    self._emit(name, [])
            for name, config in wanted.items():
                watch = self._models.get(name)
                if watch is None or watch.config.base_path != config.base_path:
                    self._models[name] = _ModelWatch(config)
                elif watch.config != config:
                    watch.config = config
                    watch.emitted = None  # re-evaluate the policy
                    watch.next_full_scan = 0.0
        self._wake.set()

    def watched(self) -> Mapping[str, ModelConfig]:
        with self._lock:
            return {name: w.config for name, w in self._models.items()}

    # -- running -------------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="nbserve-source", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self.poll_once(full=False)
            except Exception:  # a bug here must not kill discovery for good
                log.exception("file system source iteration failed")
            self._wake.wait(self._watch_interval)
            self._wake.clear()

    def poll_once(self, full: bool = True) -> None:
        """One pass over every model: rescan those whose folder changed, whose poll period is
        due, or that have versions settling (all of them when ``full``)."""
        now = self._clock()
        with self._lock:
            watches = list(self._models.items())
        for name, watch in watches:
            if full or self._due(watch, now):
                self._scan(name, watch, now)

    def _due(self, watch: _ModelWatch, now: float) -> bool:
        if watch.candidates or now >= watch.next_full_scan:
            return True
        if self._poll_wait < 0 or (self._poll_wait == 0 and watch.emitted is not None):
            return False
        return self._stamp(watch.config.base_path) != watch.stamp

    @staticmethod
    def _stamp(path: str) -> float | None:
        try:
            return os.stat(path).st_mtime_ns
        except OSError:
            return None

    # -- scanning ------------------------------------------------------------------------------
    def _scan(self, name: str, watch: _ModelWatch, now: float) -> None:
        base = watch.config.base_path
        watch.stamp = self._stamp(base)
        watch.next_full_scan = now + self._poll_wait if self._poll_wait > 0 else float("inf")
        try:
            children = self._list_versions(name, base)
        except OSError as exc:
            if not watch.missing_logged:
                log.error("FileSystemStoragePathSource encountered a filesystem access error: "
                          "Could not find base path %s for servable %s with error %s",
                          base, name, exc)
                watch.missing_logged = True
            retry = max(self._poll_wait, 0.5) if self._poll_wait >= 0 else 1.0
            watch.next_full_scan = now + retry
            return
        watch.missing_logged = False
        self._update_taken(watch, children, now)
        if not children:
            if watch.emitted != ():
                log.warning("No versions of servable %s found under base path %s. Did you forget "
                            "to name your leaf directory as a number (eg. '/1/')?", name, base)
        aspired = watch.config.version_policy.select(watch.taken)
        entries = tuple((v, watch.taken[v]) for v in aspired)
        if entries != watch.emitted and not (watch.candidates and not entries and children):
            with self._lock:
                if self._models.get(name) is not watch:
                    return  # dropped or replaced meanwhile
                watch.emitted = entries
                self._emit(name, [ServableData(ServableId(name, v), self._loader_factory(
                    ServableId(name, v), path)) for v, path in entries])

    def _list_versions(self, name: str, base: str) -> dict[int, str]:
        versions: dict[int, str] = {}
        with os.scandir(base) as it:
            for entry in it:
                version = parse_version(entry.name)
                if version is None:
                    continue
                if version in versions:
                    log.warning("Servable %s has duplicate version folders for %d: using %s",
                                name, version, versions[version])
                    continue
                versions[version] = entry.path
        return versions

    def _update_taken(self, watch: _ModelWatch, children: dict[int, str], now: float) -> None:
        for version in [v for v, p in watch.taken.items() if children.get(v) != p]:
            del watch.taken[version]  # folder deleted or replaced
        live_paths = set(children.values())
        for path in [p for p in watch.candidates if p not in live_paths]:
            del watch.candidates[path]
        for version, path in children.items():
            if version not in watch.taken and self._settled(watch, path, now):
                watch.taken[version] = path
                watch.candidates.pop(path, None)

    def _settled(self, watch: _ModelWatch, path: str, now: float) -> bool:
        try:
            fingerprint = tree_fingerprint(path)
        except OSError:
            watch.candidates.pop(path, None)
            return False
        complete = has_model_file(path)
        wait = self._settle if complete else self._grace
        if self._wall_clock() - fingerprint[0] >= wait:
            return True
        candidate = watch.candidates.get(path)
        if candidate is None or candidate.fingerprint != fingerprint:
            watch.candidates[path] = _Candidate(fingerprint, now)
            return False
        return now - candidate.quiet_since >= wait

    def _emit(self, name: str, versions: list[ServableData]) -> None:
        if self._callback is None:
            raise RuntimeError("set_aspired_versions_callback() must be called first")
        log.info("Aspiring %d version(s) for servable %s: %s", len(versions), name,
                 [d.id.version for d in versions])
        self._callback(name, versions)

"""What every kind of version loader shares (TF Serving's ``Loader`` for one version folder).

``VersionLoader`` is the lifecycle half of ``SavedModelLoader`` and ``TfLiteLoader``: the
loaded / not-loaded state, the warmup replay that ends a load, ``unload`` and ``servable``. A
subclass says what it loads (``what``, for messages) and builds the servable (``_build``).

Contract (the manager's): construction is cheap; ``load()`` and ``unload()`` are never called
concurrently on one loader; ``servable()`` is valid between a successful ``load()`` and
``unload()``; ``load()`` raises only ServingError, and a servable whose warmup fails is closed
before the error propagates.
"""

from __future__ import annotations

import os
from typing import Any, Generic, Protocol, TypeVar

from nbserve.errors import ServingError, StatusCode, as_serving_error


class Closable(Protocol):
    def close(self) -> None: ...


S = TypeVar("S", bound=Closable)


class VersionLoader(Generic[S]):
    """One version folder's loader; subclasses implement ``_build``."""

    what = "Model"  # "SavedModel", "TFLite model": how messages name what is loaded

    def __init__(self, export_dir: str, *, enable_warmup: bool = True,
                 warmup_iterations: int = 1) -> None:
        self._export_dir = os.fspath(export_dir)
        self._enable_warmup = bool(enable_warmup)
        self._warmup_iterations = max(1, int(warmup_iterations))  # below 1 means 1
        self._servable: S | None = None

    @property
    def export_dir(self) -> str:
        return self._export_dir

    def load(self) -> None:
        """Build the servable, then replay the version's warmup file when enabled."""
        if self._servable is not None:
            raise ServingError(StatusCode.FAILED_PRECONDITION,
                               f"{self.what} at {self._export_dir} is already loaded")
        servable = self._build()
        if self._enable_warmup:
            self._warm_up(servable)
        self._servable = servable

    def _build(self) -> S:
        """Load the servable (raises only ServingError)."""
        raise NotImplementedError

    def _warm_up(self, servable: Any) -> None:
        """Replay ``assets.extra/tf_serving_warmup_requests``; on any failure close the
        servable and re-raise (as a ServingError unless it is not an Exception)."""
        from nbserve.servables.warmup import run_warmup

        try:
            run_warmup(servable, self._export_dir, self._warmup_iterations)
        except ServingError:
            servable.close()
            raise
        except Exception as exc:
            servable.close()
            raise as_serving_error(exc) from exc
        except BaseException:
            servable.close()
            raise

    def unload(self) -> None:
        """Close the servable and drop the reference to it. Idempotent."""
        servable, self._servable = self._servable, None
        if servable is not None:
            servable.close()

    def servable(self) -> S:
        if self._servable is None:
            raise ServingError(StatusCode.FAILED_PRECONDITION,
                               f"{self.what} at {self._export_dir} is not loaded")
        return self._servable

    def __repr__(self) -> str:
        state = "loaded" if self._servable is not None else "not loaded"
        return f"{type(self).__name__}({self._export_dir!r}, {state})"

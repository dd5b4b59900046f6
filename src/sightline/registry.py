"""Name -> implementation registries; backends register themselves with a decorator.

    detectors = Registry[FaceDetector]("detector")

    @detectors.register("hog")
    class HogDetector(FaceDetector): ...

An unknown name raises ``KeyError`` listing the valid names. Registration happens when the
backend's module is imported; ``Registry.get`` imports the package's backend modules lazily
through the optional ``loader`` so that nothing heavy runs at ``import sightline``.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")


class UnknownBackendError(KeyError):
    """Raised for a name no backend registered; the message lists the valid names."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable.
        return str(self.args[0])


class Registry(Generic[T]):
    """A mapping from a backend name to the class (or factory) that implements it."""

    def __init__(self, kind: str, loader: Callable[[], None] | None = None) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._loader = loader
        self._loaded = False

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._items and self._items[name] is not obj:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = obj
            return obj

        return deco

    def _ensure_loaded(self) -> None:
        if not self._loaded and self._loader is not None:
            self._loaded = True
            self._loader()

    def get(self, name: str) -> T:
        self._ensure_loaded()
        try:
            return self._items[name]
        except KeyError:
            valid = ", ".join(sorted(self._items)) or "(none)"
            raise UnknownBackendError(f"unknown {self.kind} {name!r}; valid names: {valid}") from None

    def names(self) -> list[str]:
        self._ensure_loaded()
        return sorted(self._items)


def import_backends(package: str, path: Iterable[str]) -> None:
    """Import every module of a backend package so that its ``@register`` decorators run.

    A backend whose third-party runtime is not installed (say ``onnxruntime``) is skipped and
    logged; an import error inside Sightline itself is a bug and propagates.
    """
    for info in pkgutil.iter_modules(list(path)):
        name = f"{package}.{info.name}"
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.split(".")[0] == "sightline":
                raise
            logger.info("backend %s not available: %s", name, exc)

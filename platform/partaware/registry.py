"""A small generic registry: names (with aliases) to objects, or to lazy ``"module:attr"`` targets.

Why lazy targets: ``partctl datasets list`` and ``partctl encoders list`` must not import torch or
Ray just to print names. Why aliases resolve to one id: result records store the id, never the alias,
so two spellings of one encoder never produce two cache entries.

Add an entry with ``REGISTRY.register("name", obj_or_target, aliases=[...])`` next to the thing it
names; the tests parametrised over ``REGISTRY.names()`` pick it up without edits.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Iterable, Iterator
from typing import Generic, TypeVar

from partaware.errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps stable names to objects; ``get`` on a miss raises with suggestions and every valid name."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T | str] = {}
        self._aliases: dict[str, str] = {}

    def register(self, name: str, target: T | str, *, aliases: Iterable[str] = ()) -> T | str:
        """Register ``target`` (an object, or a lazy ``"package.module:attr"`` string) under ``name``."""
        for key in (name, *aliases):
            if key in self._entries or key in self._aliases:
                raise ValueError(f"{self.kind} name {key!r} is already registered")
        self._entries[name] = target
        for alias in aliases:
            self._aliases[alias] = name
        return target

    def resolve(self, name: str) -> str:
        """The canonical name for ``name`` or one of its aliases."""
        if name in self._entries:
            return name
        if name in self._aliases:
            return self._aliases[name]
        candidates = [*self._entries, *self._aliases]
        close = difflib.get_close_matches(name, candidates, n=1)
        raise UnknownNameError(self.kind, name, self._entries, close[0] if close else None)

    def get(self, name: str) -> T:
        """The registered object; a lazy target is imported on first use and cached."""
        key = self.resolve(name)
        target = self._entries[key]
        if isinstance(target, str):
            module_name, _, attr = target.partition(":")
            target = getattr(importlib.import_module(module_name), attr)
            self._entries[key] = target
        return target  # type: ignore[return-value]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries or name in self._aliases

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

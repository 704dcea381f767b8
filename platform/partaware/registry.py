"""A small generic registry: names (with aliases) to objects, or to lazy ``"module:attr"`` targets.

Why lazy targets: ``partctl datasets list`` and ``partctl encoders list`` must not import torch or
Ray just to print names. Why aliases resolve to one id: result records store the id, never the alias,
so two spellings of one encoder never produce two cache entries. Why a ``loader``: a registry filled
by the modules that define its entries (timm's and lm-eval's way) is complete whenever it is used,
without callers remembering to import those modules first. Why ``base``: a wrong object registered
by mistake fails at registration, naming the registry, not later in a Ray worker.

Add an entry with ``REGISTRY.register("name", obj_or_target, aliases=[...])`` next to the thing it
names; the tests parametrised over ``REGISTRY.names()`` pick it up without edits.
"""

from __future__ import annotations

import difflib
import importlib
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TypeVar

from partaware.errors import UnknownNameError

T = TypeVar("T")

_PENDING, _LOADING, _LOADED = "pending", "loading", "loaded"


class Registry(Generic[T]):
    """Maps stable names to objects; ``get`` on a miss raises with suggestions and every valid name.

    ``base``: a type (or tuple of types, ``collections.abc.Callable`` included) every entry must be an
    instance of; objects are checked at registration, lazy targets when first resolved.
    ``loader``: run once, before the first lookup or listing (never by ``register``), typically
    importing the modules whose import registers the built-in entries.
    """

    def __init__(
        self, kind: str, *, base: type | tuple[type, ...] | None = None, loader: Callable[[], None] | None = None
    ):
        self.kind = kind
        self.base = base
        self._loader = loader
        self._state = _PENDING if loader else _LOADED
        self._lock = threading.RLock()
        self._entries: dict[str, T | str] = {}
        self._aliases: dict[str, str] = {}

    # --- loading ----------------------------------------------------------------------------------

    def load(self) -> None:
        """Run the loader now (once); lookups call this themselves. Re-entrant: a module the loader
        imports may look names up while it registers (it sees what is registered so far)."""
        if self._state == _LOADED:
            return
        with self._lock:
            if self._state != _PENDING:  # loaded meanwhile, or this thread is inside the loader
                return
            self._state = _LOADING
            try:
                self._loader()  # type: ignore[misc]
            except BaseException:
                self._state = _PENDING  # the next lookup retries (and raises the same error)
                raise
            self._state = _LOADED

    # --- registration -----------------------------------------------------------------------------

    def register(self, name: str, target: T | str, *, aliases: Iterable[str] = ()) -> T | str:
        """Register ``target`` (an object, or a lazy ``"package.module:attr"`` string) under ``name``."""
        aliases = list(aliases)
        if not isinstance(target, str):
            self.check(name, target)
        elif ":" not in target:
            raise ValueError(f"{self.kind} {name!r}: a lazy target is 'package.module:attr', not {target!r}")
        for key in (name, *aliases):
            if key in self._entries or key in self._aliases:
                raise ValueError(f"{self.kind} name {key!r} is already registered")
        self._entries[name] = target
        for alias in aliases:
            self._aliases[alias] = name
        return target

    def check(self, name: str, target: object) -> None:
        """Raise ``TypeError`` (naming this registry) unless ``target`` is an instance of ``base``."""
        if self.base is not None and not isinstance(target, self.base):
            bases = self.base if isinstance(self.base, tuple) else (self.base,)
            wanted = " or ".join(getattr(b, "__name__", str(b)) for b in bases)
            raise TypeError(f"{self.kind} {name!r} must be a {wanted}, got {type(target).__name__}")

    # --- lookup -----------------------------------------------------------------------------------

    def resolve(self, name: str) -> str:
        """The canonical name for ``name`` or one of its aliases."""
        self.load()
        if name in self._entries:
            return name
        if name in self._aliases:
            return self._aliases[name]
        candidates = [*self._entries, *self._aliases]
        close = difflib.get_close_matches(name, candidates, n=1)
        raise UnknownNameError(self.kind, name, self._entries, close[0] if close else None)

    def get(self, name: str) -> T:
        """The registered object; a lazy target is imported on first use, checked and cached."""
        key = self.resolve(name)
        target = self._entries[key]
        if isinstance(target, str):
            module_name, _, attr = target.partition(":")
            obj = getattr(importlib.import_module(module_name), attr)
            self.check(key, obj)
            self._entries[key] = target = obj
        return target  # type: ignore[return-value]

    def __getitem__(self, name: str) -> T:
        """``REGISTRY[name]`` is ``get`` (the registries that were plain dicts keep that spelling)."""
        return self.get(name)

    def aliases(self, name: str) -> list[str]:
        """The aliases registered for the canonical ``name`` (or one of its aliases), in order."""
        key = self.resolve(name)
        return [alias for alias, target in self._aliases.items() if target == key]

    def names(self) -> list[str]:
        self.load()
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        self.load()
        return name in self._entries or name in self._aliases

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        self.load()
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self._entries)} entries)"

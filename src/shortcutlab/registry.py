"""One registry type for every name -> object table of the library.

Models, training algorithms, interventions, attacks, LRP rules, explanation methods and
background styles are all chosen by name: on the command line, in a sweep spec, in a
run's ``config.json``. They share :class:`Registry` so that every one of those lookups
behaves the same way:

- an unknown name is a :class:`~shortcutlab.errors.ShortcutlabError` with one message
  shape everywhere, e.g. ``unknown attack 'pgdd'; choose one of: fgsm, pgd, pgd-l2``;
- a name registered twice with a different object is a bug and raises ``ValueError``
  (registering the same object again, as a re-import does, is harmless);
- a registry whose entries are defined in modules nobody may have imported yet (the
  interventions, which ``shortcutlab.train`` can name) takes a ``loader`` that imports
  them, called before the first lookup, so a lookup never depends on import order.

A registry reads like a read-only dict of its entries: ``name in registry``,
``registry[name]``, iteration over the names, ``items()``, ``len()``; only
``registry[name]`` of an unknown name raises the ShortcutlabError, not ``KeyError``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, Generic, Literal, TypeVar

from shortcutlab.errors import ShortcutlabError

T = TypeVar("T")

Order = Literal["sorted", "registered"] | Sequence[str]


class Registry(Generic[T]):
    """Named objects of one ``kind`` (the word the error message uses: ``"attack"``).

    ``order`` sets the order of :meth:`names`, iteration and the error message:
    ``"sorted"`` (alphabetical, the default), ``"registered"`` (registration order), or
    a sequence of names that come first in that order, the rest following in
    registration order. ``loader`` imports the modules that register the entries; it
    runs once, before the first lookup. ``hint`` is appended to the unknown-name error,
    e.g. ``" (shortcutlab intervene --list describes them)"``.
    """

    def __init__(self, kind: str, *, loader: Callable[[], Any] | None = None,
                 order: Order = "sorted", hint: str = "") -> None:
        if not isinstance(order, str):
            order = tuple(order)
        elif order not in ("sorted", "registered"):
            raise ValueError(f"order must be 'sorted', 'registered' or a sequence of names, "
                             f"got {order!r}")
        self.kind = kind
        self.hint = hint
        self._order = order
        self._loader = loader
        self._loaded = loader is None
        self._loading = False
        self._entries: dict[str, T] = {}

    # ------------------------------------------------------------------ registering

    def register(self, name: str, obj: T) -> T:
        """Add ``obj`` under ``name`` and return it; ValueError if the name holds another."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.kind} needs a non-empty name, got {name!r}")
        known = self._entries.get(name)
        if known is not None and known is not obj:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = obj
        return obj

    def register_as(self, name: str) -> Callable[[T], T]:
        """Decorator form of :meth:`register`: ``@registry.register_as("pgd")``."""
        def decorator(obj: T) -> T:
            return self.register(name, obj)
        return decorator

    # --------------------------------------------------------------------- looking up

    def _load(self) -> None:
        if self._loaded or self._loading or self._loader is None:
            return
        self._loading = True  # a module the loader imports may look names up itself
        try:
            self._loader()
            self._loaded = True
        finally:
            self._loading = False

    def get(self, name: str) -> T:
        """The object registered as ``name``, or a ShortcutlabError listing the names."""
        self._load()
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise ShortcutlabError(self.unknown_message(name)) from None

    def unknown_message(self, name: Any) -> str:
        """``unknown KIND 'NAME'; choose one of: A, B, C`` plus the hint."""
        return f"unknown {self.kind} {name!r}; choose one of: {', '.join(self.names())}{self.hint}"

    def names(self) -> list[str]:
        """The registered names, in the registry's order."""
        self._load()
        if self._order == "sorted":
            return sorted(self._entries)
        if self._order == "registered":
            return list(self._entries)
        first = [name for name in self._order if name in self._entries]
        return first + [name for name in self._entries if name not in self._order]

    def items(self) -> list[tuple[str, T]]:
        return [(name, self._entries[name]) for name in self.names()]

    def values(self) -> list[T]:
        return [self._entries[name] for name in self.names()]

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        self._load()
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, names={self.names()})"

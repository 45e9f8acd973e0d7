"""Frozen value classes that cost little to define: ``@frozen`` on a subclass of ``Value``, where
``@dataclass(frozen=True)`` would be.

Such a class is a dataclass (``fields``, ``replace``, ``asdict`` work; defaults and default
factories as usual) and behaves as a frozen one: equality, hash and repr by its fields, and
``FrozenInstanceError`` on assignment. What differs is the cost of defining it. dataclasses
compiles six methods of every frozen class one by one (``__init__``, ``__repr__``, ``__eq__``,
``__hash__``, ``__setattr__``, ``__delattr__``); for the plan, the executor's events and the store's
rows, those compiles were a large part of every command's start. Here the last five are written
once, in ``Value``, and the first instance of any such class compiles the ``__init__`` of every
class decorated so far in one go (``ready``).
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

__all__ = ["Value", "frozen", "ready"]

_pending: list[type] = []
_lock = threading.Lock()


class _Factory:
    def __repr__(self) -> str:
        return "<factory>"  # as dataclasses shows it in a signature


_FACTORY = _Factory()  # the default of a field with a default_factory: "not given"


class Value:
    """Immutability, equality, hash and repr by fields, as ``@dataclass(frozen=True)`` makes them.
    ``__init__`` sets each field once; nothing can set one again."""

    __slots__ = ()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Only the first time a class is made: ``ready`` gives it (and the others) its own."""
        ready()
        init = type(self).__init__
        if init is Value.__init__:
            raise TypeError(f"{type(self).__qualname__} is not a @frozen class")
        init(self, *args, **kwargs)

    def __setattr__(self, name: str, value: object) -> None:
        if name in self.__dict__ or name not in self.__dataclass_fields__:
            raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")

    def _compared(self) -> tuple:
        return tuple(getattr(self, f.name) for f in dataclasses.fields(self) if f.compare)

    def __eq__(self, other: object) -> bool:
        return self._compared() == other._compared() if other.__class__ is self.__class__ else NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(getattr(self, f.name) for f in dataclasses.fields(self)
                          if (f.compare if f.hash is None else f.hash)))

    def __repr__(self) -> str:
        shown = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in dataclasses.fields(self) if f.repr)
        return f"{type(self).__qualname__}({shown})"


def frozen(cls: type) -> type:
    """Make ``cls`` (a subclass of ``Value``) a dataclass whose ``__init__`` is compiled when the
    first instance of any such class is made. A class without a docstring gets its name as one (dataclasses would compute a
    signature for it, an import of ``inspect``'s slow path)."""
    if not issubclass(cls, Value):
        raise TypeError(f"{cls.__name__}: a @frozen class derives from runner.values.Value")
    cls.__doc__ = cls.__doc__ or f"{cls.__name__}."
    cls = dataclasses.dataclass(init=False, eq=False, repr=False)(cls)
    with _lock:
        _pending.append(cls)
    return cls


def ready() -> None:
    """Give every ``@frozen`` class decorated since the last call the ``__init__`` dataclasses would
    write (fields in order, defaults and default factories, each field set once with
    ``object.__setattr__`` as a frozen dataclass does), all compiled together."""
    with _lock:  # held until they are set: another thread's first instance waits for them
        if _pending:
            _give_inits(list(_pending))
            _pending.clear()


def _give_inits(classes: list[type]) -> None:
    names: dict[str, Any] = {"_set": object.__setattr__, "_FACTORY": _FACTORY}
    sources = []
    for n, cls in enumerate(classes):
        params, body = [], []
        for f in dataclasses.fields(cls):
            given = f.name
            if f.default is not dataclasses.MISSING:
                names[default := f"_default_{n}_{f.name}"] = f.default
                params.append(f"{f.name}={default}")
            elif f.default_factory is not dataclasses.MISSING:
                names[factory := f"_factory_{n}_{f.name}"] = f.default_factory
                params.append(f"{f.name}=_FACTORY")
                given = f"{factory}() if {f.name} is _FACTORY else {f.name}"
            else:
                params.append(f.name)
            body.append(f"    _set(self, {f.name!r}, {given})")
        sources.append(f"def _init_{n}(self, {', '.join(params)}):\n" + "\n".join(body or ["    pass"]))
    exec(compile("\n\n".join(sources), f"<__init__ of {classes[0].__module__} and others>", "exec"), names)
    for n, cls in enumerate(classes):
        init = names[f"_init_{n}"]
        init.__name__, init.__qualname__, init.__module__ = "__init__", f"{cls.__qualname__}.__init__", cls.__module__
        cls.__init__ = init

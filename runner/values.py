"""Frozen value classes that cost little to define: ``@frozen`` on a subclass of ``Value``, where
``@dataclass(frozen=True)`` would be.

Such a class is a dataclass (``fields``, ``replace``, ``asdict`` work; defaults and default
factories as usual) and behaves as a frozen one: equality, hash and repr by its fields, and
``FrozenInstanceError`` on assignment. What differs is the cost of defining it. dataclasses
compiles six methods of every frozen class one by one (``__init__``, ``__repr__``, ``__eq__``,
``__hash__``, ``__setattr__``, ``__delattr__``); for the plan, the executor's events and the store's
rows, those compiles were a large part of every command's start. Here the last five are written
once, in ``Value``, and a class's ``__init__`` is compiled when its first instance is made: a command
pays only for the classes it uses (`conveyor lint` makes a few of the fifty).
"""

from __future__ import annotations

import dataclasses
import types
from typing import Any

__all__ = ["Value", "frozen"]


class _Factory:
    def __repr__(self) -> str:
        return "<factory>"  # as dataclasses shows it in a signature


_FACTORY = _Factory()  # the default of a field with a default_factory: "not given"
# How dataclasses mark a Field that is a field (not a ClassVar or InitVar), in 3.7 to 3.14.
_FIELD = getattr(dataclasses, "_FIELD", None)
# What dataclasses records of the decorator's arguments; read when a dataclass derives from this one.
_PARAMS = types.SimpleNamespace(init=False, repr=False, eq=False, order=False, unsafe_hash=False, frozen=True,
                                match_args=False, kw_only=False, slots=False, weakref_slot=False)


class Value:
    """Immutability, equality, hash and repr by fields, as ``@dataclass(frozen=True)`` makes them.
    ``__init__`` sets each field once; nothing can set one again."""

    __slots__ = ()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError(f"{type(self).__qualname__} is not a @frozen class")

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
    """Make ``cls`` (a subclass of ``Value``) a dataclass whose ``__init__`` is compiled when its first
    instance is made."""
    if not issubclass(cls, Value):
        raise TypeError(f"{cls.__name__}: a @frozen class derives from runner.values.Value")
    cls.__doc__ = cls.__doc__ or f"{cls.__name__}."  # dataclasses would compute a signature for it
    if _FIELD is None:  # a Python whose dataclasses lack the marker below: let them do it all
        cls = dataclasses.dataclass(init=False, eq=False, repr=False)(cls)
    else:
        _give_fields(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # The first instance only: replace this with the compiled __init__ (two threads racing both
        # compile the same one) and make the instance with it.
        cls.__init__ = _compiled_init(cls)
        cls.__init__(self, *args, **kwargs)

    __init__.__qualname__ = f"{cls.__qualname__}.__init__"
    cls.__init__ = __init__
    return cls


def _give_fields(cls: type) -> None:
    """What ``dataclasses.dataclass(init=False, eq=False, repr=False)`` leaves on a class, without the
    rest of its work (a third of `conveyor lint`'s own import time went there): the fields, inherited
    ones first, as ``dataclasses.Field`` objects marked as fields, so that ``fields``, ``replace``,
    ``asdict`` and ``is_dataclass`` see a dataclass; each class attribute holds its default, as
    dataclasses leaves it. No annotation in Conveyor is a ``ClassVar`` or ``InitVar``."""
    fields: dict[str, dataclasses.Field] = {}
    for base in reversed(cls.__mro__[1:]):
        fields.update(base.__dict__.get("__dataclass_fields__", {}))
    for name, annotation in cls.__dict__.get("__annotations__", {}).items():
        given = cls.__dict__.get(name, dataclasses.MISSING)
        f = given if isinstance(given, dataclasses.Field) else dataclasses.field(default=given)
        if f.default.__class__.__hash__ is None:  # dataclasses' own rule: a list, dict, set, ...
            raise ValueError(f"mutable default {type(f.default)} for field {name} is not allowed: "
                             "use default_factory")
        f.name, f.type, f._field_type, f.kw_only = name, annotation, _FIELD, False
        if given is not f.default:
            if f.default is dataclasses.MISSING:
                delattr(cls, name)  # a field(default_factory=...): no class attribute, as dataclasses does
            else:
                setattr(cls, name, f.default)
        fields[name] = f
    cls.__dataclass_fields__ = fields
    cls.__dataclass_params__ = _PARAMS


def _compiled_init(cls: type) -> Any:
    """The ``__init__`` dataclasses would write for ``cls``: fields in order, defaults and default
    factories, each field set once with ``object.__setattr__`` as a frozen dataclass does."""
    names: dict[str, Any] = {"_set": object.__setattr__, "_FACTORY": _FACTORY}
    params, body = [], []
    for f in dataclasses.fields(cls):
        given = f.name
        if f.default is not dataclasses.MISSING:
            names[default := f"_default_{f.name}"] = f.default
            params.append(f"{f.name}={default}")
        elif f.default_factory is not dataclasses.MISSING:
            names[factory := f"_factory_{f.name}"] = f.default_factory
            params.append(f"{f.name}=_FACTORY")
            given = f"{factory}() if {f.name} is _FACTORY else {f.name}"
        else:
            params.append(f.name)
        body.append(f"    _set(self, {f.name!r}, {given})")
    source = f"def __init__(self, {', '.join(params)}):\n" + "\n".join(body or ["    pass"])
    exec(compile(source, f"<__init__ of {cls.__module__}.{cls.__qualname__}>", "exec"), names)
    init = names["__init__"]
    init.__qualname__, init.__module__ = f"{cls.__qualname__}.__init__", cls.__module__
    return init

"""runner.values: a ``@frozen`` class behaves as ``@dataclass(frozen=True)`` does, gets its
``__init__`` when the first instance of any is made, and every one in Conveyor gets one."""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from dataclasses import field

import pytest

import runner
from runner.values import Value, _compiled_init, frozen


@frozen
class Base(Value):
    time: float


@frozen
class Point(Base):
    x: int
    y: int = 0
    tags: list[str] = field(default_factory=list)
    note: str = field(default="", compare=False)
    cached: int = field(default=0, hash=False)


@dataclasses.dataclass(frozen=True)
class RefBase:
    time: float


@dataclasses.dataclass(frozen=True)
class RefPoint(RefBase):
    x: int
    y: int = 0
    tags: list[str] = field(default_factory=list)
    note: str = field(default="", compare=False)
    cached: int = field(default=0, hash=False)


def test_a_frozen_class_behaves_as_a_frozen_dataclass():
    p, ref = Point(1.0, 2, note="n"), RefPoint(1.0, 2, note="n")
    assert repr(p).replace("Point", "") == repr(ref).replace("RefPoint", "")
    assert [f.name for f in dataclasses.fields(p)] == [f.name for f in dataclasses.fields(ref)]
    assert p == Point(1.0, 2, note="other") and p != Point(1.0, 3)  # `note` is not compared
    assert p != ref  # another class: never equal, as dataclasses have it
    assert Point(1.0, 2, cached=5) != Point(1.0, 2, cached=6)  # compared, but not hashed (below)
    assert (RefPoint(1.0, 2, cached=5) == RefPoint(1.0, 2, cached=6)) is False
    assert Point(1.0, 2, tags=["a"]).tags == ["a"] and Point(1.0, 2).tags is not Point(1.0, 2).tags
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.x = 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        del p.x
    with pytest.raises(TypeError):
        hash(p)  # a list field: unhashable, as with dataclasses
    assert dataclasses.replace(p, y=7) == Point(1.0, 2, 7) and dataclasses.asdict(p)["y"] == 0
    with pytest.raises(TypeError):
        Point(1.0)  # `x` is required
    hashable = Point(1.0, 2, tags=(), cached=1)
    assert hash(hashable) == hash(Point(1.0, 2, tags=(), cached=2))  # `cached` is not hashed
    assert dataclasses.is_dataclass(Point) and dataclasses.is_dataclass(p)
    for name in ("time", "x", "y", "tags", "note", "cached"):  # class attributes: defaults, as dataclasses leave them
        assert getattr(Point, name, "absent") == getattr(RefPoint, name, "absent"), name
    assert [(f.name, f.default, f.compare, f.hash, f.repr) for f in dataclasses.fields(Point)] == [
        (f.name, f.default, f.compare, f.hash, f.repr) for f in dataclasses.fields(RefPoint)]


def test_a_mutable_default_is_refused_as_dataclasses_refuse_it():
    with pytest.raises(ValueError, match="mutable default .* use default_factory"):
        @frozen
        class Bad(Value):
            items: list = []  # noqa: RUF012 - the point of the test


def test_a_class_compiles_its_init_at_its_first_instance():
    @frozen
    class Late(Value):
        a: int
        b: str = "b"

    @frozen
    class Later(Late):
        c: tuple = ()

    class Plain(Late):
        pass

    assert "__init__" in Late.__dict__ and Late.__init__.__qualname__.endswith("Late.__init__")
    waiting = Late.__init__
    assert Later(1, c=(2,)) == Later(a=1, b="b", c=(2,))  # its own fields, before Late has an instance
    assert Late.__init__ is waiting  # Late's is still waiting: Later compiled only its own
    assert Plain(3) == Plain(3, "b") and Late.__init__ is not waiting  # a plain subclass uses Late's
    assert Late(1) == Late(a=1, b="b") and repr(Late(2, "x")).endswith(".Late(a=2, b='x')")
    with pytest.raises(TypeError):
        Later(1, 2, 3, 4)
    with pytest.raises(TypeError):
        Value()


def test_every_frozen_class_of_conveyor_compiles_its_init():
    for module in pkgutil.walk_packages(runner.__path__, "runner."):
        if not module.name.endswith(("__main__", "_render_child")):  # programs, not modules
            importlib.import_module(module.name)
    classes, todo = [], list(Value.__subclasses__())
    while todo:
        cls = todo.pop()
        classes.append(cls)
        todo.extend(cls.__subclasses__())
    ours = [c for c in classes if c.__module__.startswith("runner.")]
    assert len(ours) > 40  # the plan, the events, the store's rows, ...
    for cls in ours:  # what the first instance will compile: a field's name or default could break it
        init = _compiled_init(cls)
        assert init.__code__.co_varnames[:init.__code__.co_argcount] == (
            "self", *(f.name for f in dataclasses.fields(cls))), cls

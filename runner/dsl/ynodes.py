"""The positioned tree ``runner.dsl.yamlload`` builds: every node knows its 1-based line and column,
and how many nodes it stands for once aliases are expanded (what the alias bound counts)."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["YNode", "YScalar", "YMap", "YSeq", "to_py"]


@dataclass(eq=False)
class YNode:
    line: int
    col: int
    size: int = field(default=1, repr=False)  # nodes below and including this one, aliases expanded


@dataclass(eq=False)
class YScalar(YNode):
    value: object = None  # str, int, float, bool or None
    text: str = ""  # the scalar as written (keys use it)
    quoted: bool = False
    # A plain scalar written over several lines: (line, col, text) of each continuation line, whose
    # line break YAML folded into a space (lint spots list items indented into the step above).
    continued: tuple[tuple[int, int, str], ...] = ()


@dataclass(eq=False)
class YMap(YNode):
    entries: dict[str, tuple[YScalar, YNode]] = field(default_factory=dict)

    def get(self, key: str) -> YNode | None:
        entry = self.entries.get(key)
        return entry[1] if entry else None


@dataclass(eq=False)
class YSeq(YNode):
    items: list[YNode] = field(default_factory=list)


def to_py(node: YNode | None) -> object:
    """Plain Python data (shares aliased subtrees; callers have already bounded the size)."""
    if node is None:
        return None
    if isinstance(node, YScalar):
        return node.value
    if isinstance(node, YSeq):
        return [to_py(n) for n in node.items]
    return {k: to_py(v) for k, (_key, v) in node.entries.items()}

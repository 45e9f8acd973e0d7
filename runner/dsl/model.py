"""The authoring model's building blocks: typed specs that check positioned YAML nodes, and containers.

A spec's ``check(node, cx, path, where)`` returns the node's value in plain, normalised Python
(durations as seconds, memory as bytes, objects as dicts) or ``INVALID``, and records every problem
it sees in ``cx.diags`` with the node's line and column. ``where`` names the object for messages
("stage 'test'"). Objects keep their node under ``"__node__"`` so later passes can point at keys.
Scalar specs (strings, numbers, durations, sizes, choices) are in ``values.py``; the pipeline's own
schema is built from both in ``schema.py``.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, field

from runner.diagnostics import Diagnostics
from runner.dsl.yamlload import YMap, YNode, YScalar, YSeq
from runner.regex import lazy
from runner.values import Value, frozen

__all__ = ["INVALID", "Cx", "LintOptions", "ROLES", "Spec", "ListOf", "MapOf", "Obj", "Either", "Field", "describe", "did_you_mean", "short"]

INVALID = object()
_CONTROL = lazy(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


ROLES = ("viewer", "developer", "deployer", "admin")  # the server's roles, valid approvers everywhere


@frozen
class LintOptions(Value):
    """What the runner that will run the file knows, for rules that depend on it."""

    backend: str = "docker"  # "swarm" places jobs by node label; docker and local cannot
    runner_labels: frozenset[str] = frozenset()  # labels this runner declares (runs_on may use them)
    users: frozenset[str] = frozenset()  # configured user names, valid approvers besides ROLES
    # The configured deploy environments as (name, approvers) pairs; None: not known here, so a
    # deploy's `environment` is checked when it runs instead.
    environments: tuple[tuple[str, tuple[str, ...]], ...] | None = None


@dataclass
class Cx:
    diags: Diagnostics
    trusted: bool = False
    options: LintOptions = field(default_factory=LintOptions)

    def error(self, node: YNode, code: str, message: str, path: str) -> None:
        self.diags.error(code, message, node.line, node.col, path)

    def warning(self, node: YNode, code: str, message: str, path: str) -> None:
        self.diags.warning(code, message, node.line, node.col, path)

    def did_you_mean(self, word: str, choices) -> str:
        """``did_you_mean``, for the first ``MAX_HINTS`` mistakes of a file: each searches every
        name it could be, and a generated file can make thousands of the same mistake."""
        if self.diags.hints_left <= 0:
            return ""
        self.diags.hints_left -= 1
        return did_you_mean(word, choices)


def describe(node: YNode) -> str:
    """What the user wrote, in their words, for 'must be X, not Y' messages."""
    if isinstance(node, YMap):
        return "a mapping"
    if isinstance(node, YSeq):
        return "a list"
    value = node.value
    if value is None:
        return "empty"
    if isinstance(value, bool):
        return f"a boolean ({node.text})"
    if isinstance(value, (int, float)):
        return f"a number ({node.text})"
    return f"a string ('{short(node.text)}')"


def did_you_mean(word: str, choices) -> str:
    if len(word) > 64:  # difflib is quadratic; nobody misspells a 64-character key
        return ""
    import difflib  # only a file with a mistake pays its import

    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def short(text: str, n: int = 40) -> str:
    """For messages: one line (control characters escaped), at most ``n`` characters."""
    text = _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)
    return text if len(text) <= n else text[: n - 3] + "..."


class Spec(abc.ABC):
    expected = "a value"

    @abc.abstractmethod
    def check(self, node: YNode, cx: Cx, path: str, where: str):
        """The checked value of ``node``, or INVALID after reporting what is wrong."""

    def wrong(self, node: YNode, cx: Cx, path: str, where: str):
        cx.error(node, "type", f"{where} must be {self.expected}, not {describe(node)}", path)
        return INVALID


class ListOf(Spec):
    def __init__(self, item: Spec, single: bool = False, unique: str | None = None, what: str = "item") -> None:
        self.item, self.single, self.unique, self.what = item, single, unique, what
        self.expected = "a list" + (f" or {item.expected}" if single else "")

    def check(self, node, cx, path, where):
        if self.single and isinstance(node, YScalar) and node.value is not None:
            value = self.item.check(node, cx, path, where)
            return INVALID if value is INVALID else [value]
        if not isinstance(node, YSeq):
            return self.wrong(node, cx, path, where)
        out, seen, bad = [], {}, False
        for i, child in enumerate(node.items):
            value = self.item.check(child, cx, f"{path}[{i}]", f"{self.what} {i + 1} of {where}")
            bad |= value is INVALID
            out.append(value)
            # By the name as written, so a duplicate is reported even when the item has other errors.
            at = child.get(self.unique) if self.unique and isinstance(child, YMap) else None
            if isinstance(at, YScalar) and at.value is not None:
                name = at.text
                if name in seen:
                    cx.error(at, "duplicate-name", f"duplicate {self.what} name '{name}' in {where} "
                             f"(first used on line {seen[name]})", f"{path}[{i}].{self.unique}")
                else:
                    seen[name] = at.line
        return INVALID if bad else out


_ENV_NAME = lazy(r"^[A-Za-z_][A-Za-z0-9_]*\Z")


class MapOf(Spec):
    """A mapping of names to scalars, as strings (env, labels, build args)."""

    expected = "a mapping of names to values"

    # Every job carries its merged env, so a huge map would be copied into every job of the plan.
    MAX_ITEMS = 200
    MAX_BYTES = 32 * 1024

    def __init__(self, names: str = _ENV_NAME.pattern, what: str = "name") -> None:
        self.names, self.what = lazy(names), what

    def check(self, node, cx, path, where):
        if not isinstance(node, YMap):
            return self.wrong(node, cx, path, where)
        size = sum(len(k) + len(getattr(v, "text", "")) for k, (_kn, v) in node.entries.items())
        if len(node.entries) > self.MAX_ITEMS or size > self.MAX_BYTES:
            cx.error(node, "too-large", f"{where} has {len(node.entries)} entries and {size} bytes; at most "
                     f"{self.MAX_ITEMS} and {self.MAX_BYTES // 1024} KiB (put big data in a file)", path)
            return INVALID
        out, bad = {}, False
        for key, (knode, vnode) in node.entries.items():
            if not self.names.match(key):
                cx.error(knode, "value", f"'{short(key)}' in {where} is not a valid {self.what}", f"{path}.{key}")
                bad = True
            elif not isinstance(vnode, YScalar) or vnode.value is None:
                cx.error(vnode, "type", f"'{key}' in {where} must be a string, number or boolean, "
                         f"not {describe(vnode)}", f"{path}.{key}")
                bad = True
            else:
                v = vnode.value
                out[key] = ("true" if v else "false") if isinstance(v, bool) else (v if isinstance(v, str) else vnode.text)
        return INVALID if bad else out


@dataclass
class Field:
    spec: Spec
    required: bool = False


@dataclass
class Obj(Spec):
    """A mapping with known keys. ``kind`` + the ``name`` key label it in messages ("job 'unit'")."""

    kind: str
    fields: dict[str, Field]
    named: bool = False
    validate: Callable | None = None  # (value, node, cx, path, label) -> None, after valid fields
    shape: Callable | None = None  # (node, cx, path, label) -> None, on the keys alone, always
    missing: dict[str, str] = field(default_factory=dict)  # custom messages for missing keys
    expected: str = "a mapping"
    extensions: bool = False  # ignore keys starting with "." or "x-" (anchors' homes, as in GitLab/Compose)

    def check(self, node, cx, path, where):
        if not isinstance(node, YMap):
            return self.wrong(node, cx, path, where)
        label = where
        name_node = node.get("name") if self.named else None
        if isinstance(name_node, YScalar) and isinstance(name_node.value, (str, int, float)) and name_node.text:
            label = f"{self.kind} '{short(name_node.text)}'"
        out: dict = {"__node__": node}
        bad = False
        meant = set()  # keys an unknown key probably meant: not reported again as missing
        for key, (knode, vnode) in node.entries.items():
            spec = self.fields.get(key)
            if spec is None and self.extensions and key.startswith((".", "x-")):
                continue
            if spec is None:
                hint = cx.did_you_mean(key, self.fields)
                meant.add(hint[len(" (did you mean '"):-len("'?)")] if hint else None)
                cx.error(knode, "unknown-key", f"unknown key '{short(key)}' in {label}{hint}", f"{path}.{key}")
                bad = True
                continue
            value = spec.spec.check(vnode, cx, f"{path}.{key}", f"'{key}' in {label}")
            if value is INVALID:
                bad = True
            else:
                out[key] = value
        for key, spec in self.fields.items():
            if spec.required and key not in node.entries and key not in meant:
                message = self.missing.get(key, "{label} needs '{key}'").format(label=label, key=key)
                cx.error(node, "missing-key", message, path)
                bad = True
        if self.shape and not meant:  # an unknown key is the likelier cause of a shape problem
            before = cx.diags.errors
            self.shape(node, cx, path, label)
            bad |= cx.diags.errors > before
        if self.validate and not bad:
            self.validate(out, node, cx, path, label)
        return INVALID if bad else out


class Either(Spec):
    """Different shapes for scalars, lists and mappings (e.g. a step: a string or a mapping)."""

    def __init__(self, scalar: Spec | None = None, seq: Spec | None = None, mapping: Spec | None = None,
                 expected: str = "", null=INVALID) -> None:
        self.scalar, self.seq, self.mapping, self.null = scalar, seq, mapping, null
        self.expected = expected or " or ".join(s.expected for s in (scalar, seq, mapping) if s)

    def check(self, node, cx, path, where):
        if isinstance(node, YScalar) and node.value is None and self.null is not INVALID:
            return self.null() if callable(self.null) else self.null
        spec = self.scalar if isinstance(node, YScalar) else self.seq if isinstance(node, YSeq) else self.mapping
        if spec is None:
            return self.wrong(node, cx, path, where)
        return spec.check(node, cx, path, where)

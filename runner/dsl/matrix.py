"""``matrix:`` on a job: axes, ``exclude``, ``include``, expanded into one job per combination.

The checked value is ``{"axes": [names], "combos": [{axis: value}], "__node__": node}``: the
combinations in order (the product of the axes in the order written, minus every combination an
``exclude`` entry matches, then each ``include`` entry that is not already there). Values are
strings. ``${axis}`` in a job's image and services is replaced by the combination's value
(``expand``); a name that is not an axis is an error at lint time (``check_axis_refs``).
"""

from __future__ import annotations

import itertools
import math

from runner.dsl.model import INVALID, Cx, ListOf, MapOf, Spec, short
from runner.dsl.values import Str
from runner.dsl.yamlload import YMap, YNode
from runner.regex import lazy

__all__ = ["MAX_COMBINATIONS", "MatrixSpec", "combination_name", "expand", "check_axis_refs"]

MAX_COMBINATIONS = 256
_ENUMERATE_LIMIT = 65_536  # beyond this many before exclude, count without listing them
_AXIS = lazy(r"^[A-Za-z_][A-Za-z0-9_]*\Z")
_REF = lazy(r"\$\{([^}]*)\}")
_JOB_KEYS = ("fail_fast", "max_parallel")  # GitHub has them inside `strategy`; here they sit by `matrix`
_values = ListOf(Str(), what="value")
_entry = MapOf(what="axis name (letters, digits, _)")


class MatrixSpec(Spec):
    expected = "a mapping of axis names to lists of values"

    def check(self, node, cx, path, where):
        if not isinstance(node, YMap):
            return self.wrong(node, cx, path, where)
        axes: dict[str, list[str]] = {}
        extra: dict[str, list[dict]] = {"include": [], "exclude": []}
        bad = False
        for key, (knode, vnode) in node.entries.items():
            at = f"{path}.{key}"
            if key in _JOB_KEYS:
                cx.error(knode, "misplaced-key", f"'{key}' belongs next to 'matrix' in the job, not inside {where}", at)
                bad = True
            elif key in extra:
                entries = ListOf(_entry, what=f"{key} entry").check(vnode, cx, at, f"'{key}' in {where}")
                bad |= entries is INVALID
                extra[key] = [] if entries is INVALID else entries
            elif not _AXIS.match(key):
                cx.error(knode, "value", f"axis '{short(key)}' in {where} is not a valid name: axes become "
                         "environment variables (letters, digits, _)", at)
                bad = True
            else:
                values = _values.check(vnode, cx, at, f"axis '{key}' in {where}")
                if values == []:
                    cx.error(vnode, "empty", f"axis '{key}' in {where} has no values", at)
                    values = INVALID
                bad |= values is INVALID
                axes[key] = values if values is not INVALID else []
        if bad:
            return INVALID
        if not axes and not extra["include"]:
            cx.error(node, "empty", f"{where} has no axes (e.g. py: ['3.11', '3.12'])", path)
            return INVALID
        if not self._excludes_known_axes(axes, extra["exclude"], node, cx, path, where):
            return INVALID
        return self._combinations(axes, extra, node, cx, path, where)

    def _excludes_known_axes(self, axes, excludes, node: YMap, cx: Cx, path: str, where: str) -> bool:
        ok = True
        for i, entry in enumerate(excludes):
            for key in entry:
                if key not in axes:
                    cx.error(node.get("exclude").items[i], "value", f"exclude entry {i + 1} of {where} names "
                             f"'{short(key)}', which is not an axis ({', '.join(axes) or 'none'})",
                             f"{path}.exclude[{i}].{key}")
                    ok = False
        return ok

    def _combinations(self, axes, extra, node: YMap, cx: Cx, path: str, where: str):
        total = math.prod(len(v) for v in axes.values()) if axes else 0
        if total > _ENUMERATE_LIMIT:
            return self._too_many(total, node, cx, path, where, before_exclude=bool(extra["exclude"]))
        combos = [dict(zip(axes, values)) for values in itertools.product(*axes.values())] if axes else []
        combos = [c for c in combos if not any(all(c.get(k) == v for k, v in ex.items()) for ex in extra["exclude"])]
        for inc in extra["include"]:
            if inc and inc not in combos:
                combos.append(dict(inc))
        if len(combos) > MAX_COMBINATIONS:
            return self._too_many(len(combos), node, cx, path, where)
        if not combos:
            cx.error(node, "empty", f"{where} makes no combinations: exclude removes them all", path)
            return INVALID
        names = list(axes) + [k for inc in extra["include"] for k in inc if k not in axes]
        return {"axes": list(dict.fromkeys(names)), "combos": combos, "__node__": node}

    def _too_many(self, count: int, node: YMap, cx: Cx, path: str, where: str, before_exclude: bool = False):
        counted = " before exclude" if before_exclude else ""
        cx.error(node, "too-large", f"{where} makes {count} combinations{counted}; at most {MAX_COMBINATIONS} "
                 "(split the job, or remove combinations with exclude)", path)
        return INVALID


def combination_name(group: str, combo: dict[str, str]) -> str:
    """``unit [py=3.11, db=pg]``: what the page, the CLI and ``needs`` call one combination."""
    return f"{group} [{', '.join(f'{k}={v}' for k, v in combo.items())}]"


def expand(text: str, combo: dict[str, str]) -> str:
    """``${axis}`` replaced by the combination's value (names that are not axes stay as written)."""
    return _REF.sub(lambda m: combo.get(m.group(1), m.group(0)), text)


def check_axis_refs(text: str, axes: list[str] | None, node: YNode, cx: Cx, path: str, what: str) -> None:
    """A ``${name}`` in an image or a service that no axis provides would reach the engine as is."""
    for m in _REF.finditer(text):
        if axes is None:
            cx.error(node, "matrix-ref", f"{what} uses ${{{m.group(1)}}}, but the job has no matrix; "
                     "${...} names an axis of the job's matrix", path)
        elif m.group(1) not in axes:
            cx.error(node, "matrix-ref", f"{what} uses ${{{short(m.group(1))}}}, which is not an axis of the job's "
                     f"matrix ({', '.join(axes)})", path)

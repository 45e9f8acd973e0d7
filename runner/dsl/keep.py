"""The schema of what a job keeps (docs/pipeline.md): ``artifacts``, ``cache`` and ``reports``.

Every path is a glob relative to the workspace. One that leaves it (absolute, or with a ``..``
segment) is refused here, at lint, with its line and column: the runner never reads outside the
workspace, and the backends check again for symlinks, which only the workspace itself can show.
"""

from __future__ import annotations

import posixpath

from runner.dsl.model import INVALID, Cx, Either, Field, ListOf, Obj, Spec, short
from runner.dsl.values import Duration, Enum, Str, parse_duration
from runner.dsl.yamlload import YMap, YScalar
from runner.regex import lazy

__all__ = ["artifacts", "cache", "reports", "MAX_CACHES"]

MAX_CACHES = 4  # per job, as GitLab: each one is an archive restored before the first step
_DAYS = lazy(r"^(\d{1,5})(d|w)\Z")
_KEY = r"^(?!\.{1,2}\Z)[^\x00-\x1f\x7f/\\]{1,200}\Z"
_KEY_HINT = ": a cache key is 1 to 200 characters without '/' or '\\', and not '.' or '..'"


class WorkspacePath(Str):
    """A glob relative to the workspace that cannot leave it."""

    def check(self, node, cx, path, where):
        text = super().check(node, cx, path, where)
        if text is INVALID:
            return INVALID
        if text.startswith("/") or ".." in text.replace("\\", "/").split("/"):
            cx.error(node, "leaves-workspace", f"{where} leaves the workspace ('{short(text)}'): write a path "
                     "relative to the workspace, without '..'", path)
            return INVALID
        if not text.strip() or posixpath.normpath(text) in (".", ""):
            cx.error(node, "value", f"{where} names the whole workspace ('{short(text)}'): name the files to keep, "
                     "e.g. dist/ or '**/*.xml'", path)
            return INVALID
        return text


class Expiry(Spec):
    """``expire_in``: a duration (30s, 5m, 1h), days or weeks (30d, 2w), or ``never``."""

    expected = "a duration like 30d, 2w, 12h or never"

    def check(self, node, cx, path, where):
        if isinstance(node, YScalar) and node.value == "never":
            return None
        if isinstance(node, YScalar) and isinstance(node.value, str):
            m = _DAYS.match(node.value.strip())
            if m:
                return float(int(m.group(1)) * 86400 * (7 if m.group(2) == "w" else 1))
            if parse_duration(node.value) is None:
                cx.error(node, "duration", f"{where} is not a duration ('{short(node.text)}'): use e.g. 30d, "
                         "2w, 12h or never", path)
                return INVALID
        return Duration().check(node, cx, path, where)


_paths = ListOf(WorkspacePath(), single=True, what="path")

artifacts = Obj("artifacts", {
    "paths": Field(_paths, required=True), "expire_in": Field(Expiry()),
    "when": Field(Enum("on_success", "on_failure", "always")),
}, missing={"paths": "{label} has no 'paths': list the files to keep, e.g. paths: [dist/]"})

_key = Either(
    scalar=Str(_KEY, _KEY_HINT),
    mapping=Obj("cache key", {"files": Field(_paths, required=True),
                              "prefix": Field(Str(_KEY, _KEY_HINT))},
                missing={"files": "{label} needs 'files': the files whose contents make the key"}),
    expected="a string or a mapping with files (and prefix)",
)


def _check_cache(value: dict, node: YMap, cx: Cx, path: str, label: str) -> None:
    if value.get("policy") == "push" and "fallback_keys" in value:
        cx.warning(node.entries["fallback_keys"][0], "no-effect", f"'fallback_keys' in {label} has no effect "
                   "with policy push (nothing is restored)", path + ".fallback_keys")


_entry = Obj("cache", {
    "key": Field(_key), "paths": Field(_paths, required=True),
    "policy": Field(Enum("pull-push", "pull", "push")),
    "fallback_keys": Field(ListOf(Str(_KEY, _KEY_HINT), single=True, what="fallback key")),
}, missing={"paths": "{label} has no 'paths': list what to keep between builds, e.g. paths: [.cache/pip]"},
    validate=_check_cache)


class _Caches(Spec):
    expected = "a mapping with key and paths, or a list of them"

    def check(self, node, cx, path, where):
        if isinstance(node, YMap):
            value = _entry.check(node, cx, path, where)
            return INVALID if value is INVALID else [value]
        value = ListOf(_entry, what="cache").check(node, cx, path, where)
        if value is not INVALID and len(value) > MAX_CACHES:
            cx.error(node, "too-many", f"{where} has {len(value)} caches; at most {MAX_CACHES} (put more paths "
                     "into one cache)", path)
            return INVALID
        return value


cache = _Caches()

reports = Obj("reports", {"junit": Field(_paths, required=True)},
              missing={"junit": "{label} has no 'junit': list the JUnit XML files, e.g. junit: [reports/*.xml]"})

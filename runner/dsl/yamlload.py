"""YAML to a tree of positioned nodes: safe, strict and bounded.

Built from the parser's event stream (libyaml when present) rather than PyYAML's constructor, so:

- every node carries a 1-based line and column;
- a duplicate key is an error naming both lines;
- aliases are shared, never copied, and the size they expand to is counted: a "billion laughs" file
  fails at the first alias that takes the document past ``MAX_NODES``, in microseconds;
- nesting deeper than ``MAX_DEPTH`` and files over ``MAX_BYTES`` are errors;
- scalars resolve by the YAML 1.2 core schema: only ``true``/``false`` are booleans, so ``on``,
  ``yes``, ``no`` stay strings, and mapping keys are always their source text.
No Python object is ever constructed from a tag: unknown tags are errors.

The nodes are ``runner.dsl.ynodes`` (re-exported here), the scalar rules ``runner.dsl.yscalars``.
"""

from __future__ import annotations

from runner.diagnostics import Diagnostics
from runner.dsl.ynodes import YMap, YNode, YScalar, YSeq, to_py
from runner.dsl.yscalars import CORE, MAX_INT_CHARS, long_number, resolve, tagged
from runner.yamllib import yaml

__all__ = ["YNode", "YScalar", "YMap", "YSeq", "load_yaml", "to_py", "MAX_BYTES", "MAX_DEPTH", "MAX_NODES"]

MAX_BYTES = 1024 * 1024
MAX_DEPTH = 64
MAX_NODES = 100_000  # added by aliases (a scalar counts once per 256 characters); a pipeline needs few

_Parser = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


# YAML 1.1 (libyaml) ends a line at NEL, LS and PS; YAML 1.2, editors and code review do not. Such a
# character would let the parser see a line no reviewer sees (a comment's end revealing a key), and
# put every position after it on the wrong line, so it is refused.
_ODD_BREAKS = {"\x85": "NEXT LINE (U+0085)", "\u2028": "LINE SEPARATOR (U+2028)",
               "\u2029": "PARAGRAPH SEPARATOR (U+2029)"}

_SKIPPED = (yaml.StreamStartEvent, yaml.StreamEndEvent, yaml.DocumentEndEvent)


class _Stop(Exception):
    """Loading cannot go on; the reason is already in the diagnostics."""


def load_yaml(text: str, diags: Diagnostics) -> YNode | None:
    """The document's root node, or None (empty file or errors, which are in ``diags``)."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        diags.error("too-large", f"the file is larger than {MAX_BYTES // 1024} KiB; split it or generate less", 1, 1)
        return None
    odd = [at for ch in _ODD_BREAKS if (at := text.find(ch)) >= 0]
    if odd:
        at = min(odd)
        line, col = _line_col(text, at)
        diags.error("yaml-syntax", f"invalid YAML: the character {_ODD_BREAKS[text[at]]} is a line break to YAML 1.1 "
                    f"but not to editors or reviews; remove it (in a double-quoted string, write "
                    f"\\u{ord(text[at]):04x})", line, col)
        return None
    try:
        return _Builder(diags).run(text)
    except _Stop:
        return None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        if exc.context_mark and exc.problem_mark and exc.problem_mark.line > _last_content_line(text):
            mark = exc.context_mark  # "not closed at the end of the file": point at what was opened
        problem = exc.problem or "invalid YAML"
        if exc.context and exc.problem:
            problem = f"{exc.context}: {exc.problem}"
        if mark is not None and _char_at(text, mark.line, mark.column) == "\t" and "tab" not in problem:
            problem += " (a tab: indent with spaces)"
        diags.error("yaml-syntax", f"invalid YAML: {problem}", mark.line + 1 if mark else 1,
                    mark.column + 1 if mark else 1)
        return None
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow
        # libyaml reads UTF-8: its position counts bytes, not characters.
        at = len(text.encode("utf-8", "surrogatepass")[:exc.position].decode("utf-8", "ignore"))
        line, col = _line_col(text, at)
        what = f"#x{exc.character:04x}" if isinstance(exc.character, int) else repr(exc.character)
        diags.error("yaml-syntax", f"invalid YAML: character {what} is not allowed here ({exc.reason}); remove it",
                    line, col)
        return None
    except yaml.YAMLError as exc:
        diags.error("yaml-syntax", f"invalid YAML: {str(exc).splitlines()[0]}", 1, 1)
        return None
    except UnicodeEncodeError as exc:  # a lone surrogate (e.g. from a Jinja '\ud800' escape)
        line, col = _line_col(text, exc.start)
        diags.error("encoding", "the text contains a lone surrogate, which is not valid Unicode; remove it",
                    line, col)
        return None


class _Builder:
    def __init__(self, diags: Diagnostics) -> None:
        self.diags = diags
        self.anchors: dict[str, YNode | None] = {}  # None: anchored container still open
        self.expanded = 0

    def run(self, text: str) -> YNode | None:
        self.text = text
        root: YNode | None = None
        docs = 0
        stack: list[tuple[YNode, str | None, list]] = []  # (container, anchor, pending key/items)
        next_event = _Parser(text).get_event  # yaml.parse's generator and peek cost more than the events
        while (kind := type(event := next_event())) is not yaml.StreamEndEvent:
            if kind is yaml.ScalarEvent:  # most events: checked first
                value = self._scalar(event)
                if event.anchor:
                    self.anchors[event.anchor] = value
                if stack:
                    stack[-1][2].append(value)
                else:
                    root = value
                continue
            if kind is yaml.DocumentStartEvent:
                docs += 1
                if docs > 1:
                    self._stop("multi-doc", "only one YAML document per pipeline file (remove this '---')", event)
                continue
            if kind in _SKIPPED:
                continue
            if kind is yaml.MappingStartEvent or kind is yaml.SequenceStartEvent:
                if len(stack) >= MAX_DEPTH:
                    self._stop("too-deep", f"nesting is deeper than {MAX_DEPTH} levels; flatten the file", event)
                self._check_tag(event, "map" if kind is yaml.MappingStartEvent else "seq")
                line, col = event.start_mark.line + 1, event.start_mark.column + 1
                node: YNode = YMap(line, col) if kind is yaml.MappingStartEvent else YSeq(line, col)
                if event.anchor:
                    self.anchors[event.anchor] = None
                stack.append((node, event.anchor, []))
                continue
            if kind is yaml.MappingEndEvent or kind is yaml.SequenceEndEvent:
                node, anchor, pending = stack.pop()
                if isinstance(node, YMap):
                    self._fill_map(node, pending)
                else:
                    node.items = pending
                    node.size = 1 + sum(n.size for n in pending)
                if anchor:
                    self.anchors[anchor] = node
                value = node
            else:  # an alias
                if event.anchor not in self.anchors:
                    self._stop("yaml-alias", f"unknown alias '*{event.anchor}': define '&{event.anchor}' before it", event)
                value = self.anchors[event.anchor]
                if value is None:
                    self._stop("yaml-alias", f"alias '*{event.anchor}' refers to a node that contains it", event)
                self.expanded += value.size
                if self.expanded > MAX_NODES:
                    self._stop("alias-bomb", f"aliases expand to more than {MAX_NODES} nodes; "
                               "use fewer nested aliases (or Jinja loops)", event)
            if stack:
                stack[-1][2].append(value)
            else:
                root = value
        return root

    def _fill_map(self, node: YMap, pending: list) -> None:
        entries: dict[str, tuple[YScalar, YNode]] = {}
        merges: list[YNode] = []
        size = 1
        for key, value in zip(pending[::2], pending[1::2]):
            size += value.size + key.size  # a long key counts as much as a long value
            if not isinstance(key, YScalar):
                self.diags.error("yaml-key", "a mapping key must be a plain value, not a list or mapping",
                                 key.line, key.col)
                continue
            if key.text == "<<" and not key.quoted:
                merges.append(value)
                continue
            if key.text in entries:
                first = entries[key.text][0]
                self.diags.error("duplicate-key", f"duplicate key '{key.text}' (first defined on line {first.line})",
                                 key.line, key.col)
                continue
            entries[key.text] = (key, value)
        for merge in merges:  # YAML merge keys (`<<: *defaults`): keys written here win
            sources = merge.items if isinstance(merge, YSeq) else [merge]
            for src in sources:
                if not isinstance(src, YMap):
                    self.diags.error("yaml-merge", "'<<' must merge a mapping or a list of mappings", src.line, src.col)
                    continue
                for k, entry in src.entries.items():
                    entries.setdefault(k, entry)
        node.entries = entries
        node.size = size

    def _scalar(self, event) -> YScalar:
        line, col = event.start_mark.line + 1, event.start_mark.column + 1
        text = event.value
        quoted = event.style not in (None, "")
        # Weighted by length, so aliases of one huge string cannot multiply it either.
        node = YScalar(line, col, size=1 + len(text) // 256, value=text, text=text, quoted=quoted)
        tag = event.tag
        if not quoted and event.end_mark.line > event.start_mark.line:
            node.continued = _continuation_lines(self.text, event.start_mark, event.end_mark)
        if tag in (None, "!") and event.implicit[0] and not quoted:
            if len(text) > MAX_INT_CHARS and long_number(text):  # the length first: the hot path
                self.diags.error("too-large", f"a number of {len(text)} characters is too large (at most "
                                 f"{MAX_INT_CHARS}); quote it if it is text", line, col)
                return node  # kept as its text, so the checks after this one cannot overflow either
            node.value = resolve(text)
        elif tag not in (None, "!"):
            node.value = self._tagged(tag, text, event)
        return node

    def _tagged(self, tag: str, text: str, event) -> object:
        kind = tag[len(CORE):] if tag.startswith(CORE) else None
        try:
            return tagged(kind, text)
        except ValueError:
            self._stop("yaml-tag", f"'{text[:40]}' is not a valid !!{kind}", event)
        except LookupError:
            self._stop("yaml-tag", f"unsupported tag '{_show_tag(tag)}'; pipeline files use plain YAML values only",
                       event)

    def _check_tag(self, event, kind: str) -> None:
        allowed = {"map": (None, "!", CORE + "map"), "seq": (None, "!", CORE + "seq")}[kind]
        if event.tag not in allowed:
            self._stop("yaml-tag", f"unsupported tag '{_show_tag(event.tag)}'; pipeline files use plain YAML values only", event)

    def _stop(self, code: str, message: str, event) -> None:
        self.diags.error(code, message, event.start_mark.line + 1, event.start_mark.column + 1)
        raise _Stop


def _line_col(text: str, index: int) -> tuple[int, int]:
    before = text[:index]
    return before.count("\n") + 1, index - (before.rfind("\n") + 1) + 1


def _continuation_lines(text: str, start, end) -> tuple[tuple[int, int, str], ...]:
    source = text[start.index:end.index].split("\n")
    out = []
    for i, raw in enumerate(source[1:], start=start.line + 2):
        stripped = raw.lstrip(" \t")
        if stripped:
            out.append((i, len(raw) - len(stripped) + 1, stripped))
    return tuple(out)


def _last_content_line(text: str) -> int:
    """0-based index of the last line that is neither blank nor a comment."""
    lines = text.split("\n")
    for i in range(len(lines) - 1, -1, -1):
        stripped = lines[i].strip()
        if stripped and not stripped.startswith("#"):
            return i
    return 0


def _char_at(text: str, line: int, col: int) -> str:
    lines = text.split("\n")
    return lines[line][col : col + 1] if line < len(lines) else ""


def _show_tag(tag: str) -> str:
    return "!!" + tag[len(CORE):] if tag.startswith(CORE) else tag

"""Log text to HTML: escape first, then turn ANSI colours into spans with classes.

The order matters: text is HTML-escaped before any markup is added, so a log line can never inject
markup. SGR colour/style codes become ``ansi-*`` classes (styled in web/static/conveyor.css); every
other escape sequence (cursor movement, OSC titles and links, ...) and stray control characters are
dropped.
"""

from __future__ import annotations

import html
import re

__all__ = ["to_html", "strip_ansi"]

# CSI (ESC [ ... final), OSC (ESC ] ... BEL or ESC \), and two-byte escapes.
_ESCAPE = re.compile(r"\x1b\[([0-?]*)[ -/]*([@-~])|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]?")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def strip_ansi(text: str) -> str:
    return _CONTROL.sub("", _ESCAPE.sub("", text))


# A log line is untrusted text: `\033[<5000 digits>m` once made int() raise (Python refuses more
# than 4,300 digits) and broke the build page for good. No SGR parameter means anything past 255
# (terminals clamp at 65535), so a longer one is read as an unknown code and ignored.
_MAX_PARAM_DIGITS = 5
_UNKNOWN = -1


def _code(param: str) -> int:
    if not param:
        return 0  # an empty parameter is 0, as in `ESC[;1m`
    if len(param) > _MAX_PARAM_DIGITS or not param.isdigit():
        return _UNKNOWN
    return int(param)


def _apply_sgr(params: str, state: dict[str, str | None]) -> None:
    codes = [_code(p) for p in params.split(";")] if params else [0]
    i = 0
    while i < len(codes):
        code = codes[i]
        if code == 0:
            state.update(fg=None, bg=None, bold=None, italic=None, underline=None)
        elif code == 1:
            state["bold"] = "ansi-bold"
        elif code == 3:
            state["italic"] = "ansi-italic"
        elif code == 4:
            state["underline"] = "ansi-underline"
        elif code == 22:
            state["bold"] = None
        elif code == 23:
            state["italic"] = None
        elif code == 24:
            state["underline"] = None
        elif 30 <= code <= 37:
            state["fg"] = f"ansi-fg-{code - 30}"
        elif 90 <= code <= 97:
            state["fg"] = f"ansi-fg-{code - 90 + 8}"
        elif code == 39:
            state["fg"] = None
        elif 40 <= code <= 47:
            state["bg"] = f"ansi-bg-{code - 40}"
        elif 100 <= code <= 107:
            state["bg"] = f"ansi-bg-{code - 100 + 8}"
        elif code == 49:
            state["bg"] = None
        elif code in (38, 48) and i + 1 < len(codes):
            # 256-colour / true colour: the 16 base colours map to classes, the rest are dropped.
            kind = codes[i + 1]
            if kind == 5 and i + 2 < len(codes):
                n = codes[i + 2]
                if 0 <= n < 16:
                    state["fg" if code == 38 else "bg"] = f"ansi-{'fg' if code == 38 else 'bg'}-{n}"
                i += 2
            elif kind == 2:
                i += 4
        i += 1


def to_html(line: str, state: dict[str, str | None] | None = None) -> str:
    """One line of log text as safe HTML. Pass the same ``state`` for consecutive lines to carry a
    colour over a line break, as terminals do."""
    state = {} if state is None else state
    out: list[str] = []
    pos = 0
    for match in _ESCAPE.finditer(line):
        out.append(_span(line[pos:match.start()], state))
        if match.group(2) == "m":
            _apply_sgr(match.group(1) or "", state)
        pos = match.end()
    out.append(_span(line[pos:], state))
    return "".join(out)


def _span(text: str, state: dict[str, str | None]) -> str:
    if not text:
        return ""
    text = html.escape(_CONTROL.sub("", text), quote=True)
    classes = " ".join(c for c in (state.get("fg"), state.get("bg"), state.get("bold"), state.get("italic"),
                                   state.get("underline")) if c)
    return f'<span class="{classes}">{text}</span>' if classes else text

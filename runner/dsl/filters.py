"""The filters of ``when`` decided at compile time: branch, tag, event and changes.

Globs: '*' stays within one path segment, '**' crosses '/', '**/' is zero or more directories
('src/**/*.py' matches 'src/a.py'), '?' is one character, and a pattern starting with '!' excludes. ``when.changes`` matches the files of ``Context.changes``
(``runner.scm.changes`` computed them from the event before compiling).
"""

from __future__ import annotations

from functools import lru_cache

from runner.context import Context

__all__ = ["glob_match", "matches", "skip_reason", "changes_decision"]

_SHOWN = 5  # matched files named in a decision; the rest are counted


@lru_cache(maxsize=256)
def _glob_tokens(pattern: str) -> tuple[str, ...]:
    tokens, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):  # zero or more whole directories, as in .gitignore
            tokens.append("**/")
            i += 3
        elif pattern.startswith("**", i):
            tokens.append("**")
            i += 2
        else:
            tokens.append(pattern[i] if pattern[i] in "*?" else "=" + pattern[i])
            i += 1
    return tuple(tokens)


def glob_match(pattern: str, text: str) -> bool:
    """'*' stays within one path segment, '**' crosses '/', '?' is one character.

    Matched by sweeping the set of reachable positions (O(pattern * text)), not by a backtracking
    regex: a pattern comes from the pipeline file and must not be able to stall the runner."""
    n = len(text)
    reach = [True] + [False] * n  # reach[j]: the tokens so far can match text[:j]
    for token in _glob_tokens(pattern):
        new = [False] * (n + 1)
        if token == "**":
            first = reach.index(True) if True in reach else n + 1
            new[first:] = [True] * (n + 1 - first)
        elif token == "**/":
            first = reach.index(True) if True in reach else n + 1
            for j in range(first, n + 1):
                new[j] = reach[j] or (j > first and text[j - 1] == "/")
        elif token == "*":
            for j in range(n + 1):
                new[j] = reach[j] or (j > 0 and new[j - 1] and text[j - 1] != "/")
        else:
            for j in range(n):
                if reach[j] and (text[j] == token[1:] if token[0] == "=" else text[j] != "/"):
                    new[j + 1] = True
        reach = new
        if not any(reach):
            return False
    return reach[n]


def matches(patterns: list[str], text: str | None) -> bool:
    """Any positive pattern matches (or there are none) and no '!pattern' does."""
    if text is None:
        return False
    include = [p for p in patterns if not p.startswith("!")]
    exclude = [p[1:] for p in patterns if p.startswith("!")]
    return (not include or any(glob_match(p, text) for p in include)) and not any(glob_match(p, text) for p in exclude)


def skip_reason(when: dict, ctx: Context) -> str | None:
    if "event" in when and ctx.event not in when["event"]:
        return f"event {ctx.event} is not in when.event ({', '.join(when['event'])})"
    if "branch" in when and not matches(when["branch"], ctx.git.branch):
        on = f"branch '{ctx.git.branch}'" if ctx.git.branch else "the build is not on a branch and"
        return f"{on} does not match when.branch ({', '.join(when['branch'])})"
    if "tag" in when and not matches(when["tag"], ctx.git.tag):
        on = f"tag '{ctx.git.tag}'" if ctx.git.tag else "the build has no tag and"
        return f"{on} does not match when.tag ({', '.join(when['tag'])})"
    return None


def changes_decision(when: dict, ctx: Context) -> tuple[str | None, str | None]:
    """(skip reason, decision) of ``when.changes``: skipped when no changed file matches, else the
    files that matched (or why every file counts) for the plan to record."""
    patterns = when.get("changes")
    if not patterns:
        return None, None
    changes = ctx.changes
    if changes is None or changes.files is None:
        basis = changes.basis if changes is not None else "the changed files are not known here"
        return None, f"when.changes: {basis}, so every file counts as changed"
    hit = [f for f in changes.files if matches(patterns, f)]
    if not hit:
        return (f"no changed file matches when.changes ({', '.join(patterns)}); {changes.basis} changed "
                f"{len(changes.files)} file(s)"), None
    shown = ", ".join(hit[:_SHOWN]) + (f" and {len(hit) - _SHOWN} more" if len(hit) > _SHOWN else "")
    return None, f"when.changes matched {shown} ({changes.basis})"

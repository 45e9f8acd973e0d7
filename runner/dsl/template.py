"""Render a pipeline file with sandboxed Jinja, in a child process with CPU and memory limits.

Why a child: the sandbox stops attribute escapes, but not ``'x'*10**10`` or a loop of loops; only
the kernel's limits do. Each render runs in its own fork of a warm ``python -I -S`` child that has
imported Jinja alone (``render_process.py``), so a render costs a fork and the render itself, not a
Python start (``bench/bench_dsl.py`` prints it against a bare start). The runner never runs a
template itself; the child enforces a wall-clock limit too.

Imports resolve only in the repo's ``.conveyor/`` and ``pipelines/lib/`` and in Conveyor's own
``pipelines/lib/``, by real path (``..`` and symlinks that leave the folder are refused).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from runner.bundled import PIPELINE_LIB_DIR
from runner.dsl.template_errors import locate
from runner.regex import lazy
from runner.values import Value, frozen

__all__ = ["Rendered", "render", "template_roots", "warm_up", "CPU_SECONDS", "MEMORY_BYTES", "WALL_SECONDS"]

CPU_SECONDS = 2
MEMORY_BYTES = 256 * 1024 * 1024
WALL_SECONDS = 10.0
MAX_OUTPUT = 1024 * 1024

_JINJA_MARK = lazy(r"\{[{%#]")
_NEWLINES = lazy(r"\r\n?")
LIB_DIR = PIPELINE_LIB_DIR  # Conveyor's own macros


@frozen
class Rendered(Value):
    text: str | None  # None when rendering failed
    error: str | None = None
    file: str | None = None  # where the error is: the pipeline file or an imported template
    line: int | None = None
    seconds: float = 0.0  # wall time spent in the child, for the benchmark
    col: int = 1  # where on ``line`` (Jinja reports lines; ``template_errors`` finds the column)


def template_roots(repo_dir: Path, extra: list[Path] | None = None) -> list[tuple[str, str]]:
    """(label, real path) of every folder templates may come from, repo folders first."""
    repo = Path(os.path.realpath(repo_dir))
    roots: list[tuple[str, str]] = []
    for label, folder in ((".conveyor/", repo / ".conveyor"), ("pipelines/lib/", repo / "pipelines" / "lib")):
        real = Path(os.path.realpath(folder))
        # The folder itself must not be a symlink out of the checkout.
        if real.is_dir() and (real == folder or str(real).startswith(str(repo) + os.sep)):
            roots.append((label, str(real)))
    for folder in [*(extra or []), LIB_DIR]:
        real = os.path.realpath(folder)
        if os.path.isdir(real) and all(real != r for _, r in roots):
            roots.append(("conveyor:pipelines/lib/", real))
    return roots


def warm_up(text: str) -> bool:
    """Start the render child now when ``text`` has template code (the render will need it); returns
    whether it does. A child that cannot start now is left for the render to report."""
    if not _JINJA_MARK.search(text):
        return False
    from runner.dsl import render_process

    try:
        render_process.prestart()
    except OSError:
        pass
    return True


def render(text: str, variables: dict, roots: list[tuple[str, str]], *, name: str = ".conveyor.yml",
           cpu_seconds: int = CPU_SECONDS, memory_bytes: int = MEMORY_BYTES,
           wall_seconds: float = WALL_SECONDS) -> Rendered:
    """Render ``text``; never raises for a bad template (the error is in the result)."""
    if not _JINJA_MARK.search(text):
        # No template code: Jinja would only normalise line ends, so skip the child.
        return Rendered(_NEWLINES.sub("\n", text))
    import json

    from runner.dsl import render_process  # its sockets and subprocess only when there is Jinja to run

    request = json.dumps({
        "text": text, "vars": variables, "roots": roots, "name": name,
        "cpu_seconds": cpu_seconds, "memory_bytes": memory_bytes, "max_bytes": MAX_OUTPUT,
    })
    start = time.perf_counter()
    try:
        done = render_process.run(request.encode(), wall_seconds)
    except OSError as exc:  # out of processes or memory: the machine's problem, said plainly
        return Rendered(None, f"could not start the template renderer: {exc}; retry when the runner has "
                              "free processes and memory", name, None, time.perf_counter() - start)
    seconds = time.perf_counter() - start
    if done.timed_out:
        return Rendered(None, f"rendering took longer than {wall_seconds:g} s and was stopped; "
                              "check the template's loops", name, None, seconds)
    if done.code != 0 or not done.out:
        return Rendered(None, _death(done.code, done.err, cpu_seconds, memory_bytes), name, None, seconds)
    try:
        answer = json.loads(done.out)
        ok = answer["ok"]
    except (ValueError, KeyError, TypeError):
        return Rendered(None, _death(done.code, done.err, cpu_seconds, memory_bytes), name, None, seconds)
    if ok:
        return Rendered(answer["text"], seconds=seconds)
    col, message = locate(answer["message"], answer.get("source_line"))
    return Rendered(None, message, answer.get("file") or name, answer.get("line"), seconds, col)


def _death(code: int | None, err: bytes, cpu_seconds: int, memory_bytes: int) -> str:
    if code in (-signal.SIGXCPU, -signal.SIGKILL):
        return f"the template used more than {cpu_seconds} s of CPU and was stopped; check its loops"
    tail = err.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
    if "MemoryError" in tail[0]:
        return f"the template needs more than {memory_bytes // 2**20} MiB of memory"
    return f"the template renderer failed (exit {code}): {tail[0]}"

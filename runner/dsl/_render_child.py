"""The render child: a warm process that forks one limited grandchild per render.

Run as ``python -I -S _render_child.py JINJA_PATHS_JSON`` with one end of a Unix socket pair as its
stdin. It imports Jinja once (and compiles Jinja's lexer once), then waits. Each request on the socket
carries four file descriptors (the request to read, stdout, stderr, a status pipe) and a wall limit;
the child forks, and the fork applies the limits, renders, writes one JSON answer and exits. So every
render still runs in its own process with its own CPU, memory and file-size limits, but no render pays
for starting Python and importing Jinja (``bench/bench_dsl.py`` prints the cost against a bare start).

The warm child itself never sees a template or a request: only descriptors pass through it, so
nothing of one render can reach the next. It reaps each fork and writes ``pid N`` then ``exit CODE``
(or ``timeout``, after killing a fork that outlived its wall limit) to the status pipe. It exits when
the runner closes the socket. It imports nothing from ``runner`` and only Jinja from the paths the
runner names. A runaway template dies in its fork: RLIMIT_CPU ends endless loops, RLIMIT_AS ends
``'x'*10**10``, the output cap ends huge expansions.
"""

import json
import os
import re
import resource
import selectors
import socket
import sys
import time
import traceback

_ENV_OPTIONS = dict(trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, autoescape=False)


def _limit(cpu_seconds, memory_bytes):
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))  # a template never writes files


def _warm(jinja_paths):
    """Import what every render needs and build the lexer the renders' environment will reuse."""
    sys.path[:0] = jinja_paths
    # Jinja's bytecode cache imports hashlib; OpenSSL's _hashlib costs ~15 ms to load and is never
    # used here, so hashlib falls back to its built-in digests.
    sys.modules.setdefault("_hashlib", None)
    from jinja2 import StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    # Jinja caches lexers by environment options: compiling one template here makes every fork's
    # first template skip building the lexer's regular expressions.
    env = SandboxedEnvironment(undefined=StrictUndefined, **_ENV_OPTIONS)
    env.from_string("{% import 'x' as y %}{% for a in b %}{{ a ~ 1 }}{% endfor %}{# c #}{% raw %}{% endraw %}")


def serve(control):
    """Fork one grandchild per request until the runner closes ``control``."""
    selector = selectors.DefaultSelector()
    selector.register(control, selectors.EVENT_READ, None)
    deadlines = {}  # pid -> (monotonic deadline, status fd)
    while True:
        now = time.monotonic()
        for pid, (deadline, status) in list(deadlines.items()):
            if now >= deadline:  # not reaped yet, so the pid is still the fork's: safe to kill
                os.kill(pid, 9)
                deadlines[pid] = (float("inf"), status)
                _say(status, "timeout")
        wait = min((d for d, _ in deadlines.values()), default=None)
        for key, _ in selector.select(None if wait is None or wait == float("inf") else max(0.0, wait - now)):
            if key.data is None:
                message, fds, _, _ = socket.recv_fds(control, 64, 4)
                if not message:
                    return  # the runner is gone
                if len(fds) != 4:
                    for fd in fds:
                        os.close(fd)
                    continue
                try:
                    pid = _fork(fds)
                except OSError as exc:  # out of processes or memory: this render fails, the child stays
                    _say(fds[2], f"OSError: could not fork the render process: {exc}")
                    for fd in fds:
                        os.close(fd)
                    continue
                for fd in fds[:3]:
                    os.close(fd)
                _say(fds[3], f"pid {pid}")
                deadlines[pid] = (time.monotonic() + float(message.split()[1]), fds[3])
                selector.register(os.pidfd_open(pid), selectors.EVENT_READ, pid)
            else:
                pid = key.data
                selector.unregister(key.fileobj)
                os.close(key.fd)
                _, code = os.waitpid(pid, 0)
                deadline, status = deadlines.pop(pid)
                if deadline != float("inf"):
                    _say(status, f"exit {os.waitstatus_to_exitcode(code)}")
                os.close(status)


def _say(fd, line):
    try:
        os.write(fd, line.encode() + b"\n")
    except OSError:
        pass  # the runner stopped listening; the fork is still reaped


def _fork(fds):
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        for target, fd in enumerate(fds[:3]):
            os.dup2(fd, target)
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))  # the status pipe, other forks' descriptors
        code = main()
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stderr.flush()
        os._exit(code)


def main():
    """One render in this process: read the request on fd 0, limit, render, answer on fd 1."""
    with os.fdopen(0, "rb", closefd=False) as fh:
        request = json.loads(fh.read())
    _limit(request["cpu_seconds"], request["memory_bytes"])
    sys.setrecursionlimit(600)  # a recursive macro fails fast and well inside the C stack
    try:
        answer = _render(request)
    except MemoryError:
        answer = {"ok": False, "kind": "memory", "line": None, "file": None,
                  "message": f"the template needs more than {request['memory_bytes'] // 2**20} MiB of memory"}
    data = json.dumps(answer).encode()
    view = memoryview(data)
    while view:
        view = view[os.write(1, view):]
    return 0


# An error's message quotes what the template named (a missing key may be 40 MB of 'x'), and the
# runner then searches the line for it: both are cut here, where the limits hold, not in the runner.
MAX_MESSAGE = 2000
MAX_SOURCE_LINE = 4096


def _render(request):
    sources = {}
    answer = _render_with(request, sources)
    if not answer["ok"]:
        if len(answer["message"]) > MAX_MESSAGE:
            answer["message"] = answer["message"][:MAX_MESSAGE] + " [...]"
        if answer.get("line"):
            lines = re.split(r"\r\n|\r|\n", sources.get(answer["file"], ""))  # Jinja's own line breaks
            line = lines[answer["line"] - 1] if answer["line"] <= len(lines) else None
            answer["source_line"] = line if line is not None and len(line) <= MAX_SOURCE_LINE else None
    return answer


def _render_with(request, sources):
    from jinja2 import BaseLoader, StrictUndefined, TemplateNotFound, TemplateSyntaxError
    from jinja2.sandbox import SandboxedEnvironment

    names = {"<template>": request["name"]}  # real path -> what the user calls the file
    sources[request["name"]] = request["text"]  # what the user calls a file -> its text
    roots = request["roots"]  # [(label, real directory)]

    class ConfinedLoader(BaseLoader):
        """Templates only from the given folders, by real path: no '..', no symlink escapes."""

        def get_source(self, environment, template):
            parts = template.replace("\\", "/").split("/")
            if template.startswith("/") or any(p in ("", ".", "..") for p in parts):
                raise TemplateNotFound(template, f"template name {template!r} must be a plain relative path "
                                                 "inside .conveyor/ or pipelines/lib/")
            for label, root in roots:
                real = os.path.realpath(os.path.join(root, *parts))
                if not real.startswith(root + os.sep):
                    # Said before anything outside is looked at: whether a file exists out there
                    # (a symlink to ~/.ssh/id_rsa) is none of the template's business.
                    raise TemplateNotFound(template, f"template {template!r} resolves outside {label} "
                                                     "(a symlink?); only files inside it may be imported")
                if not os.path.isfile(real):
                    continue
                with open(real, encoding="utf-8") as fh:
                    source = fh.read()
                names[real] = label + "/".join(parts)
                sources[names[real]] = source
                return source, real, lambda: True
            where = " or ".join(label for label, _ in roots) or "no template folder"
            raise TemplateNotFound(template, f"template {template!r} not found in {where}")

    env = SandboxedEnvironment(
        loader=ConfinedLoader(), undefined=StrictUndefined, **_ENV_OPTIONS,
        finalize=lambda value: "" if value is None else value,  # an absent tag renders empty, not "None"
    )
    limit = request["max_bytes"]
    try:
        template = env.from_string(request["text"])
        out, size = [], 0
        for chunk in template.generate(**request["vars"]):
            size += len(chunk)
            if size > limit:
                return _fail("output", f"the rendered file is larger than {limit // 1024} KiB; "
                                       "check the loops that generate it", None, None)
            out.append(chunk)
        return {"ok": True, "text": "".join(out)}
    except TemplateSyntaxError as exc:
        file = names.get(exc.filename, exc.filename) if exc.filename else request["name"]
        return _fail("syntax", f"template syntax error: {exc.message}", file, exc.lineno)
    except TemplateNotFound as exc:
        file, line = _where(exc, names, request["name"])
        return _fail("not-found", exc.message or f"template {exc.name!r} not found", file, line)
    except RecursionError as exc:
        file, line = _where(exc, names, request["name"])
        return _fail("recursion", "the template recurses too deeply (a macro that calls itself without end?)",
                     file, line)
    except MemoryError as exc:
        file, line = _where(exc, names, request["name"])
        return _fail("memory", f"the template needs more than {request['memory_bytes'] // 2**20} MiB of memory",
                     file, line)
    except Exception as exc:  # SecurityError, UndefinedError, TypeError... all the template's fault
        file, line = _where(exc, names, request["name"])
        kind = type(exc).__name__
        text = str(exc) or kind
        if kind == "SecurityError":
            text = f"refused by the sandbox: {text}"
        elif kind == "UndefinedError":
            known = ", ".join(sorted(request["vars"]))
            text = f"undefined value: {text} (the template knows {known}; a param comes from --param NAME=VALUE " \
                   "or its default in params:)"
        else:
            text = f"template error ({kind}): {text}"
        return _fail(kind, text, file, line)


def _where(exc, names, default):
    """The innermost template frame of the traceback (Jinja rewrites frames to template lines)."""
    file, line = default, None
    tb = exc.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename in names:
            file, line = names[filename], tb.tb_lineno
        tb = tb.tb_next
    return file, line


def _fail(kind, message, file, line):
    return {"ok": False, "kind": kind, "message": message, "file": file, "line": line}


if __name__ == "__main__":
    _warm(json.loads(sys.argv[1]))
    serve(socket.socket(fileno=0))

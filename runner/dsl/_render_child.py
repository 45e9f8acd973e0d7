"""The render child: one short-lived process per render, with CPU and memory limits.

Run as ``python -I -S _render_child.py``; reads one JSON request on stdin and writes one JSON answer
on stdout. It imports nothing from ``runner`` (start-up cost is the benchmark's floor) and only
Jinja from the paths the parent names. A runaway template dies here, not in the runner:
RLIMIT_CPU ends endless loops, RLIMIT_AS ends ``'x'*10**10``, the output cap ends huge expansions.
"""

import json
import os
import resource
import sys


def _limit(cpu_seconds, memory_bytes):
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))  # a template never writes files


def main():
    request = json.loads(sys.stdin.read())
    _limit(request["cpu_seconds"], request["memory_bytes"])
    sys.path[:0] = request["sys_path"]
    # Jinja's bytecode cache imports hashlib; OpenSSL's _hashlib costs ~15 ms to load and is never
    # used here, so hashlib falls back to its built-in digests.
    sys.modules.setdefault("_hashlib", None)
    sys.setrecursionlimit(600)  # a recursive macro fails fast and well inside the C stack
    try:
        answer = _render(request)
    except MemoryError:
        answer = {"ok": False, "kind": "memory", "line": None, "file": None,
                  "message": f"the template needs more than {request['memory_bytes'] // 2**20} MiB of memory"}
    sys.stdout.write(json.dumps(answer))
    sys.stdout.flush()


def _render(request):
    from jinja2 import BaseLoader, StrictUndefined, TemplateNotFound, TemplateSyntaxError
    from jinja2.sandbox import SandboxedEnvironment

    names = {"<template>": request["name"]}  # real path -> what the user calls the file
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
                if not os.path.isfile(real):
                    continue
                if not real.startswith(root + os.sep):
                    raise TemplateNotFound(template, f"template {template!r} resolves outside {label} "
                                                     "(a symlink?); only files inside it may be imported")
                with open(real, encoding="utf-8") as fh:
                    source = fh.read()
                names[real] = label + "/".join(parts)
                return source, real, lambda: True
            where = " or ".join(label for label, _ in roots) or "no template folder"
            raise TemplateNotFound(template, f"template {template!r} not found in {where}")

    env = SandboxedEnvironment(
        loader=ConfinedLoader(), undefined=StrictUndefined, autoescape=False,
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
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
    main()

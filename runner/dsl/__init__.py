"""The pipeline language: `.conveyor.yml` text -> rendered text -> positioned YAML -> checked model -> Plan.

``load_pipeline`` runs every step and never raises for a bad file: whatever is wrong comes back as
``Diagnostic``s, all of them at once. This package never imports the executing side
(executor, backends, store, server).

The checker and compiler (YAML, schema, model, plan: ~30 ms of imports) load on the first
``load_pipeline``, not with the package: a command first finds its file and calls ``warm_up``,
which starts the render child, and that child's Python start and Jinja import then run beside
those imports instead of after them.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

from typing import TYPE_CHECKING

from runner.context import Context
from runner.diagnostics import ERROR, Diagnostic, Diagnostics
from runner.dsl import template
from runner.regex import lazy

if TYPE_CHECKING:
    from runner.dsl.model import LintOptions
    from runner.plan import Plan

__all__ = ["find_pipeline_files", "Loaded", "LintOptions", "load_pipeline", "render_pipeline", "PIPELINE_FILE",
           "declared_params", "warm_up"]

PIPELINE_FILE = ".conveyor.yml"


def __getattr__(name: str):
    if name == "LintOptions":  # the checker's options: importing it loads the checker
        from runner.dsl.model import LintOptions

        return LintOptions
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def warm_up(files: list[Path]) -> None:
    """Start the render child now if any of ``files`` has template code, so it is warm by the time
    the file is rendered. Unreadable files are left to ``load_pipeline`` to report."""
    for path in files:
        try:
            with open(path, "rb") as fh:  # template code starts near the top; a miss only costs the head start
                head = fh.read(64 * 1024).decode("utf-8", "replace")
        except OSError:
            continue
        if template.warm_up(head):
            return


def find_pipeline_files(repo_dir: Path) -> list[Path]:
    """``.conveyor.yml`` at the root, else every ``.conveyor/*.yml`` (one pipeline each), sorted."""
    repo_dir = Path(repo_dir)
    for name in (PIPELINE_FILE, ".conveyor.yaml"):
        if (repo_dir / name).is_file():
            return [repo_dir / name]
    folder = repo_dir / ".conveyor"
    if folder.is_dir():
        return sorted(p for p in folder.iterdir() if p.suffix in (".yml", ".yaml") and p.is_file())
    return []


@dataclass
class Loaded:
    path: Path
    rendered: str | None
    plan: Plan | None
    diagnostics: list[Diagnostic]
    skip_reason: str | None = None  # set when the file's `on:` does not start a build for this event
    render_seconds: float = 0.0  # wall time of the render child (the benchmark reports its share)

    @property
    def ok(self) -> bool:
        return self.plan is not None and not any(d.severity == ERROR for d in self.diagnostics)

    @property
    def triggered(self) -> bool:
        return self.ok and self.skip_reason is None


def _display_name(repo_dir: Path, path: Path) -> str:
    try:
        return os.path.relpath(path, repo_dir) if Path(path).resolve().is_relative_to(Path(repo_dir).resolve()) else path.name
    except (OSError, ValueError):
        return path.name


def _read(path: Path, diags: Diagnostics) -> str | None:
    from runner.dsl.yamlload import MAX_BYTES

    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_BYTES + 1)
    except OSError as exc:
        diags.error("read", f"cannot read the pipeline file: {exc.strerror or exc}", 1, 1)
        return None
    if len(data) > MAX_BYTES:
        diags.error("too-large", f"the file is larger than {MAX_BYTES // 1024} KiB; split it or generate less", 1, 1)
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        diags.error("encoding", "the file is not UTF-8 text; save it as UTF-8", line, 1)
        return None


_PARAMS_BLOCK = lazy(r"^params:[^\n]*\n?(?:(?:[ \t]+[^\n]*|[ \t]*|#[^\n]*)(?:\n|$))*", re.M)


def declared_params(source: str) -> dict[str, dict]:
    """The top-level ``params:`` block, read without rendering: name -> ``default``, ``choices``,
    ``description`` (each only when written). What Jinja sees as defaults, and what the server's Run
    form asks for. Only a block written without Jinja counts (as the docs say); a wrong block is
    ``{}`` here and a diagnostic when the file is loaded."""
    m = _PARAMS_BLOCK.search(source)
    if not m or "{{" in m.group() or "{%" in m.group():
        return {}
    from runner.dsl.model import INVALID, Cx
    from runner.dsl.schema import check_params
    from runner.dsl.yamlload import YMap, load_yaml

    scratch = Diagnostics("")
    root = load_yaml(m.group(), scratch)
    if not isinstance(root, YMap) or root.get("params") is None:
        return {}
    params = check_params(root.get("params"), Cx(scratch))
    if params is INVALID:
        return {}
    return {name: {k: v for k, v in spec.items() if k in ("default", "choices", "description")}
            for name, spec in params.items()}


def _param_defaults(source: str) -> dict[str, str]:
    """Defaults of the top-level ``params:`` block, read before rendering so Jinja sees them."""
    return {k: v["default"] for k, v in declared_params(source).items() if isinstance(v.get("default"), str)}


def render_pipeline(repo_dir: Path, ctx: Context, source: str, name: str,
                    lib_dirs: list[Path] | None = None) -> template.Rendered:
    """Render the source with the context (and the file's own param defaults) in the sandbox."""
    variables = ctx.template_vars()
    variables["params"] = {**_param_defaults(source), **ctx.params}
    return template.render(source, variables, template.template_roots(repo_dir, lib_dirs), name=name)


def load_pipeline(repo_dir: Path, ctx: Context, *, file: Path | None = None, trusted: bool = False,
                  text: str | None = None, lib_dirs: list[Path] | None = None,
                  options: LintOptions | None = None) -> Loaded:
    """Render, parse, check and compile one pipeline file. ``text`` replaces reading ``file`` (the
    server reads the file at a commit); imports still resolve in ``repo_dir``. ``options`` says what
    the runner knows (its backend, declared labels, configured users) for the rules that need it."""
    from runner.dsl.compile import compile_plan, trigger_decision
    from runner.dsl.model import Cx, LintOptions
    from runner.dsl.schema import check_pipeline
    from runner.dsl.yamlload import MAX_BYTES, load_yaml

    repo_dir = Path(repo_dir)
    if file is None:
        found = find_pipeline_files(repo_dir)
        file = found[0] if found else repo_dir / PIPELINE_FILE
    elif not Path(file).is_absolute():
        file = repo_dir / file  # a relative pipeline file is named within the repo
    name = _display_name(repo_dir, file)
    diags = Diagnostics(name)
    if text is None:
        if not file.is_file():
            diags.error("no-pipeline", f"no pipeline file here: add {PIPELINE_FILE} (or .conveyor/*.yml)", 1, 1)
            return Loaded(file, None, None, diags.items)
        text = _read(file, diags)
        if text is None:
            return Loaded(file, None, None, diags.items)
    elif len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        diags.error("too-large", f"the file is larger than {MAX_BYTES // 1024} KiB; split it or generate less", 1, 1)
        return Loaded(file, None, None, diags.items)
    rendered = render_pipeline(repo_dir, ctx, text, name, lib_dirs)
    if rendered.text is None:
        where = Diagnostics(rendered.file or name)
        where.error("template", rendered.error or "rendering failed", rendered.line or 1, rendered.col)
        return Loaded(file, None, None, where.items, render_seconds=rendered.seconds)
    cx = Cx(diags, trusted=trusted, options=options or LintOptions())
    root = load_yaml(rendered.text, diags)
    # Duplicate keys leave a usable tree: check it too, so every problem shows at once.
    value = check_pipeline(root, cx) if root is not None or not diags.has_errors else None
    plan = None
    if value is not None and not diags.has_errors:
        plan = compile_plan(value, ctx, cx, source=name, trusted=trusted)
    skip = trigger_decision(value.get("on"), ctx) if value is not None else None
    items = diags.sorted()
    if rendered.text != text:  # positions are in the rendered text: say so, and where to see it
        items = [replace(d, message=f"{d.message} (rendered line; see `conveyor render {name}`)") for d in items]
    return Loaded(file, rendered.text, plan if not diags.has_errors else None, items, skip, rendered.seconds)

"""The template sandbox: known Jinja escapes are refused, runaway templates die in the child, imports
stay inside their folders, and values from outside cannot add structure."""

from __future__ import annotations

import os
import time
from importlib.metadata import version

import pytest

from runner.context import Context
from runner.dsl import load_pipeline
from runner.dsl.template import render, template_roots
from runner.errors import ContextError

CTX = Context.build(sha="b" * 40, branch="main", build_number=2)

PAYLOADS = {
    "CVE-2016-10745 str.format": '{{ "{0.__globals__}".format(lipsum) }}',
    "CVE-2016-10745 class walk": '{{ "{0.__class__.__init__.__globals__}".format(cycler) }}',
    "CVE-2019-10906 format_map": '{{ "{a.__globals__}".format_map({"a": lipsum}) }}',
    "CVE-2024-56326 stored format": '{% set f = "{0.__globals__}".format %}{{ f(lipsum) }}',
    "CVE-2024-56326 stored format to a filter": '{% set f = "{0.__globals__}".format %}{{ [lipsum]|map(f)|list }}',
    "CVE-2025-27516 attr filter": '{{ "{0.__globals__}"|attr("format")(lipsum) }}',
    "mro walk": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "globals via cycler": "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "attr to dunder": "{{ lipsum|attr('__globals__') }}",
}


def test_installed_jinja_has_the_sandbox_fixes():
    parts = tuple(int(p) for p in version("Jinja2").split(".")[:3])
    assert parts >= (3, 1, 6), "Jinja2 < 3.1.6 has known sandbox escapes; upgrade it"


@pytest.mark.parametrize("payload", list(PAYLOADS.values()), ids=list(PAYLOADS))
def test_escape_payload_is_refused(tmp_path, payload):
    text = f"image: conveyor-test/busybox:1\nstages:\n  - name: x\n    steps: [\"echo {payload}\"]\n"
    loaded = load_pipeline(tmp_path, CTX, text=text)
    assert not loaded.ok and loaded.rendered is None
    (d,) = loaded.diagnostics
    assert (d.code, d.line) == ("template", 4)
    assert "<module" not in d.message and "__builtins__" not in d.message
    if "|map(f)" in payload:  # no built-in filter calls its argument (and Conveyor adds none)
        assert d.message.startswith("template error (TemplateRuntimeError): No filter named")
    else:
        assert d.message.startswith("refused by the sandbox: access to attribute '__")


def test_sandbox_message_names_the_refused_attribute(tmp_path):
    loaded = load_pipeline(tmp_path, CTX, text="a: {{ ''.__class__ }}\n")
    assert str(loaded.diagnostics[0]) == (".conveyor.yml:1:10: error: refused by the sandbox: "
                                          "access to attribute '__class__' of 'str' object is unsafe.")


def test_cpu_runaway_is_stopped_and_the_caller_goes_on(tmp_path):
    start = time.monotonic()
    # The default limit is 2 s of CPU; 1 s here keeps the suite quick and tests the same mechanism.
    out = render("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", {},
                 template_roots(tmp_path), cpu_seconds=1)
    assert out.text is None and out.error == "the template used more than 1 s of CPU and was stopped; check its loops"
    assert time.monotonic() - start < 5
    assert render("ok {{ 1 + 1 }}", {}, template_roots(tmp_path)).text == "ok 2"


def test_huge_output_is_capped(tmp_path):
    out = render("{% for i in range(100000) %}{{ 'x' * 100 }}{% endfor %}", {}, template_roots(tmp_path))
    assert out.text is None and "larger than 1024 KiB" in out.error


def test_memory_bomb_fails_fast_without_growing_the_caller(tmp_path):
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = render("{{ 'x' * 10**10 }}", {}, template_roots(tmp_path))
    assert out.text is None and "256 MiB" in out.error
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50 * 1024  # KiB


def test_an_error_naming_something_huge_is_cut_in_the_child(tmp_path):
    # The message quotes the missing key: 3 MB of it would cost the runner seconds of CPU and
    # hundreds of MB to search the line for, outside the child's limits.
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = render("{{ {}['x' * 3000000] }}", {}, template_roots(tmp_path))
    assert out.text is None and out.error.endswith(" [...]") and len(out.error) < 2100
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50 * 1024  # KiB


def test_whether_a_file_outside_exists_is_not_told(tmp_path):
    (tmp_path / "there.j2").write_text("x")
    repo = tmp_path / "repo"
    (repo / ".conveyor").mkdir(parents=True)
    os.symlink(tmp_path / "there.j2", repo / ".conveyor" / "a.j2")
    os.symlink(tmp_path / "missing.j2", repo / ".conveyor" / "b.j2")
    said = [load_pipeline(repo, CTX, text=f'{{% include "{name}" %}}\n').diagnostics[0].message.replace(name, "N")
            for name in ("a.j2", "b.j2")]
    assert said[0] == said[1] and "resolves outside .conveyor/" in said[0]


def test_symlink_out_of_the_template_folder_is_refused(tmp_path):
    secret = tmp_path / "outside.j2"
    secret.write_text("{% macro leak() %}top secret{% endmacro %}")
    repo = tmp_path / "repo"
    (repo / ".conveyor").mkdir(parents=True)
    os.symlink(secret, repo / ".conveyor" / "lib.j2")
    loaded = load_pipeline(repo, CTX, text='{% import "lib.j2" as l %}\na: {{ l.leak() }}\n')
    assert not loaded.ok
    assert "resolves outside .conveyor/" in loaded.diagnostics[0].message
    assert "top secret" not in str(loaded.diagnostics)


def test_template_folder_that_is_itself_a_symlink_out_is_ignored(tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "lib.j2").write_text("{% macro leak() %}top secret{% endmacro %}")
    repo = tmp_path / "repo"
    repo.mkdir()
    os.symlink(outside, repo / ".conveyor")
    loaded = load_pipeline(repo, CTX, text='{% import "lib.j2" as l %}\na: {{ l.leak() }}\n')
    assert not loaded.ok and "not found" in loaded.diagnostics[0].message


def test_imports_from_the_repo_and_from_conveyors_library(tmp_path):
    (tmp_path / ".conveyor").mkdir()
    (tmp_path / ".conveyor" / "mine.j2").write_text("{% macro img() %}conveyor-test/busybox:1{% endmacro %}")
    text = ('{% import "mine.j2" as mine %}{% import "jobs.j2" as jobs %}\nimage: {{ mine.img() }}\n'
            'stages:\n  - name: t\n    jobs:\n      - {{ jobs.shell_job("j", ["echo a", "echo b"]) }}\n')
    loaded = load_pipeline(tmp_path, CTX, text=text)
    assert loaded.ok, loaded.diagnostics
    job = loaded.plan.stages[0].jobs[0]
    assert (job.name, job.image, [s.run for s in job.steps]) == ("j", "conveyor-test/busybox:1", ["echo a", "echo b"])


@pytest.mark.parametrize("kwargs, says", [
    ({"branch": "main\nstages: []"}, "control character"),
    ({"branch": "feat: x"}, "not a valid git ref name"),
    ({"tag": "v1\r"}, "control character"),
    ({"params": {"target": "prod\nimage: evil"}}, "control character"),
    ({"params": {"target": "a\x1bb"}}, "control character"),
    ({"params": {"target": "a\u2028b"}}, "control character"),
    ({"params": {"bad-name": "x"}}, "must be letters, digits and _"),
    ({"repo_name": "r\x00"}, "control character"),
    ({"event": "push\n"}, "unknown event"),
])
def test_values_from_outside_with_control_characters_are_refused(kwargs, says):
    with pytest.raises(ContextError, match=says):
        Context.build(**kwargs)


def test_template_sees_no_free_text_but_steps_do():
    ctx = Context.build(sha="c" * 40, branch="main", message="fix: it\n\n{{ evil }}", author="A <a@b>")
    variables = ctx.template_vars()
    assert "fix: it" not in repr(variables) and "A <a@b>" not in repr(variables)
    assert set(variables) == {"git", "event", "repo", "params", "build"}
    env = ctx.ci_env()
    assert env["CI_COMMIT_MESSAGE"] == "fix: it\n\n{{ evil }}" and env["CI_COMMIT_AUTHOR"] == "A <a@b>"


def test_wall_limit_stops_a_render_that_keeps_within_its_cpu(tmp_path):
    start = time.monotonic()
    out = render("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", {},
                 template_roots(tmp_path),
                 cpu_seconds=30, wall_seconds=0.5)
    assert out.text is None and out.error == "rendering took longer than 0.5 s and was stopped; check the template's loops"
    assert time.monotonic() - start < 3
    assert render("after {{ 2 * 2 }}", {}, template_roots(tmp_path)).text == "after 4"


def test_each_render_is_its_own_process_forked_from_one_warm_child(tmp_path):
    from runner.dsl import render_process

    assert render("{{ 1 }}", {}, template_roots(tmp_path)).text == "1"
    warm = render_process._child.proc
    forks = [render_process.run(b'{"text": "{{ 1 }}"', 5) for _ in range(2)]  # truncated JSON: each fork fails alone
    assert all(f.code == 1 and b"JSONDecodeError" in f.err for f in forks)
    assert render("{{ 2 }}", {}, template_roots(tmp_path)).text == "2"
    assert render_process._child.proc is warm and warm.poll() is None


def test_a_dead_warm_child_is_replaced(tmp_path):
    from runner.dsl import render_process

    assert render("{{ 1 }}", {}, template_roots(tmp_path)).text == "1"
    dead = render_process._child.proc
    dead.kill()
    dead.wait()
    assert render("{{ 3 }}", {}, template_roots(tmp_path)).text == "3"
    assert render_process._child.proc is not dead


def test_renders_from_many_threads_each_get_their_own_answer(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda i: render("{{ n * 2 }}", {"n": i}, template_roots(tmp_path)).text, range(32)))
    assert answers == [str(i * 2) for i in range(32)]


def test_a_template_cannot_read_files_through_the_renderer(tmp_path):
    (tmp_path / ".conveyor").mkdir()
    out = render('{% include "/etc/passwd" %}{% include "../../etc/passwd" %}', {}, template_roots(tmp_path))
    assert out.text is None and "must be a plain relative path" in out.error

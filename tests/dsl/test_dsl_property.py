"""Property: loading never raises, whatever the text; it returns diagnostics (or a plan)."""

from __future__ import annotations

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.context import Context
from runner.dsl import load_pipeline

CTX = Context.build(sha="e" * 40, branch="main")
KEYS = st.sampled_from(["name", "stages", "steps", "jobs", "image", "env", "when", "post", "deploy", "build",
                        "rollback", "run", "timeout", "retry", "on", "yes", "params", "service", "ports"])
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-5, 100), st.floats(allow_nan=True),
                    st.sampled_from(["30s", "5m", "1h30m", "conveyor-test/busybox:1", "busybox", "main", "18080:8080",
                                     "{{ git.sha }}", "{% if x %}", "*a", "&a x", "- x", "a: b"]),
                    st.text(max_size=20))
TREES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                      st.dictionaries(st.one_of(KEYS, st.text(max_size=8)), inner,
                                                                      max_size=5)), max_leaves=30)
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check(tmp_path, text: str) -> None:
    loaded = load_pipeline(tmp_path, CTX, text=text)
    assert loaded.ok or loaded.diagnostics
    for d in loaded.diagnostics:
        assert d.line >= 1 and d.col >= 1 and d.severity in ("error", "warning") and d.message


# Any character, with the ones that trip parsers (NUL, NEL, BOM, a lone surrogate, YAML and Jinja
# punctuation) made common.
CHARS = st.one_of(st.characters(), st.sampled_from(["\ud800", "\x00", "\x85", "\ufeff", "\t", "\r", "\n", "{",
                                                     "}", "%", "#", ":", "-", "&", "*", "!", "[", "'", '"', " "]))


@FAST
@given(text=st.text(alphabet=CHARS, max_size=300))
def test_arbitrary_text_never_raises(tmp_path_factory, text):
    check(tmp_path_factory.mktemp("p"), text)


@FAST
@given(tree=TREES)
def test_arbitrary_yaml_never_raises(tmp_path_factory, tree):
    text = yaml.safe_dump(tree, allow_unicode=True) if not isinstance(tree, str) else tree
    check(tmp_path_factory.mktemp("p"), text)


@FAST
@given(stages=st.lists(st.dictionaries(KEYS, TREES, max_size=4), max_size=3), image=SCALARS)
def test_pipeline_shaped_yaml_never_raises(tmp_path_factory, stages, image):
    text = yaml.safe_dump({"image": image, "stages": stages}, allow_unicode=True)
    check(tmp_path_factory.mktemp("p"), text)


@settings(max_examples=25, deadline=None)
@given(text=st.text(alphabet=st.sampled_from("ab :-#{}%\n\r\t'\"\\"), max_size=80))
def test_text_without_template_code_renders_as_jinja_would(text):
    """The no-Jinja fast path (no child process) gives exactly what the sandbox would."""
    from runner.dsl.template import _JINJA_MARK, render

    if _JINJA_MARK.search(text) or _JINJA_MARK.search(text + "{"):
        return
    fast = render(text, {}, [])
    slow = render(text + "{{ '' }}", {}, [])
    assert fast.text == slow.text

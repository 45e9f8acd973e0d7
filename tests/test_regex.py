"""runner/regex.py: patterns compiled on first use, and PyYAML imported with its patterns so."""

from __future__ import annotations

import re
import subprocess
import sys
import threading

import pytest

from runner.regex import LazyPattern, compiled_when_used, lazy


def test_a_lazy_pattern_answers_as_the_compiled_one():
    source, flags = r"^(?P<n>\d+)\s*([kmg]?)b?\Z", re.I
    pattern, compiled = lazy(source, flags), re.compile(source, flags)
    assert "match" not in vars(pattern)  # nothing compiled yet
    for text in ("12 kb", "7", "x", "12 KB"):
        assert (pattern.match(text) and pattern.match(text).groups()) == (
            compiled.match(text) and compiled.match(text).groups())
    assert pattern.sub("n", "12 kb") == compiled.sub("n", "12 kb")
    assert (pattern.pattern, pattern.flags, pattern.groups, dict(pattern.groupindex)) == (
        compiled.pattern, compiled.flags, compiled.groups, dict(compiled.groupindex))
    assert "match" in vars(pattern)  # bound once: later calls do not go through __getattr__
    with pytest.raises(AttributeError):
        pattern.no_such_thing  # a name a Pattern lacks


def test_compiles_are_lazy_in_this_thread_only():
    seen = {}

    def other():
        seen["other"] = re.compile(r"b+")

    with compiled_when_used():
        mine = re.compile(r"a+")
        worker = threading.Thread(target=other)
        worker.start()
        worker.join()
    assert isinstance(mine, LazyPattern) and mine.fullmatch("aaa")
    assert isinstance(seen["other"], re.Pattern)  # another thread may test isinstance or call re.sub
    assert isinstance(re.compile("c"), re.Pattern)  # and outside, compile is itself again


def test_yaml_through_yamllib_compiles_none_of_its_patterns_for_a_pipeline_load():
    code = (
        "from runner.diagnostics import Diagnostics\n"
        "from runner.dsl.yamlload import load_yaml\n"
        "from runner.yamllib import yaml\n"
        "root = load_yaml('a: [1, yes, 2.5]\\nb: {c: d}\\n', Diagnostics('.conveyor.yml'))\n"
        "assert root is not None\n"
        "reader = yaml.reader.Reader.NON_PRINTABLE\n"
        "assert type(reader).__name__ == 'LazyPattern' and 'search' not in vars(reader), reader\n"
        # PyYAML's own loaders still work, and still refuse what they refused
        "assert yaml.safe_load('x: [1, 2]\\ny: yes\\nz: 2001-12-14') == "
        "{'x': [1, 2], 'y': True, 'z': __import__('datetime').date(2001, 12, 14)}\n"
        "try:\n"
        "    yaml.safe_load('a: \\x07')\n"
        "except yaml.reader.ReaderError:\n"
        "    print('refused')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "refused"


def test_conveyor_imports_yaml_only_through_yamllib():
    import pathlib

    import runner

    root = pathlib.Path(runner.__file__).parent
    direct = [str(p.relative_to(root)) for p in root.rglob("*.py") if p.name != "yamllib.py"
              and re.search(r"^\s*(import yaml\b|from yaml\b)", p.read_text(), re.M)]
    assert direct == [], "import yaml from runner.yamllib (its patterns compile on first use)"

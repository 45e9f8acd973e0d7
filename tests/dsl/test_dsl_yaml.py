"""The YAML loader: positions, strict scalars, duplicate keys, bounded aliases, depth and size."""

from __future__ import annotations

import resource
import time

from runner.diagnostics import Diagnostics
from runner.dsl.yamlload import MAX_BYTES, YMap, load_yaml, to_py


def load(text: str):
    diags = Diagnostics("f.yml")
    return load_yaml(text, diags), [str(d) for d in diags.items]


def test_every_node_has_a_one_based_line_and_column():
    root, diags = load("a:\n  - x\n  - {b: 1}\n")
    assert diags == []
    seq = root.get("a")
    assert (root.line, root.col, seq.line, seq.col) == (1, 1, 2, 3)
    assert (seq.items[0].line, seq.items[0].col) == (2, 5)
    inner = seq.items[1]
    assert isinstance(inner, YMap) and (inner.entries["b"][0].line, inner.entries["b"][0].col) == (3, 6)


def test_on_yes_no_keys_stay_strings_and_only_true_false_are_booleans():
    root, _ = load("on: yes\nyes: no\nno: off\nt: true\nf: False\nn: ~\ni: 0x10\nd: 1.5\nv: 3.10\ns: '1'\n")
    assert to_py(root) == {"on": "yes", "yes": "no", "no": "off", "t": True, "f": False, "n": None, "i": 16,
                           "d": 1.5, "v": 3.1, "s": "1"}
    assert root.get("v").text == "3.10"  # the source text is kept: a version string stays "3.10"


def test_duplicate_key_names_both_lines():
    _, diags = load("a: 1\nb: 2\na: 3\n")
    assert diags == ["f.yml:3:1: error: duplicate key 'a' (first defined on line 1)"]


def test_billion_laughs_fails_fast_without_eating_memory():
    levels = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 10):
        prev, cur = chr(96 + i), chr(97 + i)
        levels.append(f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * 9) + "]")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    root, diags = load("\n".join(levels) + "\n")
    assert time.perf_counter() - start < 1.0
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 20 * 1024  # KiB
    assert root is None and "aliases expand to more than 100000 nodes" in diags[0]


def test_small_aliases_and_merge_keys_work():
    root, diags = load("base: &base {image: 'x:1', env: {A: '1'}}\njob:\n  <<: *base\n  image: 'y:2'\n")
    assert diags == []
    assert to_py(root)["job"] == {"image": "y:2", "env": {"A": "1"}}


def test_depth_and_size_are_capped():
    _, diags = load("a: " + "[" * 80 + "]" * 80 + "\n")
    assert diags == ["f.yml:1:67: error: nesting is deeper than 64 levels; flatten the file"]
    _, diags = load("a: '" + "x" * MAX_BYTES + "'\n")
    assert diags == ["f.yml:1:1: error: the file is larger than 1024 KiB; split it or generate less"]


def test_no_python_objects_from_tags():
    _, diags = load("a: !!python/name:os.system\n")
    assert diags == ["f.yml:1:4: error: unsupported tag '!!python/name:os.system'; pipeline files use plain YAML values only"]
    root, diags = load("a: !!str 12\nb: !!int '7'\n")
    assert diags == [] and to_py(root) == {"a": "12", "b": 7}


def test_bad_characters_are_diagnostics_with_positions():
    _, diags = load("x: 1\na: b\x00\n")
    assert diags == ["f.yml:2:5: error: invalid YAML: character #x0000 is not allowed here "
                     "(control characters are not allowed); remove it"]
    _, diags = load("x: 1\na: \ud800\n")
    assert diags == ["f.yml:2:4: error: the text contains a lone surrogate, which is not valid Unicode; remove it"]


def test_aliases_of_a_huge_string_are_bounded_too():
    big = "x" * 500_000
    text = f"a: &big '{big}'\nb: [" + ", ".join(["*big"] * 60) + "]\n"
    root, diags = load(text)
    assert root is None and diags == ["f.yml:2:" + str(5 + 6 * 51) + ": error: aliases expand to more than 100000 "
                                      "nodes; use fewer nested aliases (or Jinja loops)"]

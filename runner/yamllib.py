"""PyYAML, imported with its module-level patterns compiled on first use (``runner/regex.py``).

Conveyor parses with libyaml's event parser and resolves scalars itself (``runner/dsl/yscalars.py``),
so PyYAML's reader and resolver patterns are never used by a pipeline load, and compiling them was
most of PyYAML's import. Import ``yaml`` from here so that whichever module comes first gets it so.
"""

from runner.regex import compiled_when_used

with compiled_when_used():
    import yaml

__all__ = ["yaml"]

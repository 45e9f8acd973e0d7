"""Where Conveyor's own files are: the page's templates and static files, the pipeline macros of
``pipelines/lib`` and the first-party plugins of ``plugins/``.

In the source tree they sit at the top level (``web/``, ``pipelines/lib/``, ``plugins/``), which is
what tests and editable installs use. A wheel carries the same folders inside the package, under
``runner/_bundled/`` (``setup.py`` maps them there), because an installed package has no source tree
around it. This module is the one place that knows both layouts.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["bundled_path", "WEB_DIR", "PIPELINE_LIB_DIR", "PLUGINS_DIR"]

_PACKAGE = Path(__file__).resolve().parent
_INSTALLED = _PACKAGE / "_bundled"
_SOURCE_TREE = _PACKAGE.parent


def bundled_path(relative: str) -> Path:
    """``relative`` (as in the source tree, e.g. ``web/static``) in the installed package, else in the
    source tree. Only the package's own folder is consulted first, so a stray ``web/`` in the current
    directory can never stand in for Conveyor's."""
    installed = _INSTALLED / relative
    return installed if installed.exists() else _SOURCE_TREE / relative


WEB_DIR = bundled_path("web")
PIPELINE_LIB_DIR = bundled_path("pipelines/lib")
PLUGINS_DIR = bundled_path("plugins")

"""The plugin manager: built-ins, the first-party modules in ``plugins/``, and installed plugins.

Three sources, all through the hooks of ``runner.hookspecs``:

- built-ins defined here (the deploy/rollback/build stage actions of ``runner.deploy``);
- first-party plugins: every ``plugins/*.py`` module of a source checkout;
- third-party plugins: packages that declare a ``conveyor`` entry point
  (``[project.entry-points.conveyor] myplugin = "my_package.plugin"``).

The helpers below call the hooks for the rest of Conveyor. A plugin that raises is logged and left
out of that call: a broken plugin never fails a build.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import re
import sys
import threading

import pluggy

from runner import hookspecs
from runner.bundled import PLUGINS_DIR
from runner.hookspecs import hookimpl

__all__ = [
    "FIRST_PARTY_DIR",
    "plugin_manager",
    "event_sinks",
    "stage_actions",
    "build_started",
    "build_finished",
    "notifier_types",
]

log = logging.getLogger("conveyor.plugins")
_GROUP_HEADER = re.compile(rb"^\s*\[\s*" + re.escape(hookspecs.PROJECT.encode()) + rb"\s*\]", re.MULTILINE)
FIRST_PARTY_DIR = PLUGINS_DIR  # plugins/ of the source tree, or its copy inside an installed wheel
_manager: pluggy.PluginManager | None = None
_making = threading.Lock()  # the first builds' threads may ask at once: one manager, plugins loaded once


class _DeployActions:
    """Built-in: the `build`, `deploy` and `rollback` stages are run by runner.deploy."""

    @hookimpl
    def conveyor_stage_actions(self, settings, store):
        try:
            deploy = importlib.import_module("runner.deploy")
        except ModuleNotFoundError:
            return {}
        actions = getattr(deploy, "stage_actions", None)
        return actions(settings, store) if actions is not None else {}


def _load_first_party(pm: pluggy.PluginManager) -> None:
    if not FIRST_PARTY_DIR.is_dir():
        return
    for path in sorted(FIRST_PARTY_DIR.glob("*.py")):
        if path.name.startswith("_"):
            continue
        name = f"conveyor_plugins.{path.stem}"
        try:
            module = sys.modules.get(name)
            if module is None:
                spec = importlib.util.spec_from_file_location(name, path)
                module = importlib.util.module_from_spec(spec)
                sys.modules[name] = module
                spec.loader.exec_module(module)
            pm.register(module, name=path.stem)
        except Exception as exc:  # noqa: BLE001 - one bad plugin must not stop Conveyor
            log.error("plugin %s could not be loaded: %s", path, exc)


def _any_declared() -> bool:
    """Whether an installed distribution may declare a ``conveyor`` entry point, from a look at the
    ``entry_points.txt`` of each ``*.dist-info``/``*.egg-info`` folder on ``sys.path``. Loading them
    (importlib.metadata: its import and a parse of every distribution) took 20-30 ms of every build's
    start; now only a machine with such a plugin pays it. A path entry that is no folder (a zip, an
    egg) counts as "may": importlib.metadata looks into it."""
    for entry in sys.path:
        try:
            with os.scandir(entry or ".") as found:
                infos = [d.path for d in found if d.name.endswith((".dist-info", ".egg-info"))]
        except NotADirectoryError:
            return True
        except OSError:  # gone, or unreadable: importlib.metadata would find nothing there either
            continue
        for info in infos:
            try:
                with open(os.path.join(info, "entry_points.txt"), "rb") as fh:
                    if _GROUP_HEADER.search(fh.read()):
                        return True
            except OSError:  # no entry points (or an old one-file .egg-info)
                continue
    return False


def plugin_manager() -> pluggy.PluginManager:
    """The process-wide manager, made on first use."""
    global _manager
    with _making:
        if _manager is None:
            pm = pluggy.PluginManager(hookspecs.PROJECT)
            pm.add_hookspecs(hookspecs)
            pm.register(_DeployActions(), name="builtin-deploy")
            _load_first_party(pm)
            try:
                if _any_declared():
                    pm.load_setuptools_entrypoints(hookspecs.PROJECT)
            except Exception as exc:  # noqa: BLE001
                log.error("installed conveyor plugins could not be loaded: %s", exc)
            _manager = pm
        return _manager


def _call(hook_name: str, **kwargs) -> list:
    """Call each implementation on its own, so one that raises does not hide the others."""
    hook = getattr(plugin_manager().hook, hook_name)
    results = []
    for impl in hook.get_hookimpls():  # registration order: later plugins override earlier ones
        try:
            args = [kwargs[name] for name in impl.argnames]
            result = impl.function(*args)
        except Exception as exc:  # noqa: BLE001
            log.error("plugin %s failed in %s: %s", impl.plugin_name, hook_name, exc)
            continue
        if result is not None:
            results.append(result)
    return results


def event_sinks(build, settings) -> list:
    sinks = []
    for result in _call("conveyor_event_sinks", build=build, settings=settings):
        sinks.extend(result if isinstance(result, (list, tuple)) else [result])
    return sinks


def stage_actions(settings, store) -> dict:
    actions: dict = {}
    for result in _call("conveyor_stage_actions", settings=settings, store=store):
        actions.update(result)
    return actions


def build_started(build, settings) -> None:
    _call("conveyor_build_started", build=build, settings=settings)


def build_finished(build, status, settings) -> None:
    _call("conveyor_build_finished", build=build, status=status, settings=settings)


def notifier_types() -> dict[str, type]:
    """Every notifier type the plugins provide (``notify:`` entries name them)."""
    types: dict[str, type] = {}
    for result in _call("conveyor_notifiers"):
        types.update(result)
    return types

"""The hooks are documented, first-party plugins load through them, and the badge plugin works."""

from __future__ import annotations

import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from runner import hookspecs, plugins
from runner.build import BuildRequest, create_build
from runner.settings import Settings
from runner.store import builds as q
from runner.store.db import Store

ROOT = Path(__file__).resolve().parent.parent.parent


def _hooks() -> set[str]:
    return {name for name in dir(hookspecs) if name.startswith("conveyor_")}


def test_every_hook_is_documented_and_every_documented_hook_exists():
    doc = (ROOT / "docs" / "plugins.md").read_text()
    documented = set(re.findall(r"^### (conveyor_\w+)$", doc, flags=re.M))
    assert _hooks(), "no hooks found"
    assert _hooks() - documented == set(), "hooks missing from docs/plugins.md"
    assert documented - _hooks() == set(), "docs/plugins.md documents hooks that do not exist"
    for name in _hooks():
        assert (getattr(hookspecs, name).__doc__ or "").strip().count("\n") == 0, f"{name}: one-line docstring"


def test_builtins_and_first_party_plugins_are_registered():
    names = {name for name, _ in plugins.plugin_manager().list_name_plugin()}
    assert {"builtin-deploy", "badges"} <= names
    first_party = {p.stem for p in (ROOT / "plugins").glob("*.py") if not p.name.startswith("_")}
    assert first_party <= names


LIST_PLUGINS = ("import sys; from runner.plugins import plugin_manager; "
                "print(sorted(n for n, _ in plugin_manager().list_name_plugin())); "
                "print('importlib.metadata' in sys.modules)")


def test_an_installed_package_s_entry_point_plugin_is_loaded(tmp_path):
    # An installed distribution (its dist-info on sys.path) declaring `[conveyor]` entry points: its
    # plugin module is registered under the entry point's name.
    (tmp_path / "acme_conveyor.py").write_text(
        "from runner.hookspecs import hookimpl\n\n"
        "@hookimpl\ndef conveyor_build_started(build, settings):\n    pass\n")
    info = tmp_path / "acme_conveyor-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-conveyor\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[console_scripts]\nacme = acme_conveyor:main\n\n"
                                           "[conveyor]\nacme = acme_conveyor\n")
    out = subprocess.run([sys.executable, "-c", LIST_PLUGINS], capture_output=True, text=True, cwd=ROOT,
                         env={**_env(), "PYTHONPATH": f"{tmp_path}"}, check=True).stdout.splitlines()
    assert "acme" in eval(out[0]), out


def test_no_installed_plugin_costs_no_metadata_scan(tmp_path):
    # Without any `[conveyor]` entry point (other groups are there), importlib.metadata is never
    # loaded: a build's start does not pay for reading every installed distribution.
    info = tmp_path / "other-1.0.dist-info"
    info.mkdir()
    (info / "entry_points.txt").write_text("[console_scripts]\nother = other:main\n[conveyor_not]\nx = y\n")
    out = subprocess.run([sys.executable, "-c", LIST_PLUGINS], capture_output=True, text=True, cwd=ROOT,
                         env={**_env(), "PYTHONPATH": f"{tmp_path}"}, check=True).stdout.splitlines()
    assert "badges" in eval(out[0]) and out[1] == "False", out


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def test_badge_plugin_writes_the_latest_status(tmp_path):
    settings = Settings(data_dir=tmp_path / "data")
    with Store(settings.data_dir) as store:
        build_id = create_build(store, BuildRequest(repo="web/app", event="push"), "i")
        store.write(lambda c: q.finish_build(c, build_id, "failure"))
        build = q.get_build(store.read(), build_id)
    plugins.build_finished(build, "failure", settings)
    badge = settings.data_dir / "badges" / "web_app.svg"
    svg = ET.fromstring(badge.read_text())
    texts = [t.text for t in svg.iter("{http://www.w3.org/2000/svg}text")]
    assert texts == ["build", "failure"]
    plugins.build_finished(build, "success", settings)
    assert "success" in badge.read_text() and "failure" not in badge.read_text()


def test_a_plugin_that_raises_is_left_out_not_fatal(tmp_path):
    class Broken:
        @hookspecs.hookimpl
        def conveyor_stage_actions(self, settings, store):
            raise RuntimeError("boom")

    class Good:
        @hookspecs.hookimpl
        def conveyor_stage_actions(self, settings):
            return {"deploy": "mine"}

    pm = plugins.plugin_manager()
    broken, good = Broken(), Good()
    pm.register(broken)
    pm.register(good)
    try:
        actions = plugins.stage_actions(Settings(data_dir=tmp_path), store=None)
        assert actions["deploy"] == "mine"  # registered last, so it wins over the built-in
    finally:
        pm.unregister(broken)
        pm.unregister(good)

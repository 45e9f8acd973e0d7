"""Conveyor's plugin hooks: a flat list, one line of documentation each (docs/plugins.md has them all).

Built-in features (the deploy and rollback stage actions, the build badges) register through these
same hooks, so a third-party plugin can do anything they do. Implement a hook with
``@runner.hookspecs.hookimpl``; hooks receive only the arguments they name.
"""

from __future__ import annotations

import pluggy

__all__ = ["hookspec", "hookimpl", "PROJECT"]

PROJECT = "conveyor"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def conveyor_event_sinks(build, settings):
    """Return an event sink (or a list of them) that sees every event of this build."""


@hookspec
def conveyor_stage_actions(settings, store):
    """Return a dict of stage kind ("build", "deploy", "rollback") to the StageAction that runs it."""


@hookspec
def conveyor_build_started(build, settings):
    """Called when a build starts running, before its pipeline file is read."""


@hookspec
def conveyor_build_finished(build, status, settings):
    """Called once a build's final status is stored; ``build`` is the finished BuildRow."""


@hookspec
def conveyor_notifiers():
    """Return a dict of notifier type (a repository's ``notify: [{type: ...}]``) to its notifier class."""

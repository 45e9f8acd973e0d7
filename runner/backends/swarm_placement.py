"""Where a Swarm job may run: ``runs_on`` labels turned into placement constraints.

``key=value`` is the constraint ``node.labels.key==value``. A bare ``key`` means "the node has that
label, whatever its value": Swarm's constraints cannot say that (they compare with ``==``/``!=``
only, and the value may not be empty), so it becomes ``node.id!=<id>`` for every node that lacks the
label, computed from the manager's node list when the job starts. A job no node can take is refused
at once, naming the labels the nodes have, rather than left pending forever.

A job goes to the workspace node (the manager the runner talks to, which holds the build's volume)
when it has no ``runs_on`` or when that node carries its labels; otherwise it is constrained to the
labelled nodes only, and the Swarm scheduler picks one of them.
"""

from __future__ import annotations

from collections.abc import Sequence

from runner.backends.swarm_blocking import Node
from runner.errors import BackendError

__all__ = ["placement", "matches"]


def matches(node: Node, runs_on: Sequence[str]) -> bool:
    for want in runs_on:
        key, sep, value = want.partition("=")
        if key not in node.labels or (sep and node.labels[key] != value):
            return False
    return True


def placement(nodes: Sequence[Node], home: str | None, runs_on: Sequence[str]) -> tuple[bool, list[str]]:
    """(on the workspace node?, the service's placement constraints)."""
    if not runs_on:
        return True, [f"node.id=={home}"]
    fitting = [n for n in nodes if matches(n, runs_on)]
    if not fitting:
        have = sorted({f"{k}={v}" if v else k for n in nodes for k, v in n.labels.items()})
        raise BackendError(f"no node of the swarm has the labels runs_on asks for ({', '.join(runs_on)}); the nodes "
                           f"have: {', '.join(have) or 'no labels'}. Add one with "
                           f"`docker node update --label-add {runs_on[0]} <node>`")
    if any(n.id == home for n in fitting):
        return True, [f"node.id=={home}"]
    constraints = []
    for want in runs_on:
        key, sep, value = want.partition("=")
        if sep:
            constraints.append(f"node.labels.{key}=={value}")
        else:
            constraints += [f"node.id!={n.id}" for n in nodes if key not in n.labels]
    return False, sorted(set(constraints))

"""``needs`` across the whole file: every name known and unambiguous, no cycle, no need on a job
that ``when`` may skip (unless the needing job may be skipped too).

The graph has a node per authored job (a matrix is one node: ``needs: [unit]`` waits for all its
combinations) and per action stage (build, deploy, rollback, approval). A job with ``needs`` points
at what it names; a job without ``needs`` and an action stage point at every node of the earlier
stages (stage order), so a job that needs a later job which itself waits for stage order is a cycle.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from runner.dsl.matrix import combination_name
from runner.dsl.model import Cx, short
from runner.dsl.yamlload import YNode

__all__ = ["check_needs", "may_be_skipped"]

_FILTERS = ("branch", "tag", "event", "changes")


@dataclass
class _Node:
    name: str
    stage: int
    path: str
    raw: dict | None = None  # the job; None for an action stage
    stage_when: dict = field(default_factory=dict)
    needs: list[str] | None = None  # resolved authored names; None: stage order
    needs_node: YNode | None = None


def may_be_skipped(stage_when: dict, job_when: dict) -> str | None:
    """Which ``when`` filter may skip a job (compile-time filters or a status it does not run on)."""
    for when in (job_when, stage_when):
        for key in _FILTERS:
            if key in when:
                return f"when.{key}"
    status = job_when.get("status", stage_when.get("status", ["success"]))
    return None if "success" in status or "always" in status else "when.status"


def _nodes(value: dict) -> list[_Node]:
    nodes = []
    for i, stage in enumerate(value["stages"]):
        when = stage.get("when") or {}
        if "jobs" in stage:
            nodes += [_Node(j["name"], i, f".stages[{i}].jobs[{k}]", j, when) for k, j in enumerate(stage["jobs"])]
        elif "steps" in stage:
            nodes.append(_Node(stage["name"], i, f".stages[{i}]", {"when": {}}, when))
        else:
            nodes.append(_Node(f"stage '{stage['name']}'", i, f".stages[{i}]", None, when))
    return nodes


def check_needs(value: dict, cx: Cx) -> None:
    nodes = _nodes(value)
    jobs = [n for n in nodes if n.raw is not None]
    by_name: dict[str, list[_Node]] = {}
    for n in jobs:
        by_name.setdefault(n.name, []).append(n)
        for combo in (n.raw.get("matrix") or {}).get("combos", ()):
            by_name.setdefault(combination_name(n.name, combo), []).append(n)
    for n in jobs:
        if "needs" in n.raw:
            _resolve(n, by_name, cx)
    if cx.diags.has_errors:
        return
    cycle = _find_cycle(nodes)
    if cycle:
        _report_cycle(cycle, cx)
        return
    _check_skippable(jobs, {id(n): n for n in jobs}, by_name, cx)


def _resolve(n: _Node, by_name: dict[str, list[_Node]], cx: Cx) -> None:
    n.needs_node = n.raw["__node__"].get("needs")
    items = getattr(n.needs_node, "items", [n.needs_node])
    n.needs = []
    for i, (want, at) in enumerate(zip(n.raw["needs"], items)):
        path = f"{n.path}.needs[{i}]"
        found = {id(m): m for m in by_name.get(want, ())}
        if not found:
            cx.error(at, "unknown-need", f"job '{short(n.name)}' needs '{short(want)}', which is no job of this "
                     f"pipeline{cx.did_you_mean(want, by_name)}", path)
        elif len(found) > 1:
            stages = ", ".join(f"'{m.stage + 1}'" for m in found.values())
            cx.error(at, "ambiguous-need", f"job '{short(n.name)}' needs '{short(want)}', a name used by jobs of "
                     f"several stages (stage {stages}); rename one so the need is clear", path)
        else:
            n.needs.append(next(iter(found.values())).name)


class _Before:
    """A marker standing for every node of the stages before ``stage``: a node waiting by stage order
    points at one marker instead of at each earlier node, so the walk stays linear in the jobs."""

    def __init__(self, stage: int) -> None:
        self.stage = stage


def _find_cycle(nodes: list[_Node]) -> list[tuple[_Node, bool]] | None:
    """A cycle as ``[(node, reached by stage order?), ...]`` whose last entry is its first node again,
    or None. Walked without recursion: a long chain of needs must not reach Python's stack limit."""
    stages = max((n.stage for n in nodes), default=-1) + 1
    in_stage: list[list[_Node]] = [[] for _ in range(stages)]
    by_name: dict[str, list[_Node]] = {}
    for n in nodes:
        in_stage[n.stage].append(n)
        if n.raw is not None:
            by_name.setdefault(n.name, []).append(n)
    before = [_Before(k) for k in range(stages)]

    def edges(x):  # what x waits for, and whether by stage order (True) or by its needs (False)
        if isinstance(x, _Before):  # the earlier stages first, as the nodes' order has them
            k = x.stage - 1
            return [] if k < 0 else [(before[k], True), *((m, True) for m in in_stage[k])]
        if x.needs is not None:
            return [(m, False) for name in x.needs for m in by_name.get(name, ())]
        return [(before[x.stage], True)]

    state: dict[int, int] = {}  # 1: on the current path, 2: done
    for root in nodes:
        if id(root) in state:
            continue
        state[id(root)] = 1
        path, todo = [(root, False)], [iter(edges(root))]
        while todo:
            for m, order in todo[-1]:
                seen = state.get(id(m))
                if seen == 1:
                    start = next(i for i, (p, _) in enumerate(path) if p is m)
                    return _jobs_only(path[start:] + [(m, order)])
                if seen is None:
                    state[id(m)] = 1
                    path.append((m, order))
                    todo.append(iter(edges(m)))
                    break
            else:
                state[id(path.pop()[0])] = 2
                todo.pop()
    return None


def _jobs_only(cycle: list) -> list[tuple[_Node, bool]]:
    """The cycle without its markers; a node reached through one was reached by stage order."""
    ring = [(n, order) for n, order in cycle if not isinstance(n, _Before)]
    if isinstance(cycle[0][0], _Before):  # it closed on a marker: close it on its first node instead
        ring.append(ring[0])
    return ring


def _report_cycle(cycle: list[tuple[_Node, bool]], cx: Cx) -> None:
    # Start at the first job (in file order) of the cycle that has needs: its `needs:` is where to fix it.
    ring = cycle[:-1]
    first = min((i for i, (n, _) in enumerate(ring) if n.needs is not None),
                key=lambda i: (ring[i][0].stage, ring[i][0].path))
    ring = ring[first:] + ring[:first]
    names = [n.name for n, _ in ring] + [ring[0][0].name]
    if len(names) > 41:  # a long ring: its start, where to fix it, and its end (messages are cut)
        names = [*names[:20], f"... ({len(names) - 40} more)", *names[-20:]]
    by_order = any(order for _, order in cycle[1:])
    why = "; a job without needs waits for every earlier stage" if by_order else ""
    head = ring[0][0]
    cx.error(head.needs_node, "needs-cycle", f"needs make a cycle: {' -> '.join(names)}{why}",
             f"{head.path}.needs")


def _check_skippable(jobs: list[_Node], _index, by_name: dict[str, list[_Node]], cx: Cx) -> None:
    for n in jobs:
        if not n.needs or may_be_skipped(n.stage_when, n.raw.get("when") or {}):
            continue
        items = getattr(n.needs_node, "items", [n.needs_node])
        for i, (want, at) in enumerate(zip(n.raw["needs"], items)):
            target = by_name[want][0]
            why = may_be_skipped(target.stage_when, target.raw.get("when") or {})
            if why:
                cx.error(at, "needs-skippable", f"job '{short(n.name)}' needs '{short(want)}', which its {why} may "
                         f"skip, and '{short(n.name)}' would then be skipped too: give '{short(n.name)}' a when "
                         "of its own, or drop the need", f"{n.path}.needs[{i}]")

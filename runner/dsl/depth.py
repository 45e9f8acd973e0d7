"""The schema of the pipeline-depth keys (docs/pipeline.md): services, approval, allow_failure, runs_on.

``needs`` is a list of names checked across the whole file (``graph.py``); ``matrix`` has its own
module (``matrix.py``). The rules here look at one object at a time.
"""

from __future__ import annotations

from runner.dsl.model import INVALID, ROLES, Cx, Either, Field, ListOf, MapOf, Obj, Spec, short
from runner.dsl.values import Bool, Duration, Int, Str
from runner.dsl.yamlload import YMap
from runner.regex import lazy

__all__ = ["services", "approval", "allow_failure", "runs_on", "check_runs_on", "check_approvers"]

_SERVICE_NAME = lazy(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\Z")  # a host name the job can resolve
_LABEL = r"^[A-Za-z0-9][A-Za-z0-9_.-]*(=[^\s=]+)?\Z"


def _one_probe(value: dict, node: YMap, cx: Cx, path: str, label: str) -> None:
    present = [k for k in ("tcp", "cmd") if k in value]
    if len(present) != 1:
        cx.error(node, "exactly-one", f"{label} needs exactly one of tcp, cmd (found {', '.join(present) or 'none'})",
                 path)


_ready = Obj("ready", {"tcp": Field(Int(1, 65535)), "cmd": Field(Str()), "within": Field(Duration(), required=True)},
             validate=_one_probe,
             missing={"within": "{label} has no 'within': say how long the job waits for the service, e.g. within: 30s"})

_service = Obj("service", {
    "image": Field(Str(r"^[^\s]+\Z", ": an image reference has no spaces"), required=True),
    "command": Field(Str()), "env": Field(MapOf(what="environment variable name (letters, digits, _)")),
    "ready": Field(_ready),
}, missing={"image": "{label} needs 'image': the container to run beside the job"})


class _Services(Spec):
    """``services: {NAME: {image, command, env, ready}}``; the name is the host the job reaches it at."""

    expected = "a mapping of service names to services"

    def check(self, node, cx, path, where):
        if not isinstance(node, YMap):
            return self.wrong(node, cx, path, where)
        owner = where.removeprefix("'services' in ")
        out, bad = {}, False
        for name, (knode, vnode) in node.entries.items():
            if not _SERVICE_NAME.match(name):
                cx.error(knode, "value", f"service name '{short(name)}' in {owner} is not a host name: use lower-case "
                         "letters, digits and '-'", f"{path}.{name}")
                bad = True
                continue
            value = _service.check(vnode, cx, f"{path}.{name}", f"service '{name}' in {owner}")
            bad |= value is INVALID
            out[name] = value
        return INVALID if bad else out


services = _Services()


def check_approvers(value: dict, node: YMap, cx: Cx, path: str, label: str) -> None:
    known = set(ROLES) | set(cx.options.users)
    items = getattr(node.get("approvers"), "items", [node.get("approvers")])
    for i, (who, at) in enumerate(zip(value.get("approvers", ()), items)):
        if who not in known:
            users = f"configured users: {', '.join(sorted(cx.options.users))}" if cx.options.users else "no users are configured"
            cx.error(at, "unknown-approver", f"approver '{short(who)}' in {label} is neither a role ({', '.join(ROLES)}) "
                     f"nor a configured user ({users})", f"{path}.approvers[{i}]")


approval = Obj("approval", {
    "message": Field(Str()), "approvers": Field(ListOf(Str(), single=True, what="approver")),
    "timeout": Field(Duration()),
}, validate=check_approvers)

allow_failure = Either(
    scalar=Bool(),
    mapping=Obj("allow_failure", {"exit_codes": Field(ListOf(Int(1, 255), single=True, what="exit code"),
                                                      required=True)}),
    expected="true, false or a mapping with exit_codes",
)

runs_on = ListOf(Str(_LABEL, ": write a node label as 'key=value' or 'key'"), single=True, what="label")


def check_runs_on(value: dict, node: YMap, cx: Cx, path: str, label: str) -> None:
    """Only the swarm backend places jobs by node label; elsewhere a label must be the runner's own."""
    if cx.options.backend == "swarm" or "runs_on" not in value:
        return
    items = getattr(node.get("runs_on"), "items", [node.get("runs_on")])
    declared = cx.options.runner_labels
    for i, (want, at) in enumerate(zip(value["runs_on"], items)):
        if want not in declared:
            have = ", ".join(sorted(declared)) or "none"
            cx.error(at, "runs-on", f"{label} asks for runs_on '{short(want)}', which this {cx.options.backend} runner "
                     f"does not declare (declared: {have}); declare it in the runner's configuration, use the swarm "
                     "backend, or drop runs_on", f"{path}.runs_on[{i}]")

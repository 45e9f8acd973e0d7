"""The specs of the stages that ship: ``build`` (an image), ``deploy`` (a service or a Compose
stack) and ``rollback`` (docs/deploy.md). What they become in the plan is ``compile.py``'s."""

from __future__ import annotations

from runner.dsl.lint import warn_short_monitor
from runner.dsl.model import INVALID, Cx, Either, Field, ListOf, MapOf, Obj, Spec
from runner.dsl.values import Bool, Duration, Enum, Image, Int, Memory, Num, Str
from runner.dsl.yamlload import YMap, YScalar
from runner.regex import lazy

__all__ = ["build_stage", "deploy_stage", "rollback_stage"]

_CONSTRAINT = r"^[A-Za-z0-9_.-]+ *(==|!=) *[^\s=!]+\Z"
_PORT = lazy(r"^(\d{1,5}):(\d{1,5})(?:/(tcp|udp|sctp))?\Z")
_env = MapOf(what="environment variable name (letters, digits, _)")
_image = Image()


class _Port(Spec):
    expected = "'PUBLISHED:TARGET' or a mapping with published and target"

    def check(self, node, cx, path, where):
        m = _PORT.match(node.text) if isinstance(node, YScalar) and node.value is not None else None
        if isinstance(node, YScalar) and isinstance(node.value, int) and not isinstance(node.value, bool):
            cx.error(node, "value", f"{where} needs a published port, not just {node.value}: write "
                     f"e.g. '{node.value + 10000}:{node.value}' (PUBLISHED:TARGET)", path)
            return INVALID
        if m is None:
            return self.wrong(node, cx, path, where)
        published, target = int(m.group(1)), int(m.group(2))
        if not (0 < published < 65536 and 0 < target < 65536):
            cx.error(node, "value", f"{where} has a port outside 1..65535 ('{node.text}')", path)
            return INVALID
        return {"published": published, "target": target, "protocol": m.group(3) or "tcp", "__node__": node}


build_stage = Obj("build", {
    "tag": Field(Image(warn=False), required=True), "context": Field(Str()), "dockerfile": Field(Str()),
    "args": Field(MapOf(what="build argument name")), "target": Field(Str()), "timeout": Field(Duration()),
    "push": Field(Bool()),
})

_update = Obj("update", {
    "order": Field(Enum("start-first", "stop-first")), "parallelism": Field(Int(0)), "delay": Field(Duration()),
    "monitor": Field(Duration()), "failure_action": Field(Enum("rollback", "pause", "continue")),
    "max_failure_ratio": Field(Num(0.0, 1.0)),
})

_ENVIRONMENT = Str(r"^[a-z0-9][a-z0-9_-]{0,40}\Z", ": environment names are lower-case letters, digits, '-' and '_'")
deploy_stage = Obj("deploy", {
    "service": Field(Str(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}\Z", ": use letters, digits, '-', '_' and '.'")),
    "image": Field(_image), "replicas": Field(Int(0, 1000)), "env": Field(_env),
    "command": Field(Either(scalar=Str(), seq=ListOf(Str(), what="argument"))),
    "ports": Field(ListOf(Either(scalar=_Port(), mapping=Obj("port", {
        "published": Field(Int(1, 65535), required=True), "target": Field(Int(1, 65535), required=True),
        "protocol": Field(Enum("tcp", "udp", "sctp")), "mode": Field(Enum("host", "ingress")),
    }), expected=_Port.expected), what="port")),
    "networks": Field(ListOf(Str(), what="network")),
    "healthcheck": Field(Obj("healthcheck", {
        "cmd": Field(Str(), required=True), "interval": Field(Duration()), "timeout": Field(Duration()),
        "retries": Field(Int(0, 100)), "start_period": Field(Duration()),
    })),
    "resources": Field(Obj("resources", {"cpus": Field(Num(0.01)), "memory": Field(Memory())})),
    "labels": Field(MapOf(r"^[A-Za-z0-9][A-Za-z0-9_.-]*\Z", "label name")),
    "update": Field(_update), "rollback": Field(_update),
    "verify": Field(Obj("verify", {
        "http": Field(Str(r"^https?://", ": use an http:// or https:// URL")), "status": Field(Int(100, 599)),
        "command": Field(Str()), "image": Field(_image), "within": Field(Duration()),
    }, validate=lambda v, n, cx, p, label: _exactly_one(v, n, cx, p, label, ("http", "command")))),
    "target": Field(Str()), "timeout": Field(Duration()), "stack": Field(Str(r"^[a-zA-Z0-9][a-zA-Z0-9_-]*\Z")),
    "compose": Field(Str()), "endpoint_mode": Field(Enum("vip", "dnsrr")),
    "environment": Field(_ENVIRONMENT),
    "placement": Field(Obj("placement", {
        # Compose's shape: constraints as Swarm expressions, preferences as `- spread: DESCRIPTOR`.
        "constraints": Field(ListOf(Str(_CONSTRAINT, ": write e.g. 'node.labels.zone==a' or "
                                    "'node.role!=manager'"), single=True, what="constraint")),
        "preferences": Field(ListOf(Obj("preference", {"spread": Field(Str(r"^\S+\Z"), required=True)}),
                                    what="preference")),
        "max_replicas_per_node": Field(Int(0, 1000)),
    })),
}, validate=lambda v, n, cx, p, label: _check_deploy(v, n, cx, p, label))

rollback_stage = Obj("rollback", {
    "service": Field(Str()), "stack": Field(Str()), "to": Field(Int(1)), "target": Field(Str()),
    "timeout": Field(Duration()), "environment": Field(_ENVIRONMENT),
}, validate=lambda v, n, cx, p, label: _exactly_one(v, n, cx, p, label, ("service", "stack")))


def _exactly_one(value: dict, node: YMap, cx: Cx, path: str, label: str, keys: tuple[str, ...]) -> None:
    present = [k for k in keys if k in value]
    if len(present) != 1:
        found = ", ".join(present) if present else "none"
        cx.error(node, "exactly-one", f"{label} needs exactly one of {', '.join(keys)} (found {found})", path)


def _check_deploy(value: dict, node: YMap, cx: Cx, path: str, label: str) -> None:
    _exactly_one(value, node, cx, path, label, ("service", "stack"))
    if "service" in value and "image" not in value:
        cx.error(node, "missing-key", f"{label} needs 'image' (the image the service runs)", path)
    if "stack" in value and "compose" not in value:
        cx.error(node, "missing-key", f"{label} needs 'compose' (the Compose file of the stack)", path)
    rollback = value.get("rollback") or {}
    if rollback.get("failure_action") == "rollback":
        cx.error(rollback["__node__"].get("failure_action"), "value", f"'failure_action' of 'rollback' in {label} "
                 "must be pause or continue (a rollback cannot roll back)", path + ".rollback.failure_action")
    warn_short_monitor(value, node, cx, path, label)

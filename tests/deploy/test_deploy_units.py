"""The pure parts of deploying: spec building, the watcher's verdicts, the table (Compose: test_compose_units)."""

from __future__ import annotations

import time

import pytest

from runner.cli.deploy_cmds import deploys_table
from runner.deploy.spec import service_spec, task_key, warnings_for, with_deploy_label
from runner.deploy.watch import assess, stuck_task
from runner.errors import DeployError
from runner.plan import DeploySpec, Healthcheck, Placement, Port, UpdateConfig


def test_service_spec_has_every_setting_and_safe_defaults():
    spec = DeploySpec(service="web", image="web:1", replicas=2, env={"A": "1"}, command=("httpd", "-f"),
                      ports=(Port(18080, 8080),), networks=("front",), cpus=0.5, memory=64 * 1024 * 1024,
                      healthcheck=Healthcheck("wget -q -O- http://127.0.0.1:8080/health", interval=2, retries=3))
    s = service_spec(spec, "web", "web:1", {"io.conveyor.instance": "i"})
    c = s["TaskTemplate"]["ContainerSpec"]
    assert c["Image"] == "web:1" and c["Env"] == ["A=1"] and c["Args"] == ["httpd", "-f"]
    assert c["Healthcheck"]["Test"][0] == "CMD-SHELL" and c["Healthcheck"]["Interval"] == 2_000_000_000
    assert s["TaskTemplate"]["Resources"]["Limits"] == {"NanoCPUs": 500_000_000, "MemoryBytes": 67108864}
    assert s["TaskTemplate"]["Networks"] == [{"Target": "front"}]
    assert s["Mode"] == {"Replicated": {"Replicas": 2}}
    assert s["UpdateConfig"]["Order"] == "start-first" and s["UpdateConfig"]["FailureAction"] == "rollback"
    assert s["RollbackConfig"]["FailureAction"] == "pause"
    assert s["EndpointSpec"]["Ports"] == [{"Protocol": "tcp", "TargetPort": 8080, "PublishedPort": 18080,
                                           "PublishMode": "host"}]
    assert s["Labels"]["io.conveyor.managed"] == "1"
    labelled = with_deploy_label(s, 7)
    assert labelled["Labels"]["io.conveyor.deploy"] == "7" and "io.conveyor.deploy" not in s["Labels"]
    assert task_key(labelled["TaskTemplate"]) == task_key(s["TaskTemplate"])  # labels never restart tasks
    with pytest.raises(DeployError, match="failure_action 'rollback' must be one of pause, continue"):
        service_spec(DeploySpec(service="w", image="x", rollback=UpdateConfig()), "w", "x")


def test_lint_warnings():
    short = DeploySpec(service="w", image="x", healthcheck=Healthcheck("true", interval=5, timeout=3, retries=3),
                       update=UpdateConfig(monitor=5), ports=(Port(1, 2),))
    text = " ".join(warnings_for(short))
    assert "update.monitor is 5s" in text and "24s" in text and "stop-first" in text
    assert warnings_for(DeploySpec(service="w", image="x")) == []


def _task(state, desired, key_spec, created="2030-01-01T00:00:00.0Z", err=None, tid="t"):
    return {"ID": tid, "DesiredState": desired, "Spec": key_spec, "CreatedAt": created,
            "Status": {"State": state, **({"Err": err} if err else {})}}


def test_watch_verdicts():
    new, old = {"ContainerSpec": {"Image": "v2"}}, {"ContainerSpec": {"Image": "v1"}}
    svc = {"Spec": {"TaskTemplate": new, "Mode": {"Replicated": {"Replicas": 2}}}, "Version": {"Index": 9}}
    now = time.monotonic()
    running = [_task("running", "running", new, tid="a"), _task("running", "running", new, tid="b")]
    assert assess(svc, running, now, 0).outcome == "converged"
    # An old task still meant to run: not yet; one told to stop and draining does not hold it back.
    assert assess(svc, running[:1] + [_task("running", "running", old, tid="c")], now, 0) is None
    assert assess(svc, running + [_task("running", "shutdown", old, tid="c")], now, 0).outcome == "converged"
    rolled = dict(svc, UpdateStatus={"State": "rollback_completed", "Message": "rollback completed"})
    assert assess(rolled, running, now, 0).outcome == "rolled_back"  # never a success (docker/cli#6752)
    # ... unless that status is the stale one from before our write.
    assert assess(rolled, running, now, 0, stale=rolled["UpdateStatus"]).outcome == "converged"
    paused = dict(svc, UpdateStatus={"State": "paused", "Message": "update paused"})
    assert assess(paused, running, now, 0).outcome == "paused"
    failing = [_task("failed", "shutdown", new, err="exit 1", tid=str(i)) for i in range(3)]
    verdict = assess(svc, failing, now, 0)
    assert verdict.outcome == "failed" and "exit 1" in verdict.reason
    stuck = [_task("pending", "running", new, err="host-mode port already in use on 1 node")]
    assert assess(svc, stuck, now, 0) is None
    since: dict[str, float] = {}
    assert stuck_task(stuck, since, now) is None and stuck_task(stuck, since, now + 5) is None
    assert "port already in use" in stuck_task(stuck, since, now + 20)
    assert stuck_task([], since, now + 30) is None and since == {}


def test_deploys_table():
    row = dict(id=3, service="web", target="default", kind="rollback", rollback_of=1, status="succeeded",
               image="web:1", repo="web", build_number=4, commit_sha="abcdef123456", started=1e9, finished=1e9 + 2.5,
               trigger="cli:ops", reason="because")
    lines = deploys_table([row])
    assert lines[0].split()[:4] == ["ID", "SERVICE", "KIND", "STATUS"]
    assert "rollback to #1" in lines[1] and "web#4" in lines[1] and "abcdef12 " in lines[1] and "2.5s" in lines[1]
    assert lines[2] == "#3: because"


def test_placement_maps_onto_the_task_template_and_is_absent_when_not_asked():
    placed = DeploySpec(service="web", image="web:1", replicas=3, placement=Placement(
        constraints=("node.labels.zone==a",), preferences=("node.labels.bed",), max_replicas_per_node=1))
    assert service_spec(placed, "web", "web:1")["TaskTemplate"]["Placement"] == {
        "Constraints": ["node.labels.zone==a"], "Preferences": [{"Spread": {"SpreadDescriptor": "node.labels.bed"}}],
        "MaxReplicas": 1}
    assert "Placement" not in service_spec(DeploySpec(service="web", image="web:1"), "web", "web:1")["TaskTemplate"]

"""The deploy configuration (registries, environments) from the targets file and the server's,
the spec an environment makes of a deploy, and drift's field-by-field differences (no engine)."""

from __future__ import annotations

import pytest
from registry_helpers import write_targets

from runner.engine import load_targets
from runner.deploy.config import Environment, load_deploy_config
from runner.deploy.drift import differences
from runner.deploy.environments import adjust_recorded, check_approved, check_branch, for_environment
from runner.deploy.registry import split_ref
from runner.errors import DeployError
from runner.plan import DeploySpec
from runner.server.config import ServerConfigError, load_config
from runner.settings import Settings


def test_targets_file_registries_fall_back_to_the_default_and_the_server_configuration_wins(tmp_path):
    settings = Settings(data_dir=tmp_path)
    write_targets(tmp_path / "targets.yml", {
        "registry": {"url": "http://reg.example:5000/", "username_env": "U", "password_env": "P"},
        "environments": {"staging": {"target": "prod", "suffix": "-staging"}},
        "prod": {"url": "tcp://10.0.0.5:2376", "registry": {"url": "inner:5000", "insecure": True}},
        "other": {"url": "tcp://10.0.0.6:2376"},
    })
    targets = load_targets(settings)
    assert set(targets) == {"default", "prod", "other"}  # registry/environments are not targets
    assert targets["default"].registry.url == "reg.example:5000"  # scheme and slash dropped
    assert targets["prod"].registry.url == "inner:5000" and targets["prod"].registry.insecure
    assert targets["other"].registry.url == "reg.example:5000"
    config = load_deploy_config(Settings(data_dir=tmp_path, deploy={
        "environments": {"production": {"approvers": ["admin"], "branches": "main"}}}))
    assert set(config.environments) == {"staging", "production"}
    assert config.environments["production"].branches == ("main",)
    with pytest.raises(DeployError, match="unknown environment 'qa' .*known: production, staging"):
        config.environment("qa")


def test_registry_credentials_come_from_the_environment_at_the_call(tmp_path, monkeypatch):
    write_targets(tmp_path / "targets.yml", {"registry": {"url": "reg:5000", "username_env": "RU",
                                                          "password_env": "RP"}})
    registry = load_targets(Settings(data_dir=tmp_path))["default"].registry
    monkeypatch.delenv("RP", raising=False)
    monkeypatch.setenv("RU", "me")
    with pytest.raises(DeployError, match=r"password_env names \$RP, which is not set"):
        registry.auth_config()
    monkeypatch.setenv("RP", "secret")
    assert registry.auth_config() == {"username": "me", "password": "secret", "serveraddress": "reg:5000"}
    assert registry.qualify("web:1") == "reg:5000/web:1"
    assert registry.qualify("acme/web:1") == "reg:5000/acme/web:1"
    assert registry.qualify("other.example/web:1") == "other.example/web:1"
    assert split_ref("reg:5000/web:1") == ("reg:5000/web", "1", None)
    assert split_ref("reg:5000/web@sha256:ab") == ("reg:5000/web", None, "sha256:ab")
    assert split_ref("reg:5000/web") == ("reg:5000/web", None, None)


@pytest.mark.parametrize("bad, says", [
    ({"registry": {"url": "r:5000", "password": "x"}}, "unknown registry key"),
    ({"registry": {"url": "r:5000", "password_env": "not a var"}}, "must name an environment variable"),
    ({"environments": {"Prod": {}}}, "names are lower-case"),
    ({"environments": {"prod": {"aprovers": ["a"]}}}, "unknown key"),
])
def test_the_server_configuration_refuses_a_wrong_registry_or_environment_at_start(tmp_path, bad, says):
    path = tmp_path / "conveyor.yml"
    write_targets(path, {"data_dir": str(tmp_path / "data"), **bad})
    with pytest.raises(ServerConfigError, match=says):
        load_config(path, environ={})


def test_an_environment_renames_sets_its_variables_and_checks_target_and_branch():
    env = Environment("staging", target="default", suffix="-staging", env={"APP_ENV": "staging"},
                      branches=("main", "release/*"))
    spec = for_environment(DeploySpec(service="web", image="web:1", env={"A": "1"}), env)
    assert (spec.service, spec.target, spec.env) == ("web-staging", "default", {"A": "1", "APP_ENV": "staging"})
    assert spec.labels["io.conveyor.environment"] == "staging"
    with pytest.raises(DeployError, match="drop `target:`"):
        for_environment(DeploySpec(service="web", image="web:1", target="prod"), env)
    check_branch(env, "release/2", None)
    with pytest.raises(DeployError, match=r"only from branch\(es\) main, release/\*; this build is of tag v1"):
        check_branch(env, None, "v1")


def test_a_promoted_spec_differs_only_by_the_destination_environments_settings():
    src = Environment("staging", suffix="-staging", env={"APP_ENV": "staging", "DEBUG": "1"})
    dst = Environment("production", env={"APP_ENV": "production"})
    recorded = {"Name": "web-staging", "Labels": {"io.conveyor.deploy": "7", "io.conveyor.environment": "staging"},
                "TaskTemplate": {"ContainerSpec": {"Image": "r/web@sha256:ab", "Env": ["A=1", "APP_ENV=staging",
                                                                                        "DEBUG=1"]}}}
    out = adjust_recorded(recorded, src, dst, "web")
    assert out["Name"] == "web" and out["TaskTemplate"]["ContainerSpec"]["Image"] == "r/web@sha256:ab"
    assert out["TaskTemplate"]["ContainerSpec"]["Env"] == ["A=1", "APP_ENV=production"]
    assert out["Labels"] == {"io.conveyor.environment": "production"}
    assert recorded["Name"] == "web-staging"  # the recorded spec itself is untouched


def test_drift_names_each_differing_field_and_ignores_what_the_engine_fills_in():
    recorded = {"Name": "web", "UpdateConfig": {"Delay": 0, "Order": "start-first"}, "Mode": {"Replicated": {
        "Replicas": 1}}, "TaskTemplate": {"ContainerSpec": {"Image": "web@sha256:ab", "Env": ["A=1"]}}}
    live = {"Name": "web", "UpdateConfig": {"Order": "start-first"}, "Mode": {"Replicated": {"Replicas": 3}},
            "TaskTemplate": {"Runtime": "container", "ContainerSpec": {"Image": "web@sha256:ab", "Isolation": "default",
                                                                       "Env": ["A=1", "HOTFIX=1"]}}}
    assert differences(recorded, recorded) == []
    assert differences(recorded, live) == ["Mode.Replicated.Replicas: 1 -> 3",
                                           "TaskTemplate.ContainerSpec.Env: +HOTFIX=1"]


def test_an_environment_with_approvers_takes_only_a_build_its_approvers_approved():
    from runner.store.approvals import Approval

    def row(decision, approvers):
        return Approval(1, 1, "approve", "", tuple(approvers), 0.0, None, decision, "ana", 1.0, None)

    prod = Environment("production", approvers=("release-managers", "ana"))
    check_approved(Environment("staging"), [])  # no approvers: nothing to check
    check_approved(prod, [row("approved", ["ana"])])
    check_approved(prod, [row("rejected", ["ana"]), row("approved", ["release-managers"])])
    for rows in ([], [row("rejected", ["ana"])], [row("timed_out", ["ana"])],
                 [row("approved", [])],              # anyone could answer it
                 [row("approved", ["ana", "bob"])]):  # bob is no approver of production
        with pytest.raises(DeployError, match="needs an approval by release-managers, ana"):
            check_approved(prod, rows)

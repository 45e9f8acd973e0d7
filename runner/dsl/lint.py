"""Rules that look across fields: trust, image tags, deploy timing.

Each rule takes the checked value of one object (``value``), its node and the checking context,
and records diagnostics; the schema runs them as soon as the object itself is valid, so they are
reported together with every other problem of the file.
"""

from __future__ import annotations

from runner.dsl.model import Cx, short
from runner.dsl.yamlload import YMap, YNode, YScalar

__all__ = ["image_has_tag", "warn_untagged_image", "refuse_untrusted_job", "warn_short_monitor",
           "healthcheck_window", "warn_stage_never_or_wrongly_runs", "warn_list_item_folded_into_step",
           "check_job_depth", "check_stage_services", "check_environments", "DOCKER_SOCKETS"]

DOCKER_SOCKETS = ("/var/run/docker.sock", "/run/docker.sock")
# Both ways to trust a repository, so the user can act on the message wherever they met it.
_TRUST_HINT = ("only a trusted repository may do that: set 'trusted: true' for it in the server configuration, "
               "or pass --trusted to `conveyor run`")


def image_has_tag(ref: str) -> bool:
    """'busybox:1', 'reg:5000/app@sha256:...' have one; 'busybox' and 'reg:5000/app' do not."""
    last = ref.rsplit("/", 1)[-1]
    return ":" in last or "@" in last


def warn_untagged_image(ref: str, node: YNode, cx: Cx, path: str) -> None:
    if not image_has_tag(ref):
        cx.warning(node, "untagged-image", f"image '{ref}' has no tag; builds may change under you "
                   f"(pin one, e.g. '{ref}:1')", path)


def refuse_untrusted_job(value: dict, node: YMap, cx: Cx, path: str, label: str) -> None:
    """Privileged mode, host volumes and the Docker socket give a job the host: trusted repos only."""
    if cx.trusted:
        return
    if value.get("privileged"):
        cx.error(node.get("privileged"), "untrusted", f"{label} asks for privileged mode, which gives it the whole "
                 f"host; {_TRUST_HINT}",
                 path + ".privileged")
    vol_nodes = getattr(node.get("volumes"), "items", [])
    for i, (volume, vnode) in enumerate(zip(value.get("volumes", ()), vol_nodes)):
        source = volume.split(":", 1)[0]
        if any(source.rstrip("/") == s or volume.startswith(s) for s in DOCKER_SOCKETS) or "docker.sock" in source:
            what = "mounts the Docker socket, which controls the whole host"
        elif source.startswith(("/", ".", "~")):
            what = f"mounts the host path '{source}'"
        else:  # Docker reads a source without a slash as a named volume, which outlives the build
            what = f"mounts the named volume '{source}', which outlives the build and is shared with other builds"
        cx.error(vnode, "untrusted", f"{label} {what}; {_TRUST_HINT}", f"{path}.volumes[{i}]")


def healthcheck_window(health: dict) -> float:
    """Seconds a failing task may take before Swarm calls it unhealthy: a probe that times out
    counts as a failure, so each retry may take interval + timeout (the runtime check in
    runner/deploy/spec.py uses the same formula)."""
    return (health.get("start_period", 0.0)
            + health.get("retries", 3) * (health.get("interval", 5.0) + health.get("timeout", 3.0)))


def warn_short_monitor(value: dict, node: YMap, cx: Cx, path: str, label: str) -> None:
    health, update = value.get("healthcheck"), value.get("update") or {}
    if not health or "monitor" not in update:
        return  # without an explicit monitor, compile picks one long enough
    window = healthcheck_window(health)
    if update["monitor"] < window:
        cx.warning(update["__node__"].get("monitor"), "short-monitor",
                   f"update.monitor ({update['monitor']:g}s) in {label} is shorter than its healthcheck can fail in "
                   f"(start_period + retries x (interval + timeout) = {window:g}s); a bad version may pass the update",
                   path + ".update.monitor")


def warn_stage_never_or_wrongly_runs(value: dict, node: YMap, cx: Cx, path: str, label: str) -> None:
    """Filters that cannot both hold, and a rollback that would undo a good deploy."""
    when = value.get("when") or {}
    if "branch" in when and "tag" in when:
        cx.warning(when["__node__"], "never-runs", f"{label} filters on both branch and tag, but a build is on a "
                   "branch or at a tag, never both: it will always be skipped", path + ".when")
    if "rollback" in value and "failure" not in when.get("status", ()) and "always" not in when.get("status", ()):
        cx.warning(node, "rollback-on-success", f"{label} rolls back after a successful build; add "
                   "when: {status: failure} to roll back only when something failed", path)


def warn_list_item_folded_into_step(node: YScalar, cx: Cx, path: str, where: str) -> None:
    """A list item indented one space too far is not an item: YAML folds it into the plain scalar
    above, so ``- echo a`` / `` - echo b`` runs ``echo a - echo b`` without a word."""
    for line, col, text in node.continued:
        if text == "-" or text.startswith(("- ", "-\t")):
            cx.diags.warning("folded-step", f"'{short(text)}' is not a step of its own: YAML joins it to {where} "
                             f"('{short(node.value)}'); indent its '-' like the other steps, or quote the "
                             "command if the dash belongs to it", line, col, path)
            return


def check_job_depth(value: dict, node: YMap, cx: Cx, path: str, label: str) -> None:
    """``${axis}`` in the image and services names an axis; fail_fast/max_parallel need a matrix."""
    from runner.dsl.matrix import check_axis_refs

    matrix = value.get("matrix")
    axes = matrix["axes"] if matrix else None
    if "image" in value:
        check_axis_refs(value["image"], axes, node.get("image"), cx, path + ".image", f"the image of {label}")
    for name, service in (value.get("services") or {}).items():
        snode = service["__node__"]
        for key in ("image", "command"):
            if key in service:
                check_axis_refs(service[key], axes, snode.get(key), cx, f"{path}.services.{name}.{key}",
                                f"'{key}' of service '{name}' in {label}")
    for key in ("fail_fast", "max_parallel"):
        if key in value and matrix is None:
            cx.warning(node.entries[key][0], "no-matrix", f"'{key}' in {label} has no effect without 'matrix'",
                       f"{path}.{key}")


def check_stage_services(value: dict, node: YMap, cx: Cx, path: str, label: str) -> None:
    """A stage's service runs beside every job of the stage: its ``${axis}`` must be an axis of each."""
    from runner.dsl.matrix import check_axis_refs

    for name, service in (value.get("services") or {}).items():
        for key in ("image", "command"):
            if "${" not in service.get(key, ""):
                continue
            for job in value.get("jobs") or [{"name": value["name"]}]:
                axes = job["matrix"]["axes"] if job.get("matrix") else None
                check_axis_refs(service[key], axes, service["__node__"].get(key), cx, f"{path}.services.{name}.{key}",
                                f"'{key}' of service '{name}' in {label} (beside job '{job['name']}')")


def check_environments(value: dict, cx: Cx) -> None:
    """A deploy's ``environment`` is a configured one, and an environment with approvers is only
    deployed to after an ``approval`` stage (the gate people sign off at). Only when the runner
    told the linter its environments (``LintOptions.environments``)."""

    known = cx.options.environments
    if known is None:
        return
    approvers = dict(known)
    gated = False
    for i, stage in enumerate(value["stages"]):
        if "approval" in stage:
            gated = True
        name = (stage.get("deploy") or {}).get("environment")
        if name is None:
            continue
        node = stage["deploy"]["__node__"].get("environment")
        path = f".stages[{i}].deploy.environment"
        if name not in approvers:
            cx.error(node, "unknown-environment", f"environment '{name}' is not configured (known: "
                     f"{', '.join(sorted(approvers)) or 'none'}){cx.did_you_mean(name, approvers)}", path)
        elif approvers[name] and not gated:
            cx.error(node, "needs-approval", f"stage '{stage['name']}' deploys to '{name}', which needs an approval "
                     f"(approvers: {', '.join(approvers[name])}): add a stage with `approval:` before it", path)

"""The web-service sample end to end: `run_build` with the Docker backend, on the real swarm.

Commit 1 builds, deploys and verifies; commit 2 breaks /health, so its deploy is rolled back, the
rollback stage runs, and the service still answers with version 1.
"""

from __future__ import annotations

import asyncio
import subprocess

import pytest

from runner.backends.docker import DockerBackend
from runner.build import BuildRequest, create_build, run_build
from runner.deploy import history

from deploy_helpers import free_port, remove_instance, wait_http

pytestmark = [pytest.mark.docker, pytest.mark.swarm]


def _sha(repo) -> str:
    return subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], check=True, capture_output=True,
                          text=True).stdout.strip()


async def _run(store, settings, repo, instance, params) -> tuple[str, str]:
    sha = _sha(repo)
    request = BuildRequest(repo="web-service", event="manual", branch="main", sha=sha, params=params)
    build_id = await asyncio.to_thread(create_build, store, request, instance)
    status = await run_build(store, settings, build_id, repo, backend=DockerBackend(settings))
    return status, sha


async def test_sample_deploys_then_a_broken_health_check_is_rolled_back(swarm, store, settings, instance,
                                                                         git_repo, swarm_engine):
    repo = git_repo(sample="web-service")
    port = free_port()
    params = {"service": f"{instance}-web", "port": str(port)}
    url = f"http://127.0.0.1:{port}/"
    images = []
    try:
        status, sha1 = await _run(store, settings, repo, instance, params)
        images.append(f"web-service:{sha1[:8]}")
        assert status == "success", history.list_deploys(store)
        assert wait_http(url, "web-service v1") == "web-service v1"
        logs = "\n".join(r[0] for r in store.query("SELECT text FROM log_chunks ORDER BY id"))
        assert "from the workspace volume" in logs and "converged" in logs and "verify passed" in logs

        subprocess.run(["sh", str(repo / "break-health.sh")], check=True)
        status, sha2 = await _run(store, settings, repo, instance, params)
        images.append(f"web-service:{sha2[:8]}")
        assert status == "failure"
        rows = history.list_deploys(store, params["service"])
        assert [(r["kind"], r["status"]) for r in rows] == [
            ("rollback", "succeeded"), ("deploy", "rolled_back"), ("deploy", "succeeded")]
        assert rows[1]["commit_sha"] == sha2 and rows[2]["commit_sha"] == sha1
        assert rows[0]["rollback_of"] == rows[2]["id"]
        assert wait_http(url, "web-service v1") == "web-service v1"
    finally:
        remove_instance(swarm_engine, instance)  # first: an image in use would only be untagged
        for image in images:
            try:
                swarm_engine.images.remove(image, force=True)
            except Exception:  # noqa: BLE001 - already gone
                pass

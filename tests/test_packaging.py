"""The installed Conveyor, not the source tree: a wheel built from this checkout, installed into a
fresh venv in a temp dir, serves its page and static files, renders `pipelines/lib` macros and loads
the first-party plugins. The Docker image of docs/server.md is built from that wheel and serves too,
alone and as the Swarm service of deploy/conveyor-stack.yml.

The venv uses ``--system-site-packages`` for the dependencies (installing them from PyPI would make
this slow); the wheel itself goes into the venv, which comes first on ``sys.path``, and the test
checks that the imported ``runner`` is the venv's.
"""

from __future__ import annotations

import os
import platform
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from runner import __version__
from tests.conftest import PYTHON, ROOT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_until_serving(url: str, proc: subprocess.Popen, log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"conveyor serve exited with {proc.returncode}:\n{log.read_text()}")
        try:
            get(url, timeout=1.0)
            return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"conveyor serve did not answer within {timeout}s:\n{log.read_text()}")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel of this checkout, built the way a user builds it (isolated build, setuptools from
    the index)."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(ROOT)],
                   check=True, cwd=out)
    (found,) = out.glob("conveyor-*.whl")
    return found


@pytest.fixture(scope="module")
def venv(tmp_path_factory, wheel) -> Path:
    root = tmp_path_factory.mktemp("venv") / "env"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(root)], check=True)
    subprocess.run([str(root / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                    str(wheel)], check=True)
    return root


def test_the_wheel_carries_the_page_the_macros_and_the_plugins(wheel):
    import zipfile

    names = set(zipfile.ZipFile(wheel).namelist())
    for folder, pattern in (("web/templates", "*.html"), ("web/static", "*"), ("pipelines/lib", "*.j2"),
                            ("plugins", "*.py")):
        for source in (ROOT / folder).glob(pattern):
            assert f"runner/_bundled/{folder}/{source.name}" in names, source
    assert "runner/store/migrations/0001_builds.sql" in names


def test_installed_conveyor_runs_from_the_venv_not_the_source_tree(venv, tmp_path):
    python = str(venv / "bin" / "python")
    where = subprocess.run([python, "-c", "import runner, runner.bundled as b; print(runner.__file__); "
                            "print(b.WEB_DIR); print(b.PIPELINE_LIB_DIR); print(b.PLUGINS_DIR)"],
                           check=True, capture_output=True, text=True, cwd=tmp_path).stdout.split()
    assert all(path.startswith(str(venv)) for path in where), where
    version = subprocess.run([str(venv / "bin" / "conveyor"), "--version"], check=True, capture_output=True,
                             text=True, cwd=tmp_path).stdout
    assert version.strip() == f"conveyor, version {__version__}"
    plugins = subprocess.run([python, "-c", "from runner.plugins import plugin_manager; "
                              "print(sorted(n for n, _ in plugin_manager().list_name_plugin()))"],
                             check=True, capture_output=True, text=True, cwd=tmp_path).stdout
    assert "'badges'" in plugins


def test_installed_conveyor_renders_a_pipelines_lib_macro(venv, tmp_path):
    pipeline = tmp_path / "repo" / ".conveyor.yml"
    pipeline.parent.mkdir()
    pipeline.write_text('{% import "checks.j2" as checks %}\nname: p\nimage: conveyor-test/busybox:1\n'
                        'stages:\n  - name: check\n    steps:\n      - {{ checks.files_exist(["README"]) }}\n')
    result = subprocess.run([str(venv / "bin" / "conveyor"), "render", str(pipeline)], capture_output=True,
                            text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "files exist: README" in result.stdout


def test_installed_conveyor_serves_its_page_and_static_files(venv, tmp_path):
    port = free_port()
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(venv / "bin" / "conveyor"), "serve", "--port", str(port),
                                 "--data-dir", str(tmp_path / "data")],
                                cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_serving(base + "/api/builds", proc, log)
        status, page = get(base + "/")
        assert status == 200 and b"<html" in page.lower()
        assert b"/static/conveyor.css" in page
        status, css = get(base + "/static/conveyor.css")
        assert status == 200 and css == (ROOT / "web" / "static" / "conveyor.css").read_bytes()
        status, metrics = get(base + "/metrics")
        assert status == 200 and b"conveyor_builds" in metrics
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0, log.read_text()


def wait_for_http(url: str, logs: list[str], timeout: float = 90.0) -> tuple[int, bytes]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return get(url, timeout=1.0)
        except OSError:
            assert time.monotonic() < deadline, subprocess.run(logs, capture_output=True, text=True).stderr[-3000:]
            time.sleep(0.5)


def post_status(url: str, token: str) -> int:
    request = urllib.request.Request(url, method="POST", headers={"Authorization": f"Bearer {token}"})
    try:
        return urllib.request.urlopen(request, timeout=5).status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.fixture(scope="module")
def image(wheel, tmp_path_factory, docker_client):
    """The Dockerfile, built FROM the local Debian Python image with every dependency as a wheel
    (no index is reachable from a build here; the Debian mirror is, for git)."""
    try:
        docker_client.images.get(PYTHON)
    except Exception:  # noqa: BLE001
        pytest.fail(f"image {PYTHON} is missing: run `conveyor images bootstrap` first")
    context = tmp_path_factory.mktemp("context")
    (context / "dist").mkdir()
    (context / "deploy").mkdir()
    shutil.copy(ROOT / "Dockerfile", context)
    shutil.copy(ROOT / "deploy" / "entrypoint.sh", context / "deploy")
    shutil.copy(wheel, context / "dist")
    machine = platform.machine()  # the image runs on this engine, so on this architecture
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--only-binary", ":all:",
                    "--python-version", "3.11", "--platform", f"manylinux2014_{machine}", "--platform",
                    f"manylinux_2_28_{machine}", "-d", str(context / "dist"), str(wheel)], check=True)
    tag = f"conveyor-test/conveyor:pkg{os.getpid()}"
    subprocess.run(["docker", "build", "-q", "-t", tag, "--build-arg", f"BASE={PYTHON}",
                    "--build-arg", "PIP_NO_INDEX=1", str(context)], check=True, stdout=subprocess.DEVNULL)
    yield tag
    subprocess.run(["docker", "image", "rm", "-f", tag], capture_output=True)


@pytest.mark.docker
def test_the_docker_image_serves_the_page(image, tmp_path, instance):
    """`conveyor serve` in the image, with the admin token from a file (CONVEYOR_ADMIN_TOKEN_FILE)."""
    port = free_port()
    name = f"conveyor-image-{instance}"
    try:
        (tmp_path / "token").write_text("s3cret-token")
        subprocess.run(["docker", "run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:8080",
                        "-v", f"{tmp_path / 'token'}:/run/secrets/token:ro",
                        "-e", "CONVEYOR_ADMIN_TOKEN_FILE=/run/secrets/token", image,
                        "serve", "--host", "0.0.0.0", "--port", "8080", "--paused"],
                       check=True, stdout=subprocess.DEVNULL)
        status, css = wait_for_http(f"http://127.0.0.1:{port}/static/conveyor.css", ["docker", "logs", name])
        assert status == 200 and css == (ROOT / "web" / "static" / "conveyor.css").read_bytes()
        assert get(f"http://127.0.0.1:{port}/")[0] == 200
        # The token came from the file: a mutation with it is authorised (404: no such build), without 401.
        assert post_status(f"http://127.0.0.1:{port}/api/builds/999/cancel", "s3cret-token") == 404
        assert post_status(f"http://127.0.0.1:{port}/api/builds/999/cancel", "wrong") == 401
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)


@pytest.mark.swarm
def test_the_stack_file_runs_conveyor_as_a_swarm_service(image, tmp_path, instance):
    """deploy/conveyor-stack.yml as shipped, with only its names made unique for this test (image,
    port, secret, config): the service serves, reads its token from the Swarm secret, keeps its store
    on the named volume and talks to the engine through the mounted socket."""
    import yaml

    stack = yaml.safe_load((ROOT / "deploy" / "conveyor-stack.yml").read_text())
    service = stack["services"]["conveyor"]
    port = free_port()
    service["image"] = image
    service["ports"][0]["published"] = port
    secret, config = f"{instance}_token", f"{instance}_yml"
    stack["secrets"]["conveyor_admin_token"]["name"] = secret
    stack["configs"]["conveyor_yml"]["name"] = config
    (tmp_path / "stack.yml").write_text(yaml.safe_dump(stack))
    (tmp_path / "conveyor.yml").write_text(yaml.safe_dump({"instance": instance, "metrics_allow": ["0.0.0.0/0"]}))
    name = f"cv{instance}"
    subprocess.run(["docker", "secret", "create", secret, "-"], input=b"stack-token", check=True, capture_output=True)
    subprocess.run(["docker", "config", "create", config, str(tmp_path / "conveyor.yml")], check=True,
                   capture_output=True)
    try:
        subprocess.run(["docker", "stack", "deploy", "-c", str(tmp_path / "stack.yml"), name], check=True,
                       capture_output=True)
        base = f"http://127.0.0.1:{port}"
        status, _ = wait_for_http(base + "/static/conveyor.css", ["docker", "service", "logs", f"{name}_conveyor"],
                                  timeout=120)
        assert status == 200 and get(base + "/")[0] == 200
        assert post_status(base + "/api/builds/999/cancel", "stack-token") == 404
        _, metrics = get(base + "/metrics")
        assert b'conveyor_store_size_bytes{file="database"}' in metrics
        mounts = subprocess.run(["docker", "service", "inspect", f"{name}_conveyor", "--format",
                                 "{{json .Spec.TaskTemplate.ContainerSpec.Mounts}}"],
                                capture_output=True, text=True, check=True).stdout
        assert f"{name}_conveyor-data" in mounts and "/var/run/docker.sock" in mounts
        # The socket works from inside: the task's own container is visible to the server's engine client.
        task = subprocess.run(["docker", "ps", "-q", "--filter", f"label=com.docker.stack.namespace={name}"],
                              capture_output=True, text=True, check=True).stdout.split()[0]
        seen = subprocess.run(["docker", "exec", task, "/opt/conveyor/bin/python", "-c",
                               "import docker; print(len(docker.from_env().containers.list()))"],
                              capture_output=True, text=True)
        assert seen.returncode == 0 and int(seen.stdout) >= 1, seen.stderr
        volume = subprocess.run(["docker", "run", "--rm", "-v", f"{name}_conveyor-data:/data", PYTHON,
                                 "ls", "/data"], capture_output=True, text=True, check=True).stdout.split()
        assert "conveyor.db" in volume
    finally:
        subprocess.run(["docker", "stack", "rm", name], capture_output=True)
        deadline = time.monotonic() + 60
        while subprocess.run(["docker", "ps", "-aq", "--filter", f"label=com.docker.stack.namespace={name}"],
                             capture_output=True, text=True).stdout.strip() and time.monotonic() < deadline:
            time.sleep(1)
        for kind, what in (("volume", f"{name}_conveyor-data"), ("secret", secret), ("config", config)):
            subprocess.run(["docker", kind, "rm", what], capture_output=True)

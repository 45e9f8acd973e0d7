"""The installed Conveyor, not the source tree: a wheel built from this checkout, installed into a
fresh venv in a temp dir, serves its page and static files, renders `pipelines/lib` macros and loads
the first-party plugins. The Docker image of docs/server.md is built from that wheel and serves too.

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


@pytest.mark.docker
def test_the_docker_image_serves_the_page(wheel, tmp_path, docker_client, instance):
    """The Dockerfile, built FROM the local Debian Python image with every dependency as a wheel
    (no index is reachable from a build here), runs `conveyor serve` with the token from a file."""
    try:
        docker_client.images.get(PYTHON)
    except Exception:  # noqa: BLE001
        pytest.fail(f"image {PYTHON} is missing: run `conveyor images bootstrap` first")
    context = tmp_path / "context"
    (context / "dist").mkdir(parents=True)
    (context / "deploy").mkdir()
    shutil.copy(ROOT / "Dockerfile", context)
    shutil.copy(ROOT / "deploy" / "entrypoint.sh", context / "deploy")
    shutil.copy(wheel, context / "dist")
    machine = platform.machine()  # the image runs on this engine, so on this architecture
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--only-binary", ":all:",
                    "--python-version", "3.11", "--platform", f"manylinux2014_{machine}", "--platform",
                    f"manylinux_2_28_{machine}", "-d", str(context / "dist"), str(wheel)], check=True)
    tag = f"conveyor-test/conveyor:{instance}"
    subprocess.run(["docker", "build", "-q", "-t", tag, "--build-arg", f"BASE={PYTHON}",
                    "--build-arg", "PIP_NO_INDEX=1", str(context)], check=True, stdout=subprocess.DEVNULL)
    port = free_port()
    name = f"conveyor-image-{instance}"
    try:
        (tmp_path / "token").write_text("s3cret-token")
        subprocess.run(["docker", "run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:8080",
                        "-v", f"{tmp_path / 'token'}:/run/secrets/token:ro",
                        "-e", "CONVEYOR_ADMIN_TOKEN_FILE=/run/secrets/token", tag,
                        "serve", "--host", "0.0.0.0", "--port", "8080", "--paused"],
                       check=True, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while True:
            try:
                status, css = get(f"http://127.0.0.1:{port}/static/conveyor.css", timeout=1.0)
                break
            except OSError:
                assert time.monotonic() < deadline, subprocess.run(["docker", "logs", name], capture_output=True,
                                                                    text=True).stderr
                time.sleep(0.5)
        assert status == 200 and css == (ROOT / "web" / "static" / "conveyor.css").read_bytes()
        assert get(f"http://127.0.0.1:{port}/")[0] == 200
        # The token came from the file: a mutation with it is authorised (404: no such build).
        request = urllib.request.Request(f"http://127.0.0.1:{port}/api/builds/999/cancel", method="POST",
                                         headers={"Authorization": "Bearer s3cret-token"})
        try:
            urllib.request.urlopen(request, timeout=5)
            code = 200
        except urllib.error.HTTPError as exc:
            code = exc.code
        assert code == 404
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
        subprocess.run(["docker", "image", "rm", "-f", tag], capture_output=True)

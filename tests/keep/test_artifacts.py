"""Artifacts for real: kept from a job's container through the engine API, put into the workspace
of the job that needs them, listed and downloaded byte for byte through the server's API (ranges
too) and `conveyor artifacts`, refused for a symlink out and past the size cap, expired by retention."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

from runner.keep import Artifacts
from runner.retention import Retention, collect
from runner.store import artifacts as sql
from tests.conftest import ROOT
from tests.server.conftest import server  # noqa: F401 - the fixture, shared

PIPELINE = """\
image: conveyor-test/busybox:1
stages:
  - name: build
    jobs:
      - name: compile
        steps: ["mkdir -p dist && head -c 300000 /dev/urandom > dist/app.bin && echo '<b>hi</b>' > dist/page.html",
                "sha256sum dist/app.bin | cut -d' ' -f1 > expected.txt", "echo temp > dist/skip.tmp"]
        artifacts: {paths: ["dist/*.bin", "dist/*.html", expected.txt], expire_in: 1h}
  - name: test
    jobs:
      - name: spoil
        needs: [compile]
        steps: ["echo spoiled > dist/app.bin"]
      - name: use
        needs: [spoil, compile]
        steps: ["test \\"$(sha256sum dist/app.bin | cut -d' ' -f1)\\" = \\"$(cat expected.txt)\\" && echo restored-intact"]
"""


async def test_artifacts_reach_the_job_that_needs_them_and_download_byte_identical(builds, tmp_path):
    b = await builds(PIPELINE)
    build = await b.run()
    assert build.status == "success", build.reason
    assert "restored-intact" in await b.log(build.id)

    client = b.client
    listing = await (await client.get(f"/api/builds/{build.id}/artifacts")).json()
    paths = {a["path"]: a for a in listing["artifacts"]}
    assert sorted(paths) == ["dist/app.bin", "dist/page.html", "expected.txt"]
    assert paths["dist/app.bin"]["size"] == 300000 and listing["limit"] == 1024**3

    blob = Artifacts(b.store, 0).blob(build.uid, paths["dist/app.bin"]["sha256"])
    original = blob.read_bytes()
    assert hashlib.sha256(original).hexdigest() == paths["dist/app.bin"]["sha256"]
    assert (await client.get(f"/api/builds/{build.id}/artifacts/expected.txt")).status == 200
    expected = (await (await client.get(f"/api/builds/{build.id}/artifacts/expected.txt")).text()).strip()
    assert expected == paths["dist/app.bin"]["sha256"]  # what the job computed inside its container

    whole = await client.get(paths["dist/app.bin"]["url"])
    assert whole.status == 200 and await whole.read() == original
    assert whole.headers["Content-Type"] == "application/octet-stream"
    assert whole.headers["Content-Disposition"].startswith('attachment; filename="app.bin"')
    part = await client.get(f"/api/builds/{build.id}/artifacts/dist/app.bin", headers={"Range": "bytes=1000-1999"})
    assert part.status == 206 and await part.read() == original[1000:2000]
    assert part.headers["Content-Range"] == "bytes 1000-1999/300000"
    html = await client.get(f"/api/builds/{build.id}/artifacts/dist/page.html")
    assert html.headers["Content-Type"] == "text/html" and "attachment" in html.headers["Content-Disposition"]
    missing = await client.get(f"/api/builds/{build.id}/artifacts/dist/skip.tmp")
    assert missing.status == 404 and "lists what it kept" in await missing.text()

    page = await (await client.get(f"/builds/{build.id}")).text()
    assert "dist/app.bin" in page and "293.0 KiB" in page and f"/api/builds/{build.id}/artifacts/dist/app.bin" in page

    out = tmp_path / "download"
    env = dict(os.environ, CONVEYOR_DATA_DIR=str(b.settings.data_dir), PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-m", "runner", "artifacts", f"id:{build.id}", "--download", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert (out / "dist/app.bin").read_bytes() == original
    listed = subprocess.run([sys.executable, "-m", "runner", "artifacts", f"id:{build.id}"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert "dist/app.bin    compile  293.0 KiB" in listed.stdout

    # Retention's expiry pass, an hour and a bit later: the blob goes, the row says expired.
    report = collect(b.store, lambda repo: Retention(days=None, keep_last=0), build.created + 3700)
    assert report.expired == 3 and not blob.exists()
    gone = await client.get(paths["dist/app.bin"]["url"])
    assert gone.status == 410 and "expired" in await gone.text()
    assert "expired" in await (await client.get(f"/builds/{build.id}")).text()


async def test_a_symlink_out_of_the_workspace_fails_the_job_and_keeps_nothing(builds):
    b = await builds("""\
image: conveyor-test/busybox:1
stages:
  - name: build
    jobs:
      - name: leak
        steps: ["mkdir -p dist && echo ok > dist/ok.txt && ln -s /etc/shadow dist/shadow"]
        artifacts: {paths: [dist/]}
""")
    build = await b.run()
    assert build.status == "failure"
    assert "artifacts refused" in build.reason and "dist/shadow is a symlink to /etc/shadow" in build.reason
    assert await b.store.aread(lambda c: sql.for_build(c, build.id)) == []


async def test_artifacts_past_the_build_cap_fail_with_what_to_do(builds):
    b = await builds("""\
image: conveyor-test/busybox:1
stages:
  - name: build
    jobs:
      - name: small
        steps: ["head -c 60000 /dev/zero > small.bin"]
        artifacts: {paths: [small.bin]}
      - name: big
        needs: [small]
        steps: ["head -c 60000 /dev/zero > big.bin"]
        artifacts: {paths: [big.bin]}
""", artifact_limit="100K")
    build = await b.run()
    assert build.status == "failure"
    assert "job 'big' would keep 58.6 KiB of artifacts on top of 58.6 KiB other jobs kept, over the build's " \
           "limit of 100.0 KiB" in build.reason and "artifact_limit" in build.reason
    kept = await b.store.aread(lambda c: sql.for_build(c, build.id))
    assert [a.path for a in kept] == ["small.bin"]


def _peak_of_temp_archives(prefix: str):
    """Watch the files under the temp dirs named ``prefix*`` (where the keeper's tars are written);
    return the largest size seen and the event that stops the watch."""
    import glob
    import tempfile
    import threading
    import time

    peak, stop = [0], threading.Event()

    def watch() -> None:
        while not stop.is_set():
            for path in glob.glob(os.path.join(tempfile.gettempdir(), f"{prefix}*", "*")):
                try:
                    peak[0] = max(peak[0], os.stat(path).st_size)
                except OSError:
                    pass
            time.sleep(0.01)

    threading.Thread(target=watch, daemon=True).start()
    return peak, stop


async def test_a_sparse_file_past_the_cap_is_refused_before_its_bytes_reach_the_runner(builds):
    # 2 GiB that take no block in the workspace (du says 0, so the workspace limit never sees it): its
    # tar is 2 GiB of zeros, which used to be written to the runner's disk before the cap was checked.
    b = await builds("""\
image: conveyor-test/busybox:1
stages:
  - name: build
    jobs:
      - name: big
        steps: ["echo small > small.txt && truncate -s 2G big.bin"]
        artifacts: {paths: [small.txt, big.bin]}
""", artifact_limit="1M")
    peak, stop = _peak_of_temp_archives("conveyor-keep-")
    try:
        build = await b.run()
    finally:
        stop.set()
    assert build.status == "failure"
    assert "job 'big' would keep more than the build's limit of 1.0 MiB of artifacts (the files selected pass " \
           "1 MiB at big.bin (2 GiB))" in build.reason and "artifact_limit" in build.reason
    assert peak[0] < 64 * 1024, f"the runner wrote {peak[0]} bytes of an archive it refuses"
    assert await b.store.aread(lambda c: sql.for_build(c, build.id)) == []


async def test_a_name_with_control_characters_downloads_under_a_safe_header(server, tmp_path):  # noqa: F811
    import asyncio
    import io
    import tarfile
    import time

    from runner.build import BuildRequest, create_build
    from runner.server.keys import STORE
    from runner.store import builds as q

    client = await server(start_queue=False)
    store = client.app[STORE]
    request = BuildRequest(repo="app", event="push", branch="main", sha="a" * 40)
    build_id = await asyncio.to_thread(create_build, store, request, "t")
    build = await store.aread(lambda c: q.get_build(c, build_id))
    archive = tmp_path / "kept.tar"
    with tarfile.open(archive, "w") as tar:  # what a job's `printf ok > "$(printf 'dist/a\nb\033.txt')"` keeps
        info = tarfile.TarInfo("dist/a\nb\x1b.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"ok"))
    await asyncio.to_thread(Artifacts(store, 0).save, build.id, build.uid, "j", archive, time.time(), None)
    [listed] = (await (await client.get(f"/api/builds/{build.id}/artifacts")).json())["artifacts"]
    got = await client.get(listed["url"])  # the route's path used to stop at the newline: 404
    assert got.status == 200 and await got.read() == b"ok"
    assert got.headers["Content-Disposition"] == "attachment; filename=\"a_b_.txt\"; filename*=UTF-8''a%0Ab%1B.txt"
    page = await (await client.get(f"/builds/{build.id}")).text()
    assert f'href="/api/builds/{build.id}/artifacts/dist/a%0Ab%1B.txt?job=j"' in page
    # In a terminal, the name is one line with its escape code shown, not sent.
    env = dict(os.environ, CONVEYOR_DATA_DIR=str(store.data_dir), PYTHONPATH=str(ROOT))
    listed = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "runner", "artifacts", f"id:{build.id}"],
                                     cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout == "dist/a\\nb\\x1b.txt  j  2 B\n" and "\x1b" not in listed.stdout, listed.stdout


def test_expiring_a_file_does_not_take_the_blob_a_running_job_is_keeping(tmp_path):
    # Blobs are shared by identical files of a build. Retention expired job 'early''s copy and removed
    # the blob while job 'late' had stored the same file but not yet written its rows: 'late''s
    # artifact then named a missing file (a 410 to download, a failed `needs`).
    import io
    import tarfile
    import threading
    import time

    from runner.build import BuildRequest, create_build
    from runner.retention import GcReport, expire_artifacts
    from runner.store import builds as q
    from runner.store.db import Store

    def archive(name: str):
        path = tmp_path / f"{name}.tar"
        with tarfile.open(path, "w") as tar:
            info = tarfile.TarInfo("dist/app.bin")
            info.size = 5
            tar.addfile(info, io.BytesIO(b"same!"))
        return path

    with Store(tmp_path / "data") as store:
        build_id = create_build(store, BuildRequest(repo="app", event="push", branch="main", sha="a" * 40), "t")
        uid = q.get_build(store.read(), build_id).uid
        kept = Artifacts(store, 0)
        now = time.time()
        kept.save(build_id, uid, "early", archive("early"), now - 10, now - 1)  # already past its expiry

        gate = threading.Event()
        store.submit(lambda c: gate.wait(10))  # the writer is busy: what comes next waits in line
        retention = threading.Thread(target=expire_artifacts, args=(store, now, GcReport(dry_run=False), threading.Event()))
        retention.start()  # its expiry is first in line ...
        time.sleep(0.3)
        late = threading.Thread(target=kept.save, args=(build_id, uid, "late", archive("late"), now, None))
        late.start()  # ... then 'late''s rows, once it has stored its blob
        time.sleep(0.5)
        gate.set()
        retention.join(10)
        late.join(10)

        [row] = sql.for_build(store.read(), build_id, "late")
        assert row.expired is None and kept.blob(uid, row.sha256).read_bytes() == b"same!"
        assert kept.pack(build_id, uid, ["late"], tmp_path / "needs.tar") == 1


def _same_file_twice(tmp_path, store):
    """A build whose job 'early' kept ``dist/app.bin`` already past its expiry, and an archive of
    the same bytes for a job 'late' to keep."""
    import io
    import tarfile
    import time

    from runner.build import BuildRequest, create_build
    from runner.store import builds as q

    path = tmp_path / "same.tar"
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo("dist/app.bin")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"same!"))
    build_id = create_build(store, BuildRequest(repo="app", event="push", branch="main", sha="a" * 40), "t")
    uid = q.get_build(store.read(), build_id).uid
    now = time.time()
    Artifacts(store, 0).save(build_id, uid, "early", path, now - 10, now - 1)
    return build_id, uid, path, now


def test_conveyor_gc_in_another_process_does_not_take_the_blob_a_running_job_is_keeping(tmp_path):
    # As above, with the expiry done by `conveyor gc` beside the server: the saves of the server's
    # process were known only to that process, so gc removed the blob 'late' was about to name.
    import threading

    from runner.store.db import Store

    with Store(tmp_path / "data") as store:
        build_id, uid, archive, now = _same_file_twice(tmp_path, store)
        kept = Artifacts(store, 0)
        blob = kept.blob(uid, sql.for_build(store.read(), build_id, "early")[0].sha256)
        gate, stored = threading.Event(), threading.Event()

        class Held:  # the real store, with 'late''s rows held back until gc has run
            def __getattr__(self, name):
                return getattr(store, name)

            def write(self, fn, durable=False):
                stored.set()
                assert gate.wait(30)
                return store.write(fn, durable)

        kept.store = Held()
        late = threading.Thread(target=kept.save, args=(build_id, uid, "late", archive, now, None))
        late.start()
        assert stored.wait(30)  # its blob is stored, its rows not yet written
        gc = subprocess.run([sys.executable, "-m", "runner", "gc", "--data-dir", str(store.data_dir)],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
        gate.set()
        late.join(30)
        assert gc.returncode == 0, gc.stderr
        assert sql.for_build(store.read(), build_id, "early")[0].expired is not None  # gc did expire it
        [row] = sql.for_build(store.read(), build_id, "late")
        assert row.expired is None and blob.read_bytes() == b"same!"
        # Once 'late' has let go of it, the blob is its artifact's: still not dropped.
        assert not Artifacts(store, 0).drop_blob(build_id, uid, row.sha256) and blob.exists()


def test_the_list_of_a_save_killed_mid_way_holds_nothing(tmp_path):
    from runner.store.db import Store

    with Store(tmp_path / "data") as store:
        build_id, uid, _, _ = _same_file_twice(tmp_path, store)
        kept = Artifacts(store, 0)
        [early] = sql.for_build(store.read(), build_id, "early")
        store.write(lambda c: c.execute("UPDATE artifacts SET expired = 1 WHERE id = ?", (early.id,)))
        dead = kept.root / uid / "tmp-killed"  # what a save killed with -9 leaves: its list, unlocked
        dead.mkdir()
        (dead / "held").write_text(early.sha256 + "\n")
        assert kept.drop_blob(build_id, uid, early.sha256)
        assert not kept.blob(uid, early.sha256).exists()


async def test_a_job_keeping_more_files_than_a_job_may_fails_with_what_to_do(builds):
    # Each kept file is a blob and a row: a million empty files would take minutes and gigabytes to
    # keep. The export stops at the first file past the count, before any blob is written.
    b = await builds("""\
image: conveyor-test/busybox:1
stages:
  - name: build
    jobs:
      - name: many
        steps: ["mkdir -p out && cd out && seq 1 100001 | xargs touch"]
        artifacts: {paths: [out/]}
""")
    build = await b.run()
    assert build.status == "failure"
    assert "job 'many' keeps too many files as artifacts: more than 100,000 files are selected (the next " \
           "one: out/" in build.reason
    assert "pack them into one archive" in build.reason
    assert await b.store.aread(lambda c: sql.for_build(c, build.id)) == []

"""Benchmarks of `conveyor run` (issue 3, "Speed"). Prints figures and ratios measured in this run.

    python bench/bench_run.py            # everything (needs the engine and conveyor-test/busybox:1)
    python bench/bench_run.py --rounds 1 # quicker
    python bench/bench_run.py --only 0 --only 1  # some sections (0: lint start-up)

1. 20 `true` steps in one job: `conveyor run` against a shell script doing `docker run --rm` per
   step, and against the floor (one container plus 20 `docker exec`). Goals: <= 0.35x the script,
   <= 1.5x the floor.
2. 8 parallel jobs of `sleep 1`: wall <= 1.6 s (concurrency set to 8: the default is the CPU count).
3. One step printing 200,000 lines: all stored; lines per second.
4. Peak RSS of `conveyor run` (the largest process of the command): <= 80 MB.
5. The `local` backend next to Buildbot 4.3.0's figures quoted in the issue.

A figure and its floor are measured in turns (floor, command, in-process, floor, ...), best of N each,
so a machine that slows down meanwhile weighs on both alike. Not a test: it never fails on speed, it
reports. "command" is the whole `conveyor run` process
(Python start-up included); "in-process" is `run_build` alone, what the server pays per build.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runner.backends import get_backend  # noqa: E402
from runner.build import BuildRequest, create_build, run_build  # noqa: E402
from runner.settings import Settings  # noqa: E402
from runner.store.db import Store  # noqa: E402

IMAGE = "conveyor-test/busybox:1"
# Children may write bytecode, as an installed Conveyor has it: otherwise every command would
# compile every module it imports and the figures would measure the compiler.
CHILD_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
# What a user types: the `conveyor` script pip installed beside this interpreter (it skips runpy's
# import machinery that `python -m runner` adds); `python -m runner` where there is none.
_SCRIPT = Path(sys.executable).with_name("conveyor")
CONVEYOR = [str(_SCRIPT)] if _SCRIPT.is_file() else [sys.executable, "-m", "runner"]
BUILDBOT = {"20 steps": 4.8, "8 parallel sleep 1": 4.5, "200k lines": 3.1, "idle MB": 93 + 54}
LINES = 200_000

PIPELINES = {
    "steps20": "image: {image}\nstages:\n  - name: s\n    steps:\n" + "".join(f"      - name: t{i}\n        run: \"true\"\n" for i in range(20)),
    "parallel8": "image: {image}\nstages:\n  - name: p\n    jobs:\n" + "".join(
        f"      - name: j{i}\n        steps: [\"sleep 1\"]\n" for i in range(8)),
    "lines": "image: {image}\nstages:\n  - name: l\n    steps: [\"seq 1 %d\"]\n" % LINES,
}


def make_repo(base: Path, name: str, text: str) -> Path:
    repo = base / name
    repo.mkdir()
    (repo / ".conveyor.yml").write_text(text.replace("{image}", IMAGE))
    git = ["git", "-C", str(repo), "-c", "user.name=bench", "-c", "user.email=bench@example.invalid"]
    subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "bench"], check=True)
    return repo


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def best(fn, rounds: int) -> float:
    return min(timed(fn) for _ in range(rounds))


def in_turns(rounds: int, **measures) -> dict[str, float]:
    """The best of ``rounds`` of each measure (a function returning seconds), taken in turns (a, b,
    c, a, b, c, ...), so that a machine slowing down or speeding up meanwhile weighs on each alike."""
    times: dict[str, list[float]] = {name: [] for name in measures}
    for _ in range(rounds):
        for name, measure in measures.items():
            times[name].append(measure())
    return {name: min(found) for name, found in times.items()}


def command(repo: Path, data: Path, instance: str, *extra: str, env_extra: dict | None = None) -> None:
    env = dict(CHILD_ENV, CONVEYOR_INSTANCE=instance, **(env_extra or {}))
    proc = subprocess.run([*CONVEYOR, "run", str(repo), "--data-dir", str(data), *extra],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"conveyor run {repo.name} failed:\n{proc.stderr.decode()}")


def in_process(repo: Path, data: Path, instance: str, backend_name: str, concurrency: int | None = None) -> float:
    settings = Settings(data_dir=data, instance=instance, **({"concurrency": concurrency} if concurrency else {}))
    with Store(data) as store:
        build_id = create_build(store, BuildRequest(repo=repo.name, event="push", branch="main"), instance)
        backend = get_backend(backend_name, settings)

        async def go() -> str:
            return await run_build(store, settings, build_id, repo, backend=backend)

        start = time.perf_counter()
        status = asyncio.run(go())
        took = time.perf_counter() - start
        close = getattr(backend, "close", None)
        if close:
            close()
    if status != "success":
        raise SystemExit(f"{repo.name} on {backend_name}: {status}")
    return took


def stored_lines(data: Path) -> int:
    with Store(data) as store:
        row = store.read().execute(
            "SELECT SUM(lines) FROM log_chunks WHERE build_id = (SELECT MAX(id) FROM builds)").fetchone()
    return int(row[0] or 0)


def docker_script(steps: int) -> None:
    script = "".join(f"docker run --rm --label io.conveyor.bench=1 {IMAGE} true\n" for _ in range(steps))
    subprocess.run(["sh", "-e", "-c", script], check=True, stdout=subprocess.DEVNULL)


def docker_floor(steps: int) -> None:
    name = f"conveyor-bench-{uuid.uuid4().hex[:8]}"
    subprocess.run(["docker", "run", "-d", "--rm", "--name", name, "--label", "io.conveyor.bench=1", IMAGE,
                    "sleep", "600"], check=True, stdout=subprocess.DEVNULL)
    try:
        for _ in range(steps):
            subprocess.run(["docker", "exec", name, "sh", "-e", "-c", "true"], check=True)
    finally:
        subprocess.run(["docker", "rm", "-f", name], check=True, stdout=subprocess.DEVNULL)


def docker_parallel_floor(jobs: int) -> None:
    """The engine's own floor for N parallel jobs: N concurrent `docker run --rm sleep 1` on one bridge
    network (what a build's jobs get), started and awaited by the shell."""
    net = f"conveyor-bench-{uuid.uuid4().hex[:8]}"
    subprocess.run(["docker", "network", "create", "--label", "io.conveyor.bench=1", net], check=True,
                   stdout=subprocess.DEVNULL)
    try:
        script = "".join(f"docker run --rm --network {net} --label io.conveyor.bench=1 {IMAGE} sleep 1 &\n"
                         for _ in range(jobs)) + "wait\n"
        subprocess.run(["sh", "-c", script], check=True, stdout=subprocess.DEVNULL)
    finally:
        subprocess.run(["docker", "network", "rm", net], check=True, stdout=subprocess.DEVNULL)


def peak_rss_mb(repo: Path, data: Path, instance: str) -> float:
    """The largest resident set of any process of one `conveyor run` (ru_maxrss of the children)."""
    code = (
        "import resource, subprocess, sys\n"
        "subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, check=True)\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    env = dict(CHILD_ENV, CONVEYOR_INSTANCE=instance)
    out = subprocess.run([sys.executable, "-c", code, sys.executable, "-m", "runner", "run", str(repo),
                          "--data-dir", str(data)], capture_output=True, text=True, env=env, cwd=ROOT, check=True)
    return int(out.stdout.strip()) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="best of N for the timed runs")
    parser.add_argument("--only", type=int, action="append", choices=range(0, 6),
                        help="run only these sections (repeatable; 0 is the lint start-up figure)")
    args = parser.parse_args()
    only = set(args.only or range(0, 6))
    rounds = max(1, args.rounds)
    instance = "bench" + uuid.uuid4().hex[:6]
    tmp = Path(tempfile.mkdtemp(prefix="conveyor-bench-"))
    try:
        repos = {name: make_repo(tmp, name, text) for name, text in PIPELINES.items()}
        data = tmp / "data"
        print(f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}; best of {rounds}\n")

        if 0 in only:
            lint_figures(repos["steps20"], rounds)
        if 1 in only:
            section_steps(repos, data, instance, rounds)
        if 2 in only:
            section_parallel(repos, data, instance, rounds)
        if 3 in only:
            section_lines(repos, data, instance)
        rss_small = peak_rss_mb(repos["steps20"], data, instance) if only & {4, 5} else None
        if 4 in only:
            section_rss(repos, data, instance, rss_small)
        if 5 in only:
            section_local(repos, data, instance, rounds, rss_small)
        ru = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"\n(this benchmark process peaked at {ru:.0f} MB)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        leftovers = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=io.conveyor.instance={instance}"],
                                   capture_output=True, text=True).stdout.split()
        if leftovers:
            subprocess.run(["docker", "rm", "-f", *leftovers], stdout=subprocess.DEVNULL)


def section_steps(repos, data, instance, rounds) -> None:
    print("1. 20 `true` steps, one job, docker backend")
    script = best(lambda: docker_script(20), rounds)
    got = in_turns(rounds, floor=lambda: timed(lambda: docker_floor(20)),
                   cmd=lambda: timed(lambda: command(repos["steps20"], data, instance)),
                   inproc=lambda: in_process(repos["steps20"], data, instance, "docker"))
    floor, cmd, inproc = got["floor"], got["cmd"], got["inproc"]
    print(f"   docker run --rm per step (script): {script:6.2f} s")
    print(f"   floor (1 container + 20 exec):     {floor:6.2f} s")
    print(f"   conveyor run (command):            {cmd:6.2f} s   {cmd / script:.2f}x script (goal <= 0.35)"
          f"   {cmd / floor:.2f}x floor (goal <= 1.1: {'met' if cmd <= 1.1 * floor else 'MISSED'})")
    print(f"   run_build (in-process):            {inproc:6.2f} s   {inproc / script:.2f}x script"
          f"   {inproc / floor:.2f}x floor\n")


def section_parallel(repos, data, instance, rounds) -> None:
    print("2. 8 parallel jobs of `sleep 1`, docker backend, concurrency 8")
    got = in_turns(
        rounds, floor=lambda: timed(lambda: docker_parallel_floor(8)),
        cmd=lambda: timed(lambda: command(repos["parallel8"], data, instance,
                                          env_extra={"CONVEYOR_CONCURRENCY": "8"})),
        inproc=lambda: in_process(repos["parallel8"], data, instance, "docker", concurrency=8))
    par_floor, par_cmd, par_in = got["floor"], got["cmd"], got["inproc"]
    print(f"   engine floor (8 concurrent docker run --rm sleep 1): {par_floor:5.2f} s")
    print(f"   conveyor run (command):  {par_cmd:5.2f} s (goal <= 1.6)   {par_cmd / par_floor:.2f}x floor")
    print(f"   run_build (in-process):  {par_in:5.2f} s                  {par_in / par_floor:.2f}x floor\n")


def section_lines(repos, data, instance) -> None:
    print(f"3. one step printing {LINES:,} lines, docker backend")
    lines_cmd = best(lambda: command(repos["lines"], data, instance), 1)
    n_cmd = stored_lines(data)
    lines_in = in_process(repos["lines"], data, instance, "docker")
    n_in = stored_lines(data)
    print(f"   conveyor run (command):  {lines_cmd:5.2f} s, {n_cmd:,} lines stored, {n_cmd / lines_cmd:,.0f} lines/s")
    print(f"   run_build (in-process):  {lines_in:5.2f} s, {n_in:,} lines stored, {n_in / lines_in:,.0f} lines/s\n")


def section_rss(repos, data, instance, rss_small) -> None:
    print("4. peak RSS of `conveyor run` (largest process)")
    rss_lines = peak_rss_mb(repos["lines"], data, instance)
    print(f"   20 steps:     {rss_small:5.1f} MB (goal <= 80)")
    print(f"   200k lines:   {rss_lines:5.1f} MB (goal <= 80)\n")


def section_local(repos, data, instance, rounds, rss_small) -> None:
    print("5. local backend (host processes) next to Buildbot 4.3.0 (figures quoted in issue 3)")
    loc20 = min(in_process(repos["steps20"], data, instance, "local") for _ in range(rounds))
    loc20_cmd = best(lambda: command(repos["steps20"], data, instance, "--backend", "local"), rounds)
    loc8 = min(in_process(repos["parallel8"], data, instance, "local", concurrency=8) for _ in range(rounds))
    loc_lines = in_process(repos["lines"], data, instance, "local")
    n_loc = stored_lines(data)
    loc_lines_cmd = best(lambda: command(repos["lines"], data, instance, "--backend", "local"), 1)
    print(f"   {'':22} {'conveyor':>10} {'command':>9} {'buildbot':>9}")
    print(f"   {'20 true steps':22} {loc20:9.2f}s {loc20_cmd:8.2f}s {BUILDBOT['20 steps']:8.1f}s   (goal < 0.5 s)")
    print(f"   {'8 parallel sleep 1':22} {loc8:9.2f}s {'':>9} {BUILDBOT['8 parallel sleep 1']:8.1f}s")
    print(f"   {'200k-line step':22} {loc_lines:9.2f}s {loc_lines_cmd:8.2f}s {BUILDBOT['200k lines']:8.1f}s"
          f"   (goal < 1 s; {n_loc:,} lines stored, {n_loc / loc_lines:,.0f} lines/s)")
    print(f"   {'idle memory':22} {rss_small:8.1f}MB {'':>9} {BUILDBOT['idle MB']:7.0f}MB   "
          "(conveyor: peak of a whole run; buildbot: master + worker idle)")


def lint_figures(repo: Path, rounds: int) -> None:
    """`conveyor lint` of a small file, whole process, next to two floors: a bare `python -c pass`, and
    the imports any click + PyYAML command pays (click, yaml, pathlib, subprocess). What lint costs
    above the second is Conveyor's own: its modules, git, the parse and the checks."""
    print("0. `conveyor lint` of a small file (whole process)")

    def timed_run(*argv: str) -> float:
        return timed(lambda: subprocess.run(argv, check=True, cwd=ROOT, stderr=subprocess.DEVNULL, env=CHILD_ENV))

    got = in_turns(max(rounds, 5), bare=lambda: timed_run(sys.executable, "-c", "pass"),
                   deps=lambda: timed_run(sys.executable, "-c", "import click, yaml, pathlib, subprocess"),
                   lint=lambda: timed_run(*CONVEYOR, "lint", str(repo)))
    bare, deps, lint = got["bare"], got["deps"], got["lint"]
    print(f"   floor (python -c pass):                {bare * 1000:6.1f} ms")
    print(f"   floor (import click, yaml, pathlib...): {deps * 1000:6.1f} ms")
    name = "conveyor lint:" if len(CONVEYOR) == 1 else "python -m runner lint:"
    print(f"   {name:39}{lint * 1000:6.1f} ms   {lint / bare:.2f}x python, "
          f"{lint / deps:.2f}x its imports; Conveyor's own {max(lint - deps, 0) * 1000:.0f} ms"
          f"   (goal < 100 ms: {'met' if lint < 0.1 else 'MISSED'})\n")


if __name__ == "__main__":
    main()

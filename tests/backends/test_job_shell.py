"""The job shell's protocol (runner/backends/job_shell.py) against a real `sh` on this machine: what
a step is given (env, stdin, a fresh subshell) and how its end is found in the output."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from runner.backends.docker_blocking import StepSend
from runner.backends.job_shell import FIRST_LINE, SHELL, StepEnd, new_marker, step_command


def run_steps(*steps: tuple[str, dict[str, str]], shell=SHELL, slow_reader: bool = False
              ) -> list[tuple[bytes, int | None]]:
    """Feed the steps to one shell, as the Docker backend does, and split its output per step.
    ``slow_reader``: read nothing for a while, so that the shell's output pipe fills up."""
    markers = [new_marker() for _ in steps]
    text = FIRST_LINE + b"".join(step_command(run, env, m) for (run, env), m in zip(steps, markers))
    if slow_reader:
        proc = subprocess.Popen(shell, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        proc.stdin.write(text)
        proc.stdin.close()
        time.sleep(1.0)
        out = proc.stdout.read()
        proc.wait(timeout=20)
    else:
        out = subprocess.run(shell, input=text, capture_output=True, timeout=20).stdout
    found, before = [], b""
    for marker in markers:
        end = StepEnd(marker, before=before)
        got, code = end.feed(out)
        found.append((got, code))
        out, before = end.rest, b""
    return found


def test_each_step_gets_its_env_exactly_and_a_fresh_subshell():
    value = "it's \"quoted\"\n$HOME `date` \\ back\\slash ünïcode"
    (first, code1), (second, code2) = run_steps(
        ("printf '%s' \"$V\"; export LEAK=1; cd /; trap 'echo trapped' EXIT", {"V": value}),
        ('echo "${LEAK:-none} ${V:-unset}"', {}),
    )
    assert first == value.encode() + b"trapped\n" and code1 == 0
    assert second == b"none unset\n" and code2 == 0


def test_a_name_the_shell_cannot_export_still_reaches_the_step():
    # The step's own shell has it (what it passes on to its children is that shell's business).
    [(out, code)] = run_steps(("tr '\\0' '\\n' < /proc/$$/environ | grep '^with-dash='",
                               {"with-dash": "yes", "PLAIN": "1"}))
    assert (out, code) == (b"with-dash=yes\n", 0)


def test_any_env_name_reaches_the_step_also_where_the_shell_is_bash():
    # On Fedora or UBI images sh is bash, which holds UID (and EUID, PPID...) read-only: exporting it
    # would fail every step of the job. A name that looks like an option is still a name.
    env = {"UID": "4242", "-Secho": "v", "PLAIN": "1"}
    for shell in (SHELL, ["bash", "-s"]):
        [(out, code)] = run_steps(("tr '\\0' '\\n' < /proc/$$/environ | grep -E '^(UID|-Secho|PLAIN)=' | sort", env),
                                  shell=shell)
        assert (out, code) == (b"-Secho=v\nPLAIN=1\nUID=4242\n", 0), shell


def test_a_name_no_environment_can_hold_is_refused_with_the_reason():
    for name in ("", "A=B"):
        with pytest.raises(ValueError, match="cannot be passed"):
            step_command("true", {name: "x"}, new_marker())


def test_a_step_that_leaves_its_output_non_blocking_costs_later_steps_nothing():
    # Node leaves stdout O_NONBLOCK. Were the pipe's open file shared with later steps, the next one
    # to fill it would lose output to EAGAIN, and the marker after it, so the step would never end.
    (first, code1), (second, code2), (third, code3) = run_steps(
        (f"{sys.executable} -c 'import os; os.set_blocking(1, False)'", {}),
        ("head -c 300000 /dev/zero | tr '\\0' x", {}),
        ("echo after", {}),
        slow_reader=True)
    assert (first, code1) == (b"", 0)
    assert (len(second), second.strip(b"x"), code2) == (300000, b"", 0)
    assert (third, code3) == (b"after\n", 0)


def test_stdin_is_empty_so_a_step_cannot_eat_the_next():
    (out, code), (nxt, _) = run_steps(("cat; echo read-all", {}), ("echo next", {}))
    assert (out, code, nxt) == (b"read-all\n", 0, b"next\n")


def test_stderr_and_stdout_are_one_stream_and_the_status_is_kept():
    [(out, code)] = run_steps(("echo out; echo err >&2; exit 7", {}))
    assert (out, code) == (b"out\nerr\n", 7)
    [(out, code)] = run_steps(("kill -9 $$", {}))
    assert (out, code) == (b"", 137)  # 128+N after signal N, and no "Killed" from the shell itself


def test_output_that_looks_like_an_end_does_not_end_the_step():
    [(out, code)] = run_steps(("echo conveyor-step-end-0123 0; exit 4", {}))
    assert (out, code) == (b"conveyor-step-end-0123 0\n", 4)


def test_a_nul_byte_is_refused_with_the_reason():
    with pytest.raises(ValueError, match="NUL"):
        step_command("echo a\0b", {}, new_marker())
    with pytest.raises(ValueError, match="NUL"):
        step_command("true", {"A": "x\0y"}, new_marker())


def test_the_end_carries_the_containers_oom_kill_count_when_it_can_be_read():
    marker = b"conveyor-step-end-abc"
    end = StepEnd(marker)
    assert end.feed(b"out" + marker + b" 2 3\nrest") == (b"out", 2) and (end.oom_kills, end.rest) == (3, b"rest")
    end = StepEnd(marker)
    assert end.feed(marker + b" 0 \n") == (b"", 0) and end.oom_kills is None
    # The shell reads the count where the backend's containers have it (their own memory cgroup,
    # v2 or v1, mounted at /sys/fs/cgroup): here the same files, from the host's side.
    marker = new_marker()
    out = subprocess.run(SHELL, input=FIRST_LINE + step_command("true", {}, marker), capture_output=True,
                         timeout=20).stdout
    end = StepEnd(marker)
    assert end.feed(out) == (b"", 0) and end.oom_kills == _oom_kills_here()


def _oom_kills_here() -> int | None:
    for path in ("/sys/fs/cgroup/memory.events", "/sys/fs/cgroup/memory/memory.oom_control"):
        try:
            lines = open(path).read().splitlines()
        except OSError:
            continue
        return next((int(line.split()[1]) for line in lines if line.startswith("oom_kill ")), None)
    return None


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64])
def test_the_end_is_found_across_any_split_of_the_stream(size):
    marker = b"conveyor-step-end-abc"
    stream = b"out conveyor-step-end-ab\nmore" + marker + b" 42\nlate output"
    end = StepEnd(marker)
    out, code = b"", None
    for at in range(0, len(stream), size):
        got, code = end.feed(stream[at:at + size])
        out += got
        if code is not None:
            break
    assert (out, code) == (b"out conveyor-step-end-ab\nmore", 42)
    assert end.rest + stream[at + size:] == b"late output"


def test_a_tail_that_only_begins_the_marker_is_held_then_given_back():
    end = StepEnd(b"conveyor-step-end-abc")
    assert end.feed(b"partial conveyor-st") == (b"partial ", None)
    assert end.flush() == b"conveyor-st"  # the shell's output ended: it was output after all
    assert end.feed(b"no marker here") == (b"no marker here", None)


def test_a_send_dropped_before_it_began_never_goes_out_and_one_begun_is_stopped():
    # A step stopped while its command still waits for an engine thread: nothing to stop, and the
    # command must not reach the shell later (a step nobody reads would run). Begun: stop it.
    sent = []

    class Stream:
        def send(self, data):
            sent.append(data)

    queued = StepSend(Stream(), b"first")
    assert queued.drop() is False
    queued()  # the thread comes round to it after the stop
    begun = StepSend(Stream(), b"second")
    begun()
    assert begun.drop() is True and sent == [b"second"]

"""The job shell's protocol (runner/backends/job_shell.py) against a real `sh` on this machine: what
a step is given (env, stdin, a fresh subshell) and how its end is found in the output."""

from __future__ import annotations

import subprocess

import pytest

from runner.backends.job_shell import FIRST_LINE, SHELL, StepEnd, new_marker, step_command


def run_steps(*steps: tuple[str, dict[str, str]]) -> list[tuple[bytes, int | None]]:
    """Feed the steps to one shell, as the Docker backend does, and split its output per step."""
    markers = [new_marker() for _ in steps]
    text = FIRST_LINE + b"".join(step_command(run, env, m) for (run, env), m in zip(steps, markers))
    out = subprocess.run(SHELL, input=text, capture_output=True, timeout=20).stdout
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

"""JUnit XML test reports to test cases: what pytest, Maven Surefire, go-junit-report, Jest and
friends write, each with its own dialect of the same loose format.

The file comes out of a build's workspace, so it is hostile input. ``defusedxml`` parses it with
every DTD refused (no entity can expand, so no billion laughs, and no external entity can read a
host file), the size is capped before parsing, and the parse is streamed with the nesting depth and the
number of elements capped as it goes. Every refusal is a ``ReportError`` naming the file; the caller stores it as the
report's problem. Nothing here reads the disk or the network.

Dialects handled (see ``tests/reports/test_junit.py`` for a file of each):

- root ``<testsuites>`` or a bare ``<testsuite>`` (pytest < 5.1, Surefire), suites nested in suites
  (Ant, PHPUnit), namespaced tags;
- ``<failure>``/``<error>``/``<skipped>`` with the text in ``message=``, in the body, or both;
  pytest's xfail is a ``<skipped>``; a case with both a failure and an error (a test that failed and
  whose teardown broke) is an error with both bodies; go-junit-report's ``message="Failed"`` and
  Jest's missing message give way to the body's first line;
- Surefire's ``<flakyFailure>``/``<flakyError>`` (failed, then passed on a rerun: passed) and
  ``<rerunFailure>`` (failed again on the rerun, next to the first ``<failure>``);
- ``time`` as ``0.5``, ``1,234.5`` (Surefire's thousands separator) or junk (no time);
- output in ``<system-out>``/``<system-err>`` per case; suite-level output (go-junit-report v2)
  goes to the suite's failed cases, where a reader needs it.
"""

from __future__ import annotations

import io
import math
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass

import defusedxml
import defusedxml.ElementTree as DET

__all__ = ["TestCase", "ReportError", "parse_junit", "MAX_REPORT_BYTES", "STATUSES"]

# A JUnit file of 100,000 verbose cases stays well under this; a bigger one is most likely not a
# report (or a report written to fill the disk) and is refused before it is parsed.
MAX_REPORT_BYTES = 32 * 1024 * 1024
MAX_DEPTH = 64  # testsuites > testsuite > testcase > failure is 4; Ant and PHPUnit nest suites
MAX_ELEMENTS = 1_000_000  # 250,000 failed cases with output; refused in about a second
MAX_MESSAGE = 4 * 1024  # the one-line reason, shown in lists
MAX_DETAIL = 32 * 1024  # the failure's body (a stack trace): the head is what names the cause
MAX_OUTPUT = 16 * 1024  # captured stdout/stderr per case: the tail is where a test died
MAX_NAME = 1000  # a suite's, class's or case's name: every case of a suite stores its suite's name
# What a file's cases may store, in characters per byte of the file. A suite's name and output are
# stored with each of its cases, so a small file could otherwise fill the disk (a 100,000-character
# suite name over 20,000 cases of 11 bytes each is 2 GB); real reports store at most about their size.
STORED_PER_BYTE = 4
STATUSES = ("passed", "failed", "error", "skipped")


class ReportError(Exception):
    """The file is not a report this parser will read; the message names the file and says why."""


@dataclass(frozen=True)
class TestCase:
    __test__ = False  # not a pytest test class, whatever its name

    suite: str
    classname: str
    name: str
    status: str  # one of STATUSES
    time: float | None = None
    message: str = ""
    detail: str = ""
    stdout: str = ""
    stderr: str = ""


def _same(text: str) -> str:
    return text


def _all(case: TestCase) -> bool:
    return True


def parse_junit(name: str, data: bytes, mask: Callable[[str], str] = _same,
                keep: Callable[[TestCase], bool] = _all) -> list[TestCase]:
    """The cases of the JUnit XML ``data`` (the file ``name``); ``ReportError`` when it is refused.

    ``mask`` is applied to every text as XML decodes it, before any cut: a secret written with
    character references (``&#83;``), split by a comment or across CDATA sections, or straddling a
    cut is whole at that point, so it is masked like the log masks it. ``keep`` sees every case as
    it is read and says whether to hold it; the others are let go at once (the caller counts them)."""
    if len(data) > MAX_REPORT_BYTES:
        raise ReportError(f"{name}: {len(data):,} bytes is over the {MAX_REPORT_BYTES // 2**20} MiB cap "
                          "for a test report; point reports.junit at the report files only")
    if not data.strip():
        raise ReportError(f"{name}: the file is empty; did the test command write its report?")
    try:
        events = DET.iterparse(io.BytesIO(data), events=("start", "end"), forbid_dtd=True, forbid_entities=True,
                               forbid_external=True)
        return _walk(name, STORED_PER_BYTE * len(data), events, mask, keep)
    except defusedxml.DTDForbidden:
        raise ReportError(f"{name}: refused: the file declares a DTD (entities could expand without bound "
                          "or read host files); test reporters never write one") from None
    except (defusedxml.EntitiesForbidden, defusedxml.ExternalReferenceForbidden) as exc:
        raise ReportError(f"{name}: refused: {exc}") from None
    except ET.ParseError as exc:
        line, col = exc.position
        raise ReportError(f"{name}:{line}:{col + 1}: not well-formed XML ({_expat_reason(exc)}); "
                          "is the report complete (a killed test run leaves half a file)?") from None


def _walk(name: str, room: int, events, mask: Callable[[str], str],
          keep: Callable[[TestCase], bool]) -> list[TestCase]:
    """Streamed, so limits bite while parsing: nesting and element count are checked per element,
    and each case is emptied once read (a big report never holds two copies of itself). ``room`` is
    what the cases may store (characters); suite output is shared only while some is left."""
    cases: list[TestCase] = []
    suites: list[tuple[str, int]] = []  # (name, index of its first case) of the open suites
    depth = elements = 0
    for event, element in events:
        tag = _local(element.tag)
        if event == "start":
            depth += 1
            elements += 1
            if depth > MAX_DEPTH:
                raise ReportError(f"{name}: elements nested more than {MAX_DEPTH} deep; "
                                  "not a report any test runner writes")
            if elements > MAX_ELEMENTS:
                raise ReportError(f"{name}: more than {MAX_ELEMENTS:,} XML elements; "
                                  "split the report or point reports.junit at fewer files")
            if depth == 1 and tag not in ("testsuites", "testsuite"):
                raise ReportError(f"{name}: not a JUnit report: the root element is <{tag}>, "
                                  "not <testsuites> or <testsuite>")
            if tag in ("testsuite", "testsuites"):
                suites.append((_head(mask(element.get("name") or ""), MAX_NAME) or (suites[-1][0] if suites else ""),
                               len(cases)))
            continue
        depth -= 1
        if tag == "testcase" and suites:
            case = _case(element, suites[-1][0], mask)
            element.clear()
            if not keep(case):
                continue
            cases.append(case)
            room -= _stored(case)
            if room < 0:
                raise ReportError(f"{name}: its cases come to more than {STORED_PER_BYTE} times the file's size "
                                  "(a long suite name repeated on every case?); not a report any test runner writes")
        elif tag in ("testsuite", "testsuites") and suites:
            room -= _share_suite_output(element, cases, suites.pop()[1], room, mask)
            element.clear()
    return cases


def _case(element: ET.Element, suite: str, mask: Callable[[str], str]) -> TestCase:
    status, message, detail = "passed", "", ""
    stdout, stderr = [], []
    for child in element:
        tag = _local(child.tag)
        if tag in ("failure", "error"):
            if status in ("failed", "error"):  # failed, then its teardown broke: keep both stories
                detail += "\n\n" + (child.text or child.get("message") or "")
            else:
                message, detail = child.get("message") or "", child.text or ""
            status = "error" if tag == "error" or status == "error" else "failed"
        elif tag == "skipped" and status == "passed":
            status = "skipped"
            message, detail = child.get("message") or "", child.text or ""
        elif tag == "system-out":
            stdout.append(child.text or "")
        elif tag == "system-err":
            stderr.append(child.text or "")
        elif tag in ("rerunFailure", "rerunError", "flakyFailure", "flakyError"):
            # Surefire's reruns: their own output belongs to this case too.
            for part in child:
                if _local(part.tag) in ("system-out", "system-err"):
                    (stdout if _local(part.tag) == "system-out" else stderr).append(part.text or "")
    if status in ("failed", "error") and message in ("", "Failed"):
        # Jest leaves message= out and go-junit-report always writes "Failed": the body's first line
        # (go's "file_test.go:42: got 200, want 401") is the message a reader wants.
        message = next((line.strip() for line in detail.splitlines() if line.strip()), message)
    return TestCase(
        suite=suite, classname=_head(mask(element.get("classname") or element.get("class") or ""), MAX_NAME),
        name=_head(mask(element.get("name") or "(unnamed)"), MAX_NAME), status=status,
        time=_seconds(element.get("time")), message=_head(mask(message.strip()), MAX_MESSAGE),
        detail=_head(mask(detail), MAX_DETAIL), stdout=_tail(mask("".join(stdout)), MAX_OUTPUT),
        stderr=_tail(mask("".join(stderr)), MAX_OUTPUT),
    )


def _share_suite_output(suite: ET.Element, cases: list[TestCase], first: int, room: int,
                        mask: Callable[[str], str]) -> int:
    """Suite-level output (go-junit-report v2 puts the package's whole output there) is given to the
    suite's failed cases that have none of their own: that is where it explains something. Each copy
    is stored, so they stop when ``room`` (characters) would run out; returns what they took."""
    out = "".join(c.text or "" for c in suite if _local(c.tag) == "system-out")
    err = "".join(c.text or "" for c in suite if _local(c.tag) == "system-err")
    if not (out or err):
        return 0
    out, err = _tail(mask(out), MAX_OUTPUT), _tail(mask(err), MAX_OUTPUT)
    used = 0
    for i in range(first, len(cases)):
        case = cases[i]
        if case.status in ("failed", "error") and not (case.stdout or case.stderr):
            if used + len(out) + len(err) > room:
                break
            cases[i] = TestCase(**{**case.__dict__, "stdout": out, "stderr": err})
            used += len(out) + len(err)
    return used


def _stored(case: TestCase) -> int:
    return (len(case.suite) + len(case.classname) + len(case.name) + len(case.message) + len(case.detail)
            + len(case.stdout) + len(case.stderr))


def _seconds(text: str | None) -> float | None:
    if not text:
        return None
    try:
        value = float(text.replace(",", "").strip().rstrip("s"))
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def _local(tag) -> str:
    # Comments and processing instructions have a function as their tag.
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _head(text: str, cap: int) -> str:
    return text if len(text) <= cap else text[:cap] + f"\n… ({len(text) - cap:,} more characters cut)"


def _tail(text: str, cap: int) -> str:
    return text if len(text) <= cap else f"({len(text) - cap:,} characters cut) …\n" + text[-cap:]


def _expat_reason(exc: ET.ParseError) -> str:
    # "mismatched tag: line 3, column 2" -> "mismatched tag": the position is said once, up front.
    return str(exc).split(":", 1)[0]

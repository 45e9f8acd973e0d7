"""How `conveyor builds`, `conveyor show` and `conveyor logs` draw the history for a terminal."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator

import click

from runner.cli.progress import STATUS_COLOURS, format_duration
from runner.store.builds import BuildDetail, BuildRow, LogChunk
from runner.store.reports import CASES_KEPT, CaseRow, ReportRow, Totals

__all__ = ["builds_table", "show_lines", "tests_lines", "log_lines", "when"]


def when(stamp: float | None) -> str:
    if stamp is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp))


def _status(status: str, color: bool) -> str:
    return click.style(status, fg=STATUS_COLOURS.get(status)) if color else status


def builds_table(rows: Iterable[BuildRow], *, color: bool = False) -> str:
    header = ("ID", "BUILD", "STATUS", "BRANCH", "SHA", "TRIGGER", "STARTED", "DURATION")
    table = [header]
    statuses = []
    for b in rows:
        # A success with warnings (an allowed failure, say) says so, as `conveyor show` and the page do.
        warned = f" ({len(b.warnings)} warning{'s' * (len(b.warnings) > 1)})" if b.warnings else ""
        table.append((str(b.id), b.label, b.status + warned, b.branch or (f"tag:{b.tag}" if b.tag else "-"),
                      b.short_sha or "-", b.trigger, when(b.started or b.created), format_duration(b.duration)))
        statuses.append(b.status)
    if len(table) == 1:
        return "no builds yet: `conveyor run DIR` starts one"
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    out = []
    for n, row in enumerate(table):
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row)]
        if n and color:
            status = statuses[n - 1]
            cells[2] = _status(status, True) + row[2][len(status):] + " " * (widths[2] - len(row[2]))
        out.append("  ".join(cells).rstrip())
    return "\n".join(out)


def show_lines(detail: BuildDetail, *, color: bool = False) -> Iterator[str]:
    b = detail.build
    warned = " with warnings" if b.status == "success" and b.warnings else ""
    yield f"build {b.label} (id {b.id}): {_status(b.status, color)}{warned}"
    if b.reason:
        yield f"  reason:   {b.reason}"
    for warning in b.warnings:
        yield f"  warning:  {warning}"
    ref = b.branch and f"branch {b.branch}" or (b.tag and f"tag {b.tag}") or "-"
    yield f"  commit:   {b.sha or '-'} ({ref}, {b.event})"
    if b.message:
        yield f"  message:  {b.message.splitlines()[0]}"
    yield f"  trigger:  {b.trigger}   pipeline: {b.pipeline or '-'}"
    yield f"  started:  {when(b.started)}   duration: {format_duration(b.duration)}"
    for d in b.diagnostics:
        yield f"  {d['file']}:{d['line']}:{d['col']}: {d['severity']}: {d['message']}"
    asked = {a.stage: a for a in detail.approvals}
    needs = b.job_needs()
    for stage in detail.stages:
        why = f" ({stage.reason})" if stage.reason else ""
        yield f"stage {stage.name}: {_status(stage.status, color)}  {format_duration(stage.duration)}{why}"
        if stage.name in asked:
            yield from _approval_lines(asked[stage.name], b)
        for job in detail.jobs_of(stage.name):
            why = f" ({job.reason})" if job.reason else ""
            allowed = " (allowed)" if job.allowed else ""
            yield f"  job {job.name}: {_status(job.status, color)}{allowed}  {format_duration(job.duration)}{why}"
            if job.name in needs:
                yield f"    needs: {', '.join(needs[job.name]) or '(none: starts at once)'}"
            for step in job.steps:
                extra = f" exit {step.exit_code}" if step.exit_code not in (None, 0) else ""
                extra += f" ({step.reason})" if step.reason else ""
                again = f" [attempt {step.attempt}]" if step.attempt > 1 else ""
                yield (f"    step {step.position + 1} {step.name}{again}: {_status(step.status, color)}"
                       f"{extra}  {format_duration(step.duration)}")


def tests_lines(build: BuildRow, totals: Totals, reports: list[ReportRow], failures: list[CaseRow], *,
                color: bool = False) -> Iterator[str]:
    """The test reports of ``conveyor show``: totals, unreadable files, the first failed tests."""
    if not reports:
        return
    broken = f"{totals.failed} failed, {totals.errors} errors"
    if color and totals.broken:
        broken = click.style(broken, fg="red", bold=True)
    yield (f"tests: {totals.tests} ({totals.passed} passed, {broken}, {totals.skipped} skipped) "
           f"from {len(reports)} report{'s' if len(reports) != 1 else ''}")
    for report in reports:
        if report.problem:
            yield f"  unreadable report ({report.job}): {report.problem}"
    if dropped := sum(report.dropped for report in reports):
        yield f"  {dropped} cases counted but not kept: a build keeps at most {CASES_KEPT:,} of each status"
    for case in failures:
        message = case.message.splitlines()[0] if case.message else ""
        yield f"  {case.status}: {case.title} [{case.job}]" + (f": {message}" if message else "")
    if totals.broken > len(failures):
        yield (f"  ... {totals.broken - len(failures)} more: GET /api/builds/{build.id}/tests?status=failed "
               "on the server, or the build page")


def _approval_lines(a, build: BuildRow) -> Iterator[str]:
    yield f"  approval: {a.message or '-'}" + (f"  (approvers: {', '.join(a.approvers)})" if a.approvers else "")
    if a.pending:
        until = f" until {when(a.deadline)}" if a.deadline else ""
        yield f"  waiting{until}: conveyor approve id:{build.id} [--reject]"
    elif a.decision in ("approved", "rejected"):
        said = f": {a.comment}" if a.comment else ""
        yield f"  {a.decision} by {a.decided_by} at {when(a.decided_at)}{said}"
    else:
        yield f"  {a.decision.replace('_', ' ')} at {when(a.decided_at)}"


def log_lines(chunks: Iterable[LogChunk], *, prefix: bool) -> Iterator[str]:
    """The stored output; with ``prefix``, each line starts with its job, as `conveyor run` showed it."""
    for chunk in chunks:
        if prefix:
            head = f"[{chunk.job}] "
            yield "".join(head + line + "\n" for line in chunk.text.split("\n"))
        else:
            yield chunk.text + "\n"

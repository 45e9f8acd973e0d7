"""The build page's pipeline graph, laid out on the server: stages as columns, a box per job (a
matrix folded into one box under its job name), and one SVG path per ``needs`` edge.

The page has no script that measures boxes (the CSP allows only /static/live.js, and the graph must
read right without it), so every box sits on a fixed grid and the edges are computed here. The sizes
below are the ones web/static/conveyor.css gives ``.graph``: change both together.

Boxes come from the stored plan, so jobs that have not started yet are drawn too (``queued``, as
docs/pipeline.md names a job waiting for its turn; ``skipped`` once the build is over); the job rows
of the store give the statuses.
Without a readable plan (an old or a config-error build) the rows alone are drawn, without edges.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from runner.plan import Plan, PlanFormatError
from runner.store.rows import BuildDetail, JobRow

__all__ = ["Graph", "Column", "Box", "Member", "Edge", "pipeline_graph", "group_status"]

COLUMN_WIDTH = 190  # px, .graph .stage
COLUMN_GAP = 48  # px, the room between columns where edges bend
HEADER_HEIGHT = 40  # px, .graph .stage-head
BOX_HEIGHT = 46  # px, .graph .job
BOX_GAP = 10  # px, between boxes of a column
MEMBER_HEIGHT = 26  # px, one combination in an open matrix list
MEMBERS_SHOWN = 8  # an open list taller than this scrolls
_BAD = ("failure", "timed_out", "interrupted")


@dataclass
class Member:
    """One matrix combination, or the single job of a plain box."""

    name: str
    status: str = "queued"
    allowed: bool = False
    duration: float | None = None

    @property
    def label(self) -> str:
        return "failed, allowed" if self.allowed else self.status.replace("_", " ")


@dataclass
class Box:
    name: str  # the job's name, or a matrix group's authored name
    members: list[Member]
    group: bool = False
    x: int = 0
    y: int = 0

    @property
    def status(self) -> str:
        return group_status(self.members) if self.group else self.members[0].status

    @property
    def allowed(self) -> bool:
        """It failed, allowed (a matrix: it passed, some combinations only by being allowed to fail):
        shown as a warning, not as a failure."""
        if not self.group:
            return self.members[0].allowed
        return self.status == "success" and any(m.allowed for m in self.members)

    @property
    def label(self) -> str:
        if not self.group:
            return self.members[0].label
        allowed = sum(m.allowed for m in self.members)
        if self.allowed:
            return f"{allowed} failed, allowed"
        return self.status.replace("_", " ")

    @property
    def duration(self) -> float | None:
        times = [m.duration for m in self.members if m.duration is not None]
        return max(times) if times else None


@dataclass
class Column:
    name: str
    status: str
    reason: str | None = None
    duration: float | None = None
    boxes: list[Box] = field(default_factory=list)


@dataclass(frozen=True)
class Edge:
    source: str  # box names
    target: str
    path: str  # SVG path data


@dataclass
class Graph:
    columns: list[Column]
    edges: list[Edge]
    width: int
    height: int


def group_status(members: list[Member]) -> str:
    """A matrix's status from its combinations' (live.js computes the same in the browser): running
    while any runs, failure when one failed that is not allowed, then cancelled, then queued while
    any waits; skipped when all were; otherwise success (allowed failures count as passed)."""
    statuses = [m.status for m in members if not m.allowed]
    for status in ("running", *_BAD, "cancelled", "queued"):
        if status in statuses:
            return "failure" if status in _BAD else status
    if statuses and all(s == "skipped" for s in statuses):
        return "skipped"
    return "success"


def pipeline_graph(detail: BuildDetail) -> Graph:
    rows = {(j.stage, j.name): j for j in detail.jobs}
    stages = {s.name: s for s in detail.stages}
    plan = _plan(detail.build.plan)
    # A planned job with no row has not started yet, or, once the build is over, never will.
    unrun = "queued" if detail.build.status in ("queued", "running", "waiting") else "skipped"
    columns: list[Column] = []
    needs: dict[str, tuple[str, ...]] = {}
    box_of: dict[str, str] = {}  # concrete job name -> its box's name
    if plan is not None:
        for stage in plan.stages:
            row = stages.get(stage.name)
            column = Column(stage.name, row.status if row else unrun, row and row.reason, row and row.duration)
            jobs = stage.jobs or ()
            for job in jobs:
                group = job.matrix.group if job.matrix else None
                member = _member(job.name, rows.pop((stage.name, job.name), None), unrun)
                _place(column, group or job.name, member, group)
                box_of[job.name] = group or job.name
                if job.needs:
                    needs[job.name] = job.needs
            if not jobs:  # an action stage: one box named after its kind, as the executor reports it
                member = _member(stage.kind, rows.pop((stage.name, stage.kind), None), unrun)
                _place(column, stage.kind, member, None)
            columns.append(column)
    # Jobs the plan does not list: post jobs, or every job when there is no plan.
    for (stage_name, name), row in rows.items():
        column = next((c for c in columns if c.name == stage_name), None)
        if column is None:
            stage = stages.get(stage_name)
            column = Column(stage_name, stage.status if stage else row.status, stage and stage.reason,
                            stage.duration if stage else row.duration)
            columns.append(column)
        _place(column, name, _member(name, row), None)
    _waiting_approval(detail, columns)
    return _lay_out(columns, needs, box_of)


def _plan(text: str | None) -> Plan | None:
    try:
        return Plan.from_json(text) if text else None
    except (PlanFormatError, ValueError):
        return None


def _member(name: str, row: JobRow | None, unrun: str = "queued") -> Member:
    if row is None:
        return Member(name, unrun)
    return Member(name, row.status, row.allowed, row.duration)


def _place(column: Column, name: str, member: Member, group: str | None) -> None:
    if group is not None:
        for box in column.boxes:
            if box.group and box.name == group:
                box.members.append(member)
                return
    column.boxes.append(Box(name, [member], group=group is not None))


def _waiting_approval(detail: BuildDetail, columns: list[Column]) -> None:
    """An approval stage's job runs while the build waits for a person: say ``waiting`` there."""
    if detail.build.status != "waiting":
        return
    pending = {a.stage for a in detail.approvals if a.decision is None}
    for column in columns:
        if column.name in pending:
            column.status = "waiting"
            for box in column.boxes:
                for m in box.members:
                    if m.status == "running":
                        m.status = "waiting"


def _lay_out(columns: list[Column], needs: dict[str, tuple[str, ...]], box_of: dict[str, str]) -> Graph:
    place: dict[str, tuple[int, Box]] = {}
    height = HEADER_HEIGHT
    for index, column in enumerate(columns):
        x = index * (COLUMN_WIDTH + COLUMN_GAP)
        for row, box in enumerate(column.boxes):
            box.x, box.y = x, HEADER_HEIGHT + row * (BOX_HEIGHT + BOX_GAP)
            place.setdefault(box.name, (index, box))
            bottom = box.y + BOX_HEIGHT
            if box.group:  # room for its open list, which drops down over what is below
                bottom += min(len(box.members), MEMBERS_SHOWN) * MEMBER_HEIGHT + 12
            height = max(height, bottom)
    edges: dict[tuple[str, str], Edge] = {}
    for job, names in needs.items():
        target = box_of[job]
        for name in names:
            source = box_of.get(name, name)
            if (source, target) not in edges and source in place and target in place and source != target:
                edges[(source, target)] = Edge(source, target, _path(place[source], place[target]))
    width = max(len(columns) * (COLUMN_WIDTH + COLUMN_GAP) - COLUMN_GAP, 0)
    return Graph(columns, list(edges.values()), width, height)


def _path(source: tuple[int, Box], target: tuple[int, Box]) -> str:
    """From the right side of the needed box to the left side of the one that needs it; a need in
    the same column (or an earlier one) loops out to the left of both boxes."""
    (s_col, s), (t_col, t) = source, target
    y1, y2 = s.y + BOX_HEIGHT // 2, t.y + BOX_HEIGHT // 2
    x2 = t.x
    if t_col > s_col:
        x1 = s.x + COLUMN_WIDTH
        bend = (x2 - x1) // 2
        return f"M{x1},{y1} C{x1 + bend},{y1} {x2 - bend},{y2} {x2},{y2}"
    x1 = s.x
    reach = COLUMN_GAP // 2
    return f"M{x1},{y1} C{x1 - reach},{y1} {x2 - reach},{y2} {x2},{y2}"

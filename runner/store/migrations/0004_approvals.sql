-- Approval stages: one row per approval stage a build reached. While `decision` is NULL the build
-- is `waiting`; the row is written when the stage starts, so a restarted server (or `conveyor
-- approve` in another shell) finds the question, its deadline and who may answer it.
CREATE TABLE approvals (
    id INTEGER PRIMARY KEY,
    build_id INTEGER NOT NULL REFERENCES builds (id) ON DELETE CASCADE,
    stage TEXT NOT NULL,
    message TEXT NOT NULL DEFAULT '',
    approvers TEXT NOT NULL DEFAULT '[]',  -- JSON list of user names or roles; [] = anyone allowed
    requested REAL NOT NULL,
    deadline REAL,                          -- unix seconds; NULL = no timeout
    decision TEXT,                          -- NULL (pending), approved, rejected, timed_out, not_asked
    decided_by TEXT,
    decided_at REAL,
    comment TEXT,
    UNIQUE (build_id, stage)
);
CREATE INDEX approvals_pending ON approvals (build_id) WHERE decision IS NULL;

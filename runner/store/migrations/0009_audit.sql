-- The audit log: every change a person made through the server (run, cancel, re-run, approve,
-- reject, rollback, a schedule run now) and every failed sign-in, with who, when and from where.
-- A build's rows outlive it: retention deletes builds, and the log keeps its entries with
-- build_id set to NULL (`what` still names the build).
CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY,
    at REAL NOT NULL,                 -- unix seconds
    actor TEXT,                       -- the user's name; NULL for a failed sign-in
    role TEXT,                        -- the actor's role then
    action TEXT NOT NULL,             -- run, cancel, rerun, approve, reject, rollback, run_schedule, login_failed
    build_id INTEGER REFERENCES builds (id) ON DELETE SET NULL,
    repo TEXT,
    what TEXT,                        -- what it was done to, in words: "build acme/web #12", a service, a schedule
    detail TEXT NOT NULL DEFAULT '{}',  -- JSON: the outcome and what was asked
    address TEXT                      -- the client's address
);
CREATE INDEX audit_log_build ON audit_log (build_id);

-- JUnit test reports a job left in its workspace (`reports: {junit: [...]}`), parsed into cases.
-- One row per report file, with its totals counted from its cases; a file that could not be read
-- (malformed, hostile, too big) is a row with a `problem` and no cases, so the page can say why.
-- Both go with their build (retention deletes builds with foreign keys on).
CREATE TABLE test_reports (
    id INTEGER PRIMARY KEY,
    build_id INTEGER NOT NULL REFERENCES builds (id) ON DELETE CASCADE,
    job TEXT NOT NULL,                -- the job's name, as in jobs.name
    file TEXT NOT NULL,               -- its path in the workspace
    tests INTEGER NOT NULL DEFAULT 0,
    passed INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0,
    errors INTEGER NOT NULL DEFAULT 0,
    skipped INTEGER NOT NULL DEFAULT 0,
    time REAL,                        -- the sum of its cases' times (seconds)
    problem TEXT,                     -- why the file gave no cases; NULL when it was read
    created REAL NOT NULL,
    UNIQUE (build_id, job, file)
);

-- `rank` orders a build's cases for a reader: failures and errors (0), skipped (1), passed (2).
CREATE TABLE test_cases (
    id INTEGER PRIMARY KEY,
    report_id INTEGER NOT NULL REFERENCES test_reports (id) ON DELETE CASCADE,
    build_id INTEGER NOT NULL,        -- the report's build, kept here for the (build, rank) index
    rank INTEGER NOT NULL,
    status TEXT NOT NULL,             -- passed, failed, error, skipped
    suite TEXT NOT NULL,
    classname TEXT NOT NULL,
    name TEXT NOT NULL,
    time REAL,
    message TEXT NOT NULL,
    detail TEXT NOT NULL,             -- the failure's body (a stack trace), capped
    stdout TEXT NOT NULL,             -- captured output, capped (its tail)
    stderr TEXT NOT NULL
);
CREATE INDEX test_cases_build ON test_cases (build_id, rank, id);
CREATE INDEX test_cases_report ON test_cases (report_id);

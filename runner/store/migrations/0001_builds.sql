-- Builds and what they are made of. Times are unix seconds (REAL). Statuses are DSL.md's.
CREATE TABLE builds (
    id INTEGER PRIMARY KEY,
    repo TEXT NOT NULL,               -- repository name (the directory name for `conveyor run`)
    repo_url TEXT,                    -- where it comes from (CI_REPO_URL), without credentials
    number INTEGER NOT NULL,          -- per repo, 1, 2, 3, ...
    uid TEXT NOT NULL UNIQUE,         -- resource-name-safe id used in container/volume/network names
    instance TEXT NOT NULL,           -- the runner that owns its resources
    event TEXT NOT NULL,              -- push, tag, pull_request, manual, cron
    ref TEXT,
    branch TEXT,
    tag TEXT,
    sha TEXT,
    message TEXT,
    author TEXT,
    trigger TEXT NOT NULL DEFAULT 'cli',  -- cli, webhook, api:<user>, rerun:<id>
    params TEXT NOT NULL DEFAULT '{}',    -- JSON
    status TEXT NOT NULL,
    reason TEXT,                      -- why it ended so (config error summary, interrupted, ...)
    pipeline TEXT,                    -- the pipeline file it came from
    rendered TEXT,                    -- the rendered pipeline text
    plan TEXT,                        -- the Plan as JSON
    diagnostics TEXT,                 -- JSON list of diagnostics (config errors and warnings)
    pid INTEGER,                      -- the process running it, to tell a live build from a dead one
    host TEXT,                        -- the host of that process (a pid means nothing elsewhere)
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    UNIQUE (repo, number)
);
CREATE INDEX builds_status ON builds (status);
CREATE INDEX builds_repo_branch ON builds (repo, branch, id);

CREATE TABLE stages (
    id INTEGER PRIMARY KEY,
    build_id INTEGER NOT NULL REFERENCES builds (id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    started REAL,
    finished REAL,
    UNIQUE (build_id, name)
);

CREATE TABLE jobs (
    id INTEGER PRIMARY KEY,
    build_id INTEGER NOT NULL REFERENCES builds (id) ON DELETE CASCADE,
    stage TEXT NOT NULL,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    started REAL,
    finished REAL,
    UNIQUE (build_id, stage, name)
);

CREATE TABLE steps (
    id INTEGER PRIMARY KEY,
    job_id INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    name TEXT NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 1,
    status TEXT NOT NULL,
    exit_code INTEGER,
    reason TEXT,
    started REAL,
    finished REAL,
    UNIQUE (job_id, position, attempt)
);

-- Log output in batches of whole lines; `seq` orders the chunks of a build.
CREATE TABLE log_chunks (
    id INTEGER PRIMARY KEY,
    build_id INTEGER NOT NULL REFERENCES builds (id) ON DELETE CASCADE,
    job_id INTEGER REFERENCES jobs (id) ON DELETE CASCADE,
    step INTEGER,
    attempt INTEGER NOT NULL DEFAULT 1,
    seq INTEGER NOT NULL,
    first_line INTEGER NOT NULL,      -- line number (within the step) of the first line here, 1-based
    lines INTEGER NOT NULL,           -- how many lines
    text TEXT NOT NULL,               -- the lines joined with '\n', no trailing newline
    time REAL NOT NULL
);
CREATE INDEX log_chunks_build ON log_chunks (build_id, seq);
CREATE INDEX log_chunks_job ON log_chunks (job_id, step, seq);

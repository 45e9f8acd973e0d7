-- Deploy history: one row per service per deploy or rollback, written with synchronous=FULL.
-- Times are unix seconds (REAL). Specs are the engine's ServiceSpec as JSON ("before" is NULL when
-- the deploy created the service). Statuses: deploying, succeeded, rolled_back, failed, unknown.
CREATE TABLE deploys (
    id INTEGER PRIMARY KEY,
    service TEXT NOT NULL,
    target TEXT NOT NULL DEFAULT 'default',   -- a named target from the configuration, or 'default'
    stack TEXT,                               -- the Compose stack it belongs to, if any
    batch TEXT,                               -- rows written by one stack deploy share this id
    kind TEXT NOT NULL DEFAULT 'deploy',      -- deploy, rollback
    rollback_of INTEGER REFERENCES deploys (id),  -- for a rollback: the deploy whose spec was re-applied
    image TEXT,                               -- image reference as asked for
    image_id TEXT,                            -- what the reference resolved to at deploy time
    spec_before TEXT,
    spec_after TEXT,
    version_after INTEGER,                    -- the service's Version.Index after our update
    repo TEXT,
    build_uid TEXT,
    build_number INTEGER,
    commit_sha TEXT,
    status TEXT NOT NULL,
    reason TEXT,
    trigger TEXT NOT NULL DEFAULT 'cli',      -- cli, webhook, a user name
    pid INTEGER,                              -- the process deploying, to tell a live claim from a dead one
    host TEXT,
    heartbeat REAL,                           -- refreshed while deploying; a stale claim may be taken over
    started REAL NOT NULL,
    finished REAL
);
CREATE INDEX deploys_service ON deploys (target, service, id);
CREATE INDEX deploys_status ON deploys (status);
CREATE INDEX deploys_batch ON deploys (batch);
-- The claim that serialises deploys of one service across processes: at most one in flight.
CREATE UNIQUE INDEX deploys_in_flight ON deploys (target, service) WHERE status = 'deploying';

-- The server's durable inbox and queue. Times are unix seconds (REAL).
--
-- A webhook delivery is answered 202 only after its row here is committed; the queue worker turns
-- pending rows into builds later, so a crash after the 202 loses nothing. The unique index on
-- (provider, delivery) makes a redelivery (or 20 concurrent copies of one) a no-op.
CREATE TABLE deliveries (
    id INTEGER PRIMARY KEY,
    provider TEXT NOT NULL,           -- github, gitlab, gitea: the endpoint it came in on
    delivery TEXT NOT NULL,           -- the provider's delivery id (X-GitHub-Delivery, ...)
    repo TEXT NOT NULL,               -- the configured repository name it was matched to
    event TEXT NOT NULL,              -- push, tag, pull_request
    trigger TEXT NOT NULL,            -- the parsed trigger as JSON (ref, sha, branch, fork, ...)
    state TEXT NOT NULL DEFAULT 'pending',  -- pending, queued (a build exists), ignored
    build_id INTEGER REFERENCES builds (id) ON DELETE SET NULL,
    note TEXT,                        -- why it was ignored
    received REAL NOT NULL
);
CREATE UNIQUE INDEX deliveries_unique ON deliveries (provider, delivery);
CREATE INDEX deliveries_pending ON deliveries (state, id);

-- What the server must remember about a build it queued, beyond the builds row: where the code
-- comes from and what the build may do. A fork's pull request gets no secrets and cannot deploy.
CREATE TABLE server_builds (
    build_id INTEGER PRIMARY KEY REFERENCES builds (id) ON DELETE CASCADE,
    config_repo TEXT NOT NULL,        -- the repository's name in the server configuration
    delivery_id INTEGER UNIQUE REFERENCES deliveries (id) ON DELETE SET NULL,
    fork INTEGER NOT NULL DEFAULT 0,
    pr_number INTEGER,
    rerun_of INTEGER,
    cancel_requested REAL             -- when someone asked to cancel it
);

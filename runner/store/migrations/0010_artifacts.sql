-- What builds keep (docs/pipeline.md). An artifact row is one file a job kept; its contents are a
-- blob under the data directory, artifacts/<build uid>/<sha256[:2]>/<sha256>, so identical files of
-- one build are stored once and retention removes a build's blobs with its directory. A row stays
-- after its expiry (expire_in) with `expired` set, so the page can say so.
CREATE TABLE artifacts (
    id INTEGER PRIMARY KEY,
    build_id INTEGER NOT NULL REFERENCES builds (id) ON DELETE CASCADE,
    job TEXT NOT NULL,                -- the job's name in the plan
    path TEXT NOT NULL,               -- relative to the workspace
    size INTEGER NOT NULL,            -- bytes; 0 for a symlink
    sha256 TEXT NOT NULL,             -- hex; '' for a symlink
    mode INTEGER NOT NULL,            -- permission bits, restored with the file
    link TEXT,                        -- a symlink's target (always inside the workspace)
    created REAL NOT NULL,
    expires REAL,                     -- NULL: kept as long as the build
    expired REAL,                     -- when the expiry pass removed its blob
    UNIQUE (build_id, job, path)
);
CREATE INDEX artifacts_due ON artifacts (expires) WHERE expires IS NOT NULL AND expired IS NULL;

-- Caches between builds: one compressed archive per namespace (repository, and forks apart) and key,
-- data_dir/caches/<file>; `used` orders the LRU eviction under the total size limit.
CREATE TABLE caches (
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    file TEXT NOT NULL,
    size INTEGER NOT NULL,
    created REAL NOT NULL,
    used REAL NOT NULL,
    PRIMARY KEY (namespace, key)
);

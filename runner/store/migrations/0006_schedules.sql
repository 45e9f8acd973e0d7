-- The last slot each cron schedule fired for (times are unix seconds). The build a slot starts and
-- this row are written in one transaction, so a restart never fires a slot twice, and a server that
-- was down over several slots fires only the newest one. A schedule seen for the first time gets a
-- row with no build: its past slots are not owed.
CREATE TABLE schedule_firings (
    repo TEXT NOT NULL,               -- the repository's name in the server configuration
    name TEXT NOT NULL,               -- the schedule's name
    slot REAL NOT NULL,               -- the newest slot handled
    fired REAL,                       -- when it fired; NULL for the first sighting of the schedule
    build_id INTEGER REFERENCES builds (id) ON DELETE SET NULL,
    PRIMARY KEY (repo, name)
);

-- Indexes that let GET /metrics count from the store on every scrape without reading whole rows
-- (a builds row carries its plan and rendered text, so a table scan would walk overflow pages).
CREATE INDEX jobs_status ON jobs (status);
CREATE INDEX builds_started ON builds (started, created);
CREATE INDEX builds_finished ON builds (finished, started);
CREATE INDEX deploys_outcome ON deploys (kind, status);

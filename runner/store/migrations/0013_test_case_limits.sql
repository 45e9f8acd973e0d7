-- A case's rank is now its status's own (failed 0, error 1, skipped 2, passed 3), so filtering a
-- build's cases by status is a range of the (build_id, rank, id) index, never a walk over every
-- failure checking its status.
UPDATE test_cases SET rank = CASE status WHEN 'failed' THEN 0 WHEN 'error' THEN 1 WHEN 'skipped' THEN 2
                                         ELSE 3 END
 WHERE status != 'failed';

-- A build keeps at most so many cases of each status (runner/store/reports.py CASES_KEPT); the
-- rest are counted in the report's totals and here, not stored.
ALTER TABLE test_reports ADD COLUMN dropped INTEGER NOT NULL DEFAULT 0;

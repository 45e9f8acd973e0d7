-- Every table that points at a build gets an index on that column, so deleting a build (retention)
-- finds the rows its ON DELETE touches without scanning the table: deliveries are never pruned
-- and grew with every webhook, and each deleted build scanned all of them.
CREATE INDEX deliveries_build ON deliveries (build_id);
CREATE INDEX schedule_firings_build ON schedule_firings (build_id);

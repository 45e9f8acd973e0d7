-- Pipeline depth: what `when.changes` compares against, allowed failures and the build's warnings.
ALTER TABLE builds ADD COLUMN before TEXT;           -- a push's previous head (the webhook's `before`), or --changes-from
ALTER TABLE builds ADD COLUMN target_branch TEXT;    -- a pull request's base branch (changes count from the merge base)
ALTER TABLE builds ADD COLUMN warnings TEXT NOT NULL DEFAULT '[]';  -- JSON list: e.g. allowed failures
ALTER TABLE jobs ADD COLUMN allowed INTEGER NOT NULL DEFAULT 0;      -- 1: failed, and allow_failure let the build pass

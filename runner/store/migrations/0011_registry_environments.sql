-- Build once, deploy everywhere: what a deploy pinned, where it went, and what it promoted.
ALTER TABLE deploys ADD COLUMN digest TEXT;         -- the repo digest the service runs (name@sha256:...), when pinned
ALTER TABLE deploys ADD COLUMN environment TEXT;    -- the environment (staging, production, ...) deployed to, if any
ALTER TABLE deploys ADD COLUMN promoted_from INTEGER REFERENCES deploys (id);  -- a promotion: the source environment's live deploy
CREATE INDEX deploys_environment ON deploys (environment, service, id);

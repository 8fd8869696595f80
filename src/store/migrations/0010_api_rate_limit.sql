-- 0010: the request rate each API was found to allow, so that the next crawl of it starts
-- paced just under that rate instead of ramping up from a guess. One row per API, replaced
-- by every snapshot that found a rate.
CREATE TABLE api_rate_limit (
    api        TEXT    PRIMARY KEY,   -- SHA-256 of the base URL, hex (a base URL can carry a proxy's credentials)
    per_minute INTEGER NOT NULL CHECK (per_minute > 0), -- requests per minute
    learned_at INTEGER NOT NULL,      -- Unix seconds: when the snapshot that found it finished
    snapshot_id INTEGER NOT NULL REFERENCES snapshot (id)
);

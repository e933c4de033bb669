-- Schema version 8: tokens of the local API, and what each used per day.
--
-- A token is shown once, when it is made, and stored only as a salted SHA-256 hash of its
-- secret part. Its public prefix finds its row. Each token belongs to one twin, has one scope
-- (`ask`: ask and chat completions; `read`: search, sources, conversations), a rate limit in
-- requests per minute, and a daily budget of generated tokens. A revoked token keeps its row
-- (with `revoked_at`) so the window can show when it was revoked; it never authenticates again.

CREATE TABLE api_tokens (
    id INTEGER PRIMARY KEY,
    twin_id INTEGER NOT NULL REFERENCES twins(id) ON DELETE CASCADE,
    name TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    scope TEXT NOT NULL CHECK (scope IN ('ask', 'read')),
    prefix TEXT NOT NULL UNIQUE,
    salt BLOB NOT NULL,
    hash BLOB NOT NULL,
    rate_per_minute INTEGER NOT NULL CHECK (rate_per_minute BETWEEN 1 AND 100000),
    daily_tokens INTEGER NOT NULL CHECK (daily_tokens BETWEEN 1 AND 1000000000),
    created_at INTEGER NOT NULL,
    last_used_at INTEGER,
    revoked_at INTEGER
);

-- Days are counted in UTC from the Unix epoch.
CREATE TABLE api_usage (
    token_id INTEGER NOT NULL REFERENCES api_tokens(id) ON DELETE CASCADE,
    day INTEGER NOT NULL,
    requests INTEGER NOT NULL DEFAULT 0,
    generated INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (token_id, day)
) WITHOUT ROWID;

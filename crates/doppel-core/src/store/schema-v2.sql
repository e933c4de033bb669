-- Schema version 2: sources fetched from URLs, their jobs, and page numbers for passages.
-- SQLite cannot change a CHECK constraint in place, so `sources` and `jobs` are rebuilt (the
-- documented twelve-step procedure; foreign keys are off while migrations run).

CREATE TABLE sources_v2 (
    id            INTEGER PRIMARY KEY,
    twin_id       INTEGER NOT NULL REFERENCES twins(id) ON DELETE CASCADE,
    kind          TEXT NOT NULL CHECK (kind IN ('file', 'text', 'url')),
    origin        TEXT,
    title         TEXT NOT NULL,
    media_type    TEXT,
    byte_size     INTEGER,
    content_hash  TEXT,
    state         TEXT NOT NULL CHECK (state IN ('queued', 'processing', 'ready', 'failed')),
    error         TEXT,
    chunk_count   INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);
INSERT INTO sources_v2 SELECT * FROM sources;
DROP TABLE sources;
ALTER TABLE sources_v2 RENAME TO sources;
CREATE UNIQUE INDEX sources_origin ON sources (twin_id, origin) WHERE origin IS NOT NULL;
CREATE INDEX sources_hash ON sources (twin_id, content_hash);

CREATE TABLE jobs_v2 (
    id               INTEGER PRIMARY KEY,
    twin_id          INTEGER NOT NULL REFERENCES twins(id) ON DELETE CASCADE,
    kind             TEXT NOT NULL CHECK (kind IN ('ingest_file', 'ingest_text', 'ingest_url')),
    source_id        INTEGER REFERENCES sources(id) ON DELETE SET NULL,
    origin           TEXT NOT NULL,
    payload_text     TEXT,
    state            TEXT NOT NULL
                     CHECK (state IN ('queued', 'running', 'done', 'failed', 'cancelled')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER NOT NULL,
    last_error       TEXT,
    last_error_code  TEXT,
    outcome          TEXT CHECK (outcome IN ('ingested', 'unchanged', 'already_present')),
    duplicate_of     INTEGER,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);
INSERT INTO jobs_v2 SELECT * FROM jobs;
DROP TABLE jobs;
ALTER TABLE jobs_v2 RENAME TO jobs;
CREATE UNIQUE INDEX jobs_one_queued ON jobs (source_id) WHERE state = 'queued';
CREATE INDEX jobs_due ON jobs (state, next_attempt_at, id);
CREATE INDEX jobs_source ON jobs (source_id);

-- The page of a paged document (PDF) a passage comes from, for citations.
ALTER TABLE chunks ADD COLUMN page INTEGER;

-- Schema version 1 of Doppel's database. Later versions add migrations after this one; this
-- text never changes once released, so that an old database migrates the same way every time.

CREATE TABLE twins (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);

CREATE TABLE sources (
    id            INTEGER PRIMARY KEY,
    twin_id       INTEGER NOT NULL REFERENCES twins(id) ON DELETE CASCADE,
    kind          TEXT NOT NULL CHECK (kind IN ('file', 'text')),
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
-- A path is one source of a twin, however often it is ingested.
CREATE UNIQUE INDEX sources_origin ON sources (twin_id, origin) WHERE origin IS NOT NULL;
CREATE INDEX sources_hash ON sources (twin_id, content_hash);

CREATE TABLE chunks (
    id           INTEGER PRIMARY KEY,
    source_id    INTEGER NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
    ordinal      INTEGER NOT NULL,
    text         TEXT NOT NULL,
    location     TEXT NOT NULL DEFAULT '',
    line_start   INTEGER,
    line_end     INTEGER,
    token_count  INTEGER NOT NULL,
    text_hash    TEXT NOT NULL,
    UNIQUE (source_id, ordinal)
);
CREATE INDEX chunks_text_hash ON chunks (text_hash);

-- The keyword index mirrors chunks through the triggers below, inside the same transaction.
CREATE VIRTUAL TABLE chunks_fts USING fts5 (
    text, location,
    content = 'chunks', content_rowid = 'id',
    tokenize = 'porter unicode61 remove_diacritics 2'
);
-- Deleted entries are removed from the index b-tree at once, not merely marked.
INSERT INTO chunks_fts (chunks_fts, rank) VALUES ('secure-delete', 1);

CREATE TRIGGER chunks_after_insert AFTER INSERT ON chunks BEGIN
    INSERT INTO chunks_fts (rowid, text, location) VALUES (new.id, new.text, new.location);
END;
CREATE TRIGGER chunks_after_delete AFTER DELETE ON chunks BEGIN
    INSERT INTO chunks_fts (chunks_fts, rowid, text, location)
        VALUES ('delete', old.id, old.text, old.location);
END;
CREATE TRIGGER chunks_after_update AFTER UPDATE ON chunks BEGIN
    INSERT INTO chunks_fts (chunks_fts, rowid, text, location)
        VALUES ('delete', old.id, old.text, old.location);
    INSERT INTO chunks_fts (rowid, text, location) VALUES (new.id, new.text, new.location);
END;

CREATE TABLE jobs (
    id               INTEGER PRIMARY KEY,
    twin_id          INTEGER NOT NULL REFERENCES twins(id) ON DELETE CASCADE,
    kind             TEXT NOT NULL CHECK (kind IN ('ingest_file', 'ingest_text')),
    source_id        INTEGER REFERENCES sources(id) ON DELETE SET NULL,
    origin           TEXT NOT NULL,
    -- Pasted text waits here until its job runs, and is cleared when the job ends.
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
-- At most one waiting job per source: asking twice while queued is asking once.
CREATE UNIQUE INDEX jobs_one_queued ON jobs (source_id) WHERE state = 'queued';
CREATE INDEX jobs_due ON jobs (state, next_attempt_at, id);
CREATE INDEX jobs_source ON jobs (source_id);

CREATE TABLE settings (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
) WITHOUT ROWID;

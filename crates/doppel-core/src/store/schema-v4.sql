-- Schema version 4: conversations with the twin, cited answers, verified answers and personas.
-- A conversation's id is chosen by the caller, so that creating it is idempotent: two first
-- messages arriving at once insert one row (INSERT … ON CONFLICT DO NOTHING). A citation keeps
-- the passage it quoted; deleting the source clears the quote and the chunk (the citation then
-- reads "source deleted").

CREATE TABLE conversations (
    id          TEXT PRIMARY KEY,
    twin_id     INTEGER NOT NULL REFERENCES twins(id) ON DELETE CASCADE,
    title       TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE INDEX conversations_recent ON conversations (twin_id, updated_at);

CREATE TABLE messages (
    id               INTEGER PRIMARY KEY,
    conversation_id  TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    role             TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
    content          TEXT NOT NULL,
    state            TEXT NOT NULL
                     CHECK (state IN ('streaming', 'complete', 'cancelled', 'failed')),
    error            TEXT,
    model            TEXT,
    grounding        TEXT,
    verified         INTEGER NOT NULL DEFAULT 0,
    created_at       INTEGER NOT NULL
);
CREATE INDEX messages_conversation ON messages (conversation_id, id);

CREATE TABLE citations (
    message_id    INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    number        INTEGER NOT NULL,
    chunk_id      INTEGER,
    source_id     INTEGER,
    source_title  TEXT NOT NULL,
    location      TEXT NOT NULL,
    quote         TEXT,
    PRIMARY KEY (message_id, number)
);
CREATE INDEX citations_source ON citations (source_id);

CREATE TABLE verified_answers (
    id          INTEGER PRIMARY KEY,
    twin_id     INTEGER NOT NULL REFERENCES twins(id) ON DELETE CASCADE,
    question    TEXT NOT NULL,
    answer      TEXT NOT NULL,
    message_id  INTEGER REFERENCES messages(id) ON DELETE SET NULL,
    created_at  INTEGER NOT NULL
);

CREATE TABLE personas (
    twin_id      INTEGER PRIMARY KEY REFERENCES twins(id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    description  TEXT NOT NULL,
    voice        TEXT NOT NULL,
    not_covered  TEXT NOT NULL
);

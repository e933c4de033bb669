-- Schema version 3: embedding models and the vectors they made.
-- A vector belongs to a chunk text (by its hash) and a model: equal texts share one vector, an
-- edited document re-embeds only the chunks whose text changed, and vectors of two models never
-- mix. `generation` counts changes to a model's vectors; the saved HNSW index records the
-- generation it holds, so a stale index file is recognised at start.

CREATE TABLE embed_models (
    id           INTEGER PRIMARY KEY,
    name         TEXT NOT NULL,
    dimension    INTEGER NOT NULL,
    fingerprint  TEXT NOT NULL UNIQUE,
    generation   INTEGER NOT NULL DEFAULT 0,
    created_at   INTEGER NOT NULL
);

CREATE TABLE embeddings (
    model_id   INTEGER NOT NULL REFERENCES embed_models(id) ON DELETE CASCADE,
    text_hash  TEXT NOT NULL,
    vector     BLOB NOT NULL,
    PRIMARY KEY (model_id, text_hash)
) WITHOUT ROWID;

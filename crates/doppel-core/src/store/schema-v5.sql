-- Schema version 5: watched folders, and what a file looked like when it was last read.
-- A watched folder belongs to a twin; its path is canonical and absolute, once per twin.
-- `file_size` and `file_mtime_ns` are the size and modification time a file had just before
-- the worker last read it. Catching up with a watched folder compares them with the file as it
-- is, so that files unchanged since are not even read again; a file whose content did change
-- is still recognised by its content hash, and only chunks whose text changed are embedded.

CREATE TABLE watched_folders (
    id          INTEGER PRIMARY KEY,
    twin_id     INTEGER NOT NULL REFERENCES twins(id) ON DELETE CASCADE,
    path        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    UNIQUE (twin_id, path)
);

ALTER TABLE sources ADD COLUMN file_size INTEGER;
ALTER TABLE sources ADD COLUMN file_mtime_ns INTEGER;

-- Schema version 10: the sources that changed since a moment are found by an index.
--
-- The window asks for them after every batch of events (`Doppel::sources_changed_since`); without
-- it each question read every source of the twin.

CREATE INDEX sources_changed ON sources (twin_id, updated_at);

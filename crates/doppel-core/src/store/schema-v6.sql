-- Schema version 6: what each answer drew on, so that forgetting a source reaches every answer
-- and every verified answer that could repeat its words, not only those that cited it.
--
-- `answer_sources`: the sources whose passages an answer was given (its prompt, or the passages
-- an extractive answer shows), whether it cited them or not. Recorded before the answer's first
-- word is stored. Older answers get the sources they cited.
-- `answer_verified`: the verified answers an answer was given. No foreign key: an answer keeps
-- the record after the verified answer is removed.
-- `verified_sources`: the sources a verified answer was drawn from (those its message was given,
-- directly or through a verified answer). Forgetting one of them removes the verified answer.
-- Sources are recorded rather than passages: forgetting compares an answer with every passage
-- of the source, and a passage's id does not outlive a new version of its file.

CREATE TABLE answer_sources (
    message_id  INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    source_id   INTEGER NOT NULL,
    PRIMARY KEY (message_id, source_id)
) WITHOUT ROWID;
CREATE INDEX answer_sources_source ON answer_sources (source_id);

CREATE TABLE answer_verified (
    message_id   INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    verified_id  INTEGER NOT NULL,
    PRIMARY KEY (message_id, verified_id)
) WITHOUT ROWID;
CREATE INDEX answer_verified_verified ON answer_verified (verified_id);

CREATE TABLE verified_sources (
    verified_id  INTEGER NOT NULL REFERENCES verified_answers(id) ON DELETE CASCADE,
    source_id    INTEGER NOT NULL,
    PRIMARY KEY (verified_id, source_id)
) WITHOUT ROWID;
CREATE INDEX verified_sources_source ON verified_sources (source_id);

INSERT OR IGNORE INTO answer_sources (message_id, source_id)
    SELECT message_id, source_id FROM citations WHERE source_id IN (SELECT id FROM sources);
INSERT OR IGNORE INTO verified_sources (verified_id, source_id)
    SELECT v.id, a.source_id FROM verified_answers v
    JOIN answer_sources a ON a.message_id = v.message_id;

-- A citation of a forgotten source keeps nothing from the document: not its title (a heading,
-- an e-mail's subject) nor where in it the passage was.
UPDATE citations SET source_title = '', location = '' WHERE quote IS NULL;

-- A server's API key is looked up in the keychain only if one was stored for it
-- (`keychain.api-key <url>` = '1'), so a server that needs none never touches the keychain. The
-- servers chosen before this version may have keys: they are looked up as before.
INSERT OR IGNORE INTO settings (key, value)
    SELECT 'keychain.api-key ' || rtrim(trim(value), '/'), '1' FROM settings
    WHERE key IN ('embedder.url', 'chat.url') AND trim(value) != '';

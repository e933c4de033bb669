-- Schema version 7: answers checked before they are shown.
--
-- A model's answer that its passages do not support, or that declines although passages were
-- found, is replaced by the grounded answer (composed from the passages' own sentences). The
-- model's text is kept in `draft`, behind a toggle, with the reason in `draft_note`. Forgetting
-- a source scrubs `draft` as it scrubs `content`.

ALTER TABLE messages ADD COLUMN draft TEXT;
ALTER TABLE messages ADD COLUMN draft_note TEXT;

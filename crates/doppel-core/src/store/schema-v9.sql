-- Schema version 9: local metrics (`metrics.rs`).
--
-- One row per measurement: when, which metric, a label from a fixed vocabulary (a format, a
-- job kind, an error code, an answer's kind; never a path, a title or document text) and a
-- number. Rows older than the `metrics_days` setting are deleted, and at most a fixed number
-- are kept, so the table stays small whatever the twin does.

CREATE TABLE metric_samples (
    id INTEGER PRIMARY KEY,
    at_ms INTEGER NOT NULL,
    metric TEXT NOT NULL,
    label TEXT NOT NULL DEFAULT '',
    value REAL NOT NULL
);

CREATE INDEX metric_samples_by_metric ON metric_samples (metric, at_ms);

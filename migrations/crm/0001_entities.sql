-- The embedded CRM of record. Every entity (security model and records alike) is one row
-- holding its canonical JSON body; `version` comes from one monotonic counter so the whole
-- CRM has a single change feed, and deletions stay as tombstones (deleted = 1, body NULL) so
-- the feed can report them.
CREATE TABLE entities (
    kind       TEXT    NOT NULL,
    id         TEXT    NOT NULL,
    version    INTEGER NOT NULL,
    deleted    INTEGER NOT NULL DEFAULT 0 CHECK (deleted IN (0, 1)),
    body       TEXT,
    changed_at TEXT    NOT NULL,
    PRIMARY KEY (kind, id),
    CHECK ((deleted = 1) = (body IS NULL))
);
CREATE UNIQUE INDEX entities_by_version ON entities (version);

CREATE TABLE counters (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT INTO counters (name, value) VALUES ('version', 0);

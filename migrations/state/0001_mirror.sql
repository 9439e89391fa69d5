-- The state DB starts with the mirror of the CRM: every entity of the CRM's change feed as the
-- engine last saw it (typed decisions are made from this mirror, never from a live CRM call),
-- the feed cursor, and small key/value settings.
CREATE TABLE mirror_entities (
    kind      TEXT    NOT NULL,
    id        TEXT    NOT NULL,
    version   INTEGER NOT NULL,
    body      TEXT    NOT NULL,
    mirrored_at TEXT  NOT NULL,
    PRIMARY KEY (kind, id)
);

CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- CRM rows the mirror could not read, kept so `status` can show them until they are fixed.
CREATE TABLE mirror_problems (
    kind     TEXT    NOT NULL,
    id       TEXT    NOT NULL,
    version  INTEGER NOT NULL,
    error    TEXT    NOT NULL,
    seen_at  TEXT    NOT NULL,
    PRIMARY KEY (kind, id)
);

-- The sync engine's state: per-user Google containers and sync tokens, one link per
-- (user, record) with the base snapshot both sides last agreed on, Google items we know of but
-- have not linked (dedup and phone-created candidates, kept current from listings so that
-- dedup never needs a full listing), and the audit and conflict trails.

CREATE TABLE sync_users (
    user_id             TEXT PRIMARY KEY,
    google_account      TEXT NOT NULL,
    calendar_id         TEXT,
    group_resource      TEXT,
    events_sync_token   TEXT,
    contacts_sync_token TEXT,
    scope_fingerprint   TEXT,
    last_attempt_at     TEXT,
    last_success_at     TEXT,
    last_error          TEXT
);

CREATE TABLE links (
    user_id     TEXT    NOT NULL,
    kind        TEXT    NOT NULL CHECK (kind IN ('contact', 'event')),
    crm_id      TEXT    NOT NULL,
    state       TEXT    NOT NULL CHECK (state IN ('pending_create', 'linked', 'unlinked')),
    google_id   TEXT,
    etag        TEXT,
    generation  INTEGER NOT NULL DEFAULT 0,
    base        TEXT,
    base_hash   TEXT,
    crm_version INTEGER,
    origin      TEXT    NOT NULL CHECK (origin IN ('created', 'linked_existing', 'imported')),
    pre_link    TEXT,
    updated_at  TEXT    NOT NULL,
    PRIMARY KEY (user_id, kind, crm_id)
);
CREATE UNIQUE INDEX links_by_google_id ON links (user_id, kind, google_id)
    WHERE google_id IS NOT NULL;

CREATE TABLE remote_unlinked (
    user_id   TEXT    NOT NULL,
    kind      TEXT    NOT NULL CHECK (kind IN ('contact', 'event')),
    google_id TEXT    NOT NULL,
    item      TEXT    NOT NULL,
    reported  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, kind, google_id)
);

CREATE TABLE audit (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at      TEXT NOT NULL,
    run_id  TEXT NOT NULL,
    user_id TEXT,
    record  TEXT,
    action  TEXT NOT NULL,
    detail  TEXT NOT NULL
);
CREATE INDEX audit_by_user ON audit (user_id, id);
CREATE INDEX audit_by_record ON audit (record, id);

CREATE TABLE conflicts (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    at           TEXT NOT NULL,
    run_id       TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    record       TEXT NOT NULL,
    field        TEXT NOT NULL,
    base         TEXT NOT NULL,
    crm_value    TEXT NOT NULL,
    google_value TEXT NOT NULL,
    resolution   TEXT NOT NULL,
    policy       TEXT NOT NULL
);

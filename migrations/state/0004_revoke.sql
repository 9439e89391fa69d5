-- Offboarding and account safety (issue 9).
--
-- 1. The revocation outbox: one row per (user, Google account) whose crmsync data must leave
--    that account — queued on deactivation, removal from the CRM, an account change or clear,
--    or `crmsync revoke`. Any later pass drains it; a row stays open (queued or paused) until
--    the account holds nothing of ours, verified by listing, and then keeps the receipt.
-- 2. `sync_users` learns when a user was revoked (status shows it), the sync token of the
--    dedicated calendar's ACL (the leak guard's cheap incremental check) and why a user's
--    sync is paused.
-- 3. Links gain the state `pending_link`: written before a pre-existing phone contact is
--    marked as ours (dedup), so a crash between Google's write and the commit never leaves a
--    user's own contact looking like one crmsync created (which pull-back would delete).
--    SQLite cannot change a CHECK constraint in place, so the table is rebuilt.

CREATE TABLE revocations (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id        TEXT    NOT NULL,
    google_account TEXT    NOT NULL,
    reason         TEXT    NOT NULL CHECK (reason IN
                       ('deactivated', 'removed', 'account_changed', 'account_cleared', 'manual')),
    state          TEXT    NOT NULL CHECK (state IN ('queued', 'paused', 'done', 'cancelled')),
    paused_reason  TEXT,
    queued_at      TEXT    NOT NULL,
    started_at     TEXT,
    attempts       INTEGER NOT NULL DEFAULT 0,
    last_error     TEXT,
    inventory      TEXT,
    receipt        TEXT,
    finished_at    TEXT
);
CREATE UNIQUE INDEX revocations_open ON revocations (user_id, google_account)
    WHERE state IN ('queued', 'paused');
CREATE INDEX revocations_by_user ON revocations (user_id, id);

ALTER TABLE sync_users ADD COLUMN revoked_at TEXT;
ALTER TABLE sync_users ADD COLUMN revoked_reason TEXT;
ALTER TABLE sync_users ADD COLUMN acl_sync_token TEXT;

CREATE TABLE links_new (
    user_id     TEXT    NOT NULL,
    kind        TEXT    NOT NULL CHECK (kind IN ('contact', 'event')),
    crm_id      TEXT    NOT NULL,
    state       TEXT    NOT NULL CHECK (state IN
                    ('pending_create', 'pending_link', 'linked', 'unlinked')),
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
INSERT INTO links_new SELECT user_id, kind, crm_id, state, google_id, etag, generation, base,
    base_hash, crm_version, origin, pre_link, updated_at FROM links;
DROP TABLE links;
ALTER TABLE links_new RENAME TO links;
CREATE UNIQUE INDEX links_by_google_id ON links (user_id, kind, google_id)
    WHERE google_id IS NOT NULL;

-- The sync worker (`crmsync run`, issue 8): what each user is owed, so that a restart
-- resumes instead of starting over. One row per user the worker has scheduled:
-- `pending` holds the reasons (labels, JSON) a cycle found for a pass it did not finish;
-- `failures` and `next_attempt_at` are the per-user backoff; `last_poll_at` and
-- `last_reconcile_at` drive the staggered phone poll and full reconciliation. The point of
-- the CRM's change feed the worker has processed is the setting `worker_cursor`.
CREATE TABLE worker_users (
    user_id           TEXT PRIMARY KEY,
    pending           TEXT,
    failures          INTEGER NOT NULL DEFAULT 0,
    next_attempt_at   TEXT,
    last_poll_at      TEXT,
    last_reconcile_at TEXT
);

-- A changed record's holders are looked up by (kind, crm_id) on every cycle that changed it.
CREATE INDEX links_by_record ON links (kind, crm_id);

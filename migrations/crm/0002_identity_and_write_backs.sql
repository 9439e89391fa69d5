-- Guards against operator mistakes.
-- 1. Identity: every embedded CRM gets a random instance id, once, here. The state DB records
--    the id of the CRM it mirrors and refuses a different CRM behind the same path.
-- 2. A journal of write-backs (phone edits, imports and deletes the engine wrote into this
--    CRM), and the feed version of the last org-file load, so that re-loading an older org
--    file can say which write-backs it would undo instead of silently reverting them.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
INSERT INTO meta (key, value) VALUES ('instance_id', lower(hex(randomblob(16))));

CREATE TABLE write_backs (
    version     INTEGER PRIMARY KEY,
    kind        TEXT NOT NULL,
    id          TEXT NOT NULL,
    action      TEXT NOT NULL CHECK (action IN ('update', 'create', 'delete')),
    fields      TEXT NOT NULL,
    acting_user TEXT NOT NULL,
    at          TEXT NOT NULL
);
CREATE INDEX write_backs_by_record ON write_backs (kind, id);

-- Everything an existing CRM holds so far counts as loaded.
INSERT INTO counters (name, value)
    SELECT 'last_load', value FROM counters WHERE name = 'version';

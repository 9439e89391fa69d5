-- A connector's shadow of a hosted CRM (Insightly, amoCRM, …) is a database in the embedded
-- CRM's format (crm/0001_entities.sql: entities, versions, tombstones, one change feed), plus
-- the small state of its reads kept here: per reader and kind the high-water mark of the CRM's
-- change stamps (incremental reads), and when the last full reconciliation finished.
CREATE TABLE connector_state (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

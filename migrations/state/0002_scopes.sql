-- Sync scopes: admins override a user's scope settings (contact/event selection, direction,
-- event window, conflict and phone-delete policies) with `crmsync scope set`. Defaults live
-- in the config file; only the per-user overrides are state, one row per (user, setting),
-- so `scope show` can say which settings a user overrides. The value is the setting's JSON.
CREATE TABLE scope_overrides (
    user_id  TEXT NOT NULL,
    key      TEXT NOT NULL,
    value    TEXT NOT NULL,
    set_at   TEXT NOT NULL,
    PRIMARY KEY (user_id, key)
);

-- The fingerprint of the effective scope each user was last synced under: when the current
-- fingerprint differs, the scope changed and the next pass adds / removes accordingly.
CREATE TABLE scope_fingerprints (
    user_id     TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    recorded_at TEXT NOT NULL
);

-- When the calendar leak guard last found a user's dedicated calendar shared with nobody but
-- its owner (RFC 3339; NULL: not since the ACL sync token was last dropped). The guard runs
-- again once a turn of `[sync] acl_check_minutes` has passed since then.
ALTER TABLE sync_users ADD COLUMN acl_checked_at TEXT;

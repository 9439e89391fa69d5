-- Incremental planning (issue 12): a pass plans a user in full only when something the plan
-- depends on may have changed. `planned_cursor` is the mirror cursor at which the user's last
-- full plan was carried out completely (every item through, both sync tokens committed);
-- `planned_at` is when. NULL means "unknown: plan in full". A pass that finds the user's
-- listings quiet (no changes beyond the echoes of our own writes), the mirror unchanged for
-- them since `planned_cursor`, the same scope and nothing pending skips the plan. Users that
-- a mirror update does not affect have their cursor moved forward with it.
ALTER TABLE sync_users ADD COLUMN planned_cursor INTEGER;
ALTER TABLE sync_users ADD COLUMN planned_at TEXT;

-- A partial index of the links still pending (a create or link sent but not confirmed): every
-- pass asks whether a user has any, and without it that question reads all of the user's links
-- (tens of thousands for a large user), which made a quiet pass cost more the more a user held.
CREATE INDEX links_pending ON links (user_id, kind)
    WHERE state IN ('pending_create', 'pending_link');

-- ICS feeds: a user may have one read-only calendar subscription URL
-- (`/ics/<secret>.ics`). The secret is shown once by `crmsync feed create|rotate` and only its
-- SHA-256 is kept here, so a copy of the state DB does not hand out anyone's calendar.
-- Rotating replaces the hash (the old URL stops working at once); revoking, or the user
-- leaving or being deactivated in the CRM, deletes the row.
CREATE TABLE ics_feeds (
    user_id         TEXT PRIMARY KEY,
    secret_hash     TEXT NOT NULL UNIQUE,
    created_at      TEXT NOT NULL,
    rotated_at      TEXT,
    last_fetched_at TEXT
);

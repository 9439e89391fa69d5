//! crmsync: permission-aware two-way sync of CRM contacts and events into Google.

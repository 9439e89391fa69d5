//! crmsync: permission-aware two-way sync of CRM contacts and events into Google.

pub mod emulator;
pub mod google;

//! crmsync: permission-aware two-way sync of CRM contacts and events into Google.
//!
//! See `ARCHITECTURE.md` for the bird's-eye view and the code map.

pub mod config;
pub mod crm;
pub mod db;
pub mod demo;
pub mod emulator;
pub mod google;
pub mod ics;
pub mod mirror;
pub mod model;
mod multipart;
pub mod revoke;
pub mod scope;
pub mod security;
pub mod store;
pub mod sync;
pub mod worker;

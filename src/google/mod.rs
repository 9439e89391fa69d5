//! The Google side: mapping between synced forms and Google's types, the retry policy, and
//! `GoogleRemote`, the engine's `Remote` on Calendar v3 and People v1.

pub mod mapping;

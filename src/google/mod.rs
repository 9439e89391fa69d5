//! Google side of crmsync: authentication (service-account impersonation through yup-oauth2)
//! and the official Calendar/People hubs pointed at Google or at the emulator.

pub mod auth;
pub mod batch;
pub mod classify;
pub mod hub;
pub mod mapping;
pub mod release;
pub mod remote;
pub mod retry;

//! The sync engine: desired sets, the pure planner, the three-way merge, and the executor.

pub mod affected;
pub mod dedup;
pub mod desired;
pub mod engine;
pub mod execute;
pub mod merge;
pub mod observe;
pub mod pass_model;
pub mod plan;
pub mod remote;
pub mod report;
pub mod turns;
pub mod undo;

//! The adapter process: discovers the table's stream, reads its shards in
//! lineage order, delivers each record as a CloudEvent, and keeps progress so a
//! restart loses nothing.

pub mod aws;
pub mod configmap_store;
pub mod events;
pub mod ops;
pub mod progress;
pub mod reading;
pub mod runtime;
pub mod settings;
pub mod supervisor;
mod window;
pub mod worker;

pub use runtime::{AdapterError, run};
pub use settings::{CheckpointLocation, Config, LogFormat, RawSettings, SettingError};

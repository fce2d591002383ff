//! The adapter process: discovers the table's stream, reads its shards in
//! lineage order, delivers each record as a CloudEvent, and keeps progress so a
//! restart loses nothing.
//!
//! [`run`] wires the parts: [`Config`] (settings), the supervisor (discovery
//! and one task per readable shard), each shard task (reading ahead on the
//! reading thread, delivering by item key on the main one), progress (the
//! checkpoint) and health.

mod configmap_store;
mod connection_pool;
mod health;
mod lease;
mod progress;
mod reading;
mod run;
mod sdk_config;
mod settings;
mod shard_task;
mod source_events;
mod summary;
mod supervisor;
mod window;

pub use configmap_store::{ConfigMapCheckpointStore, DATA_KEY};
pub use run::{AdapterError, run};
pub use settings::{CheckpointLocation, Config, LogFormat, RawSettings, Replay, SettingError};

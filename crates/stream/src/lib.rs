//! Reading a DynamoDB Stream: which shards exist, in which order they may be
//! read, where each one resumes, and the records they hold.
//!
//! The AWS client lives at the edge ([`StreamClient`]); lineage ([`lineage`])
//! and resume decisions ([`checkpoint`]) are pure so they are tested without a
//! server. Each public type has one path: a module is public when it is a
//! namespace of its own (the checkpoint document and its stores, lineage
//! planning, reading a shard, metrics), and the rest is re-exported here.

mod capture;
pub mod checkpoint;
mod client;
mod file_store;
mod held;
mod ids;
pub mod lineage;
mod listing;
pub mod merge;
pub mod metrics;
mod read_size;
pub mod reader;
mod record;
mod wire;

pub use client::{StreamClient, StreamError, StreamInfo, StreamStatus};
pub use file_store::FileCheckpointStore;
pub use held::{DEFAULT_RECORDS_HELD, Held, RecordsHeld};
pub use ids::{SequenceNumber, ShardId};
pub use listing::{Listed, Listing};
pub use read_size::{DEFAULT_BUDGET, ReadSize};
pub use record::{
    AttributeValue, Image, Item, MalformedRecord, NotAnObject, StreamRecord, UserIdentity,
};

//! Reading a DynamoDB Stream: which shards exist, in which order they may be
//! read, where each one resumes, and the records they hold.
//!
//! The AWS client lives at the edge ([`client`]); lineage ([`lineage`]) and
//! resume decisions ([`checkpoint`]) are pure so they are tested without a server.

mod capture;
pub mod checkpoint;
pub mod client;
pub mod file_store;
pub mod held;
pub mod ids;
pub mod lineage;
pub mod listing;
pub mod metrics;
pub mod read_size;
pub mod reader;
pub mod record;
pub mod wire;

pub use checkpoint::{Checkpoint, CheckpointError, CheckpointStore, ShardProgress};
pub use client::{StreamClient, StreamError, StreamInfo, StreamStatus};
pub use file_store::FileCheckpointStore;
pub use held::{Held, RecordsHeld};
pub use ids::{SequenceNumber, ShardId};
pub use lineage::{Assignment, Shard, StartAt};
pub use listing::{Listed, Listing};
pub use read_size::ReadSize;
pub use reader::{Batch, ShardReader};
pub use record::{AttributeValue, Item, MalformedRecord, StreamRecord, UserIdentity};

//! The vocabulary shared by every part of dynamodb-source.
//!
//! These types are parsed once at a boundary (an environment variable, a
//! custom resource field) and trusted everywhere else, so a malformed value
//! is reported where it was written rather than deep inside the adapter.

//!
//! Each public type has one path: the resource's types are under
//! [`resource`], the rest is re-exported here; `adapter_env`, `crd` and
//! `secret_url` are namespaces of constants and functions.

pub mod adapter_env;
mod arn;
pub mod crd;
mod filter_pattern;
mod options;
mod report;
pub mod secret_url;
pub mod summary;

pub use arn::{ArnError, Partition, SourceArn, StreamArn, TableArn, TableName};
pub use filter_pattern::{FilterPatterns, Pattern, PatternError, Problem as PatternProblem};
pub use options::{EventName, EventNameFilter, OptionError, PayloadFormat, StartingPosition};
pub use report::Report;

/// The CloudEvent type of every event the source emits.
pub const EVENT_TYPE: &str = "com.amazon.dynamodb.stream_record";
// The JsonSchema derive re-declares some of these types in a private scope,
// which unreachable_pub reports; they are public through this module.
#[allow(unreachable_pub)]
pub mod resource;

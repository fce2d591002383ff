//! From stream record to acknowledged CloudEvent: the event and its payload
//! formats (pure), and delivery to the sink with retries and a dead-letter sink.

//!
//! Each public type has one path: `format` (the payload formats, golden-tested
//! on their own) and `metrics` are namespaces; the rest is re-exported here.

mod binary;
mod connection;
mod deliverer;
mod endpoint;
mod event;
pub mod format;
mod key;
pub mod metrics;
mod overrides;
mod policy;
mod sink;

pub use binary::EncodeError;
pub use connection::{Connector, ExchangeError};
pub use deliverer::{Connections, Deliverer, Outcome, Pacing, Prepared};
pub use endpoint::{Endpoint, EndpointError};
pub use event::{
    EXT_OPERATION, EXT_PARTITION_KEY, EXT_SEQUENCE, EventError, EventFactory, RecordEvent,
};
pub use overrides::{CeOverrides, OverridesError};
pub use policy::{BackoffPolicy, DeliveryPolicy, PolicyError, parse_duration};
pub use sink::{Attempt, Sink, SinkError, connector};

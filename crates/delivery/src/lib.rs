//! From stream record to acknowledged CloudEvent: the event and its payload
//! formats (pure), and delivery to the sink with retries and a dead-letter sink.

pub mod binary;
pub mod connection;
pub mod deliverer;
pub mod endpoint;
pub mod event;
pub mod format;
pub mod key;
pub mod metrics;
pub mod overrides;
pub mod policy;
pub mod sink;

pub use deliverer::{Connections, Deliverer, Outcome, Pacing, Prepared};
pub use endpoint::{Endpoint, EndpointError};
pub use event::{EventError, EventFactory};
pub use overrides::{CeOverrides, OverridesError};
pub use policy::{BackoffPolicy, DeliveryPolicy, PolicyError};
pub use sink::{Attempt, Sink, SinkError};

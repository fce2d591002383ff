//! The controller: turns each `AWSDynamoDBSource` into a running, correctly
//! configured adapter and reports an honest status.
//!
//! Pure parts (`builders`, `status`, `names`) decide; `reconcile` gathers
//! observations and applies; `operator` ([`run`]) wires the loop and
//! leadership.

mod builders;
mod destination;
mod leader;
mod metrics;
mod names;
mod operator;
mod reconcile;
mod status;

pub use leader::LeaseSettings;
pub use operator::{ControllerConfig, RunError, run};

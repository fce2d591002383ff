//! The controller: turns each `AWSDynamoDBSource` into a running, correctly
//! configured adapter and reports an honest status.
//!
//! Pure parts ([`builders`], [`status`], [`names`]) decide; [`reconcile`]
//! gathers observations and applies; [`run`] wires the loop and leadership.

pub mod builders;
pub mod leader;
pub mod metrics;
pub mod names;
pub mod reconcile;
pub mod run;
pub mod sink;
pub mod status;

pub use run::{ControllerConfig, RunError, run};

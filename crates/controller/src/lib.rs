//! The controller: turns each `AWSDynamoDBSource` into a running, correctly
//! configured adapter and reports an honest status.
//!
//! Pure parts (`builders`, `status`, `names`) decide; `reconcile` gathers
//! observations and applies; `operator` ([`run`]) wires the loop and
//! leadership; `admission` decides what the webhook (`webhook`) answers.

mod admission;
mod builders;
mod destination;
mod leader;
mod metrics;
mod names;
mod operator;
mod reconcile;
mod status;
mod webhook;

pub use leader::LeaseSettings;
pub use names::ADAPTER_LEASES_CLUSTER_ROLE;
pub use operator::{ControllerConfig, RunError, run};
pub use webhook::{PATH as WEBHOOK_PATH, WebhookSettings};

//! Leader election on a `coordination.k8s.io` Lease, so several controller
//! replicas are safe: one reconciles, the others wait to take over.
//!
//! The algorithm is client-go's: whoever holds an unexpired Lease leads; the
//! holder renews it well within its duration; an expired Lease may be taken
//! by anyone, and optimistic concurrency on `resourceVersion` makes exactly
//! one contender win.

use dynamodb_source_api::Report;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::PostParams;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

#[derive(Debug, Clone)]
pub struct LeaseSettings {
    pub name: String,
    pub identity: String,
    /// How long a Lease stays valid without renewal.
    pub duration: Duration,
    /// How often the leader renews, and contenders retry.
    pub retry: Duration,
}

pub(crate) struct Elector {
    api: Api<Lease>,
    settings: LeaseSettings,
}

enum Claim {
    Acquired,
    HeldByOther(String),
}

impl Elector {
    pub(crate) fn new(api: Api<Lease>, settings: LeaseSettings) -> Self {
        Elector { api, settings }
    }

    fn spec(&self, now: Timestamp, transitions: i32, acquired: Option<MicroTime>) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.settings.identity.clone()),
            lease_duration_seconds: Some(
                i32::try_from(self.settings.duration.as_secs()).unwrap_or(15),
            ),
            acquire_time: acquired.or(Some(MicroTime(now))),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    async fn try_acquire_or_renew(&self) -> Result<Claim, kube::Error> {
        let now = Timestamp::now();
        let Some(mut lease) = self.api.get_opt(&self.settings.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.settings.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.spec(now, 0, None)),
            };
            self.api.create(&PostParams::default(), &lease).await?;
            return Ok(Claim::Acquired);
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let ours = holder == self.settings.identity;
        let expired = match (&spec.renew_time, spec.lease_duration_seconds) {
            (Some(renewed), Some(seconds)) => {
                let valid_until =
                    renewed.0 + Duration::from_secs(u64::try_from(seconds).unwrap_or(0));
                valid_until < now
            }
            _ => true,
        };
        if !ours && !holder.is_empty() && !expired {
            return Ok(Claim::HeldByOther(holder));
        }
        let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(!ours);
        let acquired = if ours {
            spec.acquire_time.clone()
        } else {
            None
        };
        lease.spec = Some(self.spec(now, transitions, acquired));
        // `replace` carries the resourceVersion we read: a concurrent writer makes it fail.
        self.api
            .replace(&self.settings.name, &PostParams::default(), &lease)
            .await?;
        Ok(Claim::Acquired)
    }

    /// Waits until this replica leads; `false` if `stop` came first.
    pub(crate) async fn acquire(&self, stop: &CancellationToken) -> bool {
        loop {
            match self.try_acquire_or_renew().await {
                Ok(Claim::Acquired) => {
                    info!(lease = %self.settings.name, identity = %self.settings.identity, "became the leader");
                    return true;
                }
                Ok(Claim::HeldByOther(holder)) => debug!(%holder, "another replica leads"),
                Err(e) => debug!(error = %Report(&e), "leader election attempt failed"),
            }
            tokio::select! {
                _ = tokio::time::sleep(self.settings.retry) => {}
                _ = stop.cancelled() => return false,
            }
        }
    }

    /// Renews until `stop`, or until renewal fails for longer than the Lease
    /// lasts (then another replica may already lead): returns whether
    /// leadership was lost.
    pub(crate) async fn hold(&self, stop: &CancellationToken) -> bool {
        let mut last_renewal = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.settings.retry) => {}
                _ = stop.cancelled() => return false,
            }
            match self.try_acquire_or_renew().await {
                Ok(Claim::Acquired) => last_renewal = tokio::time::Instant::now(),
                Ok(Claim::HeldByOther(holder)) => {
                    warn!(%holder, "the Lease was taken over");
                    return true;
                }
                Err(e) => {
                    warn!(error = %Report(&e), "renewing the Lease failed");
                    // Stop before the Lease can expire, so two leaders never overlap.
                    if last_renewal.elapsed() + self.settings.retry >= self.settings.duration {
                        return true;
                    }
                }
            }
        }
    }

    /// Gives the Lease up at shutdown so a standby takes over at once.
    pub(crate) async fn release(&self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.settings.name).await else {
            return;
        };
        let Some(spec) = lease.spec.as_mut() else {
            return;
        };
        if spec.holder_identity.as_deref() != Some(self.settings.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        if let Err(e) = self
            .api
            .replace(&self.settings.name, &PostParams::default(), &lease)
            .await
        {
            warn!(error = %Report(&e), "releasing the Lease failed; it expires by itself");
        } else {
            info!("released the leader Lease");
        }
    }
}

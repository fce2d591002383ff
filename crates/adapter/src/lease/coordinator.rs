//! The coordinator: one task per replica that lists the source's shard
//! leases every round, renews its own, keeps the renewal deadline, collects
//! the leases of finished shards, balances, and lets leases go once a shard's
//! progress is saved (see the module documentation of [`super`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dynamodb_source_api::Report;
use dynamodb_source_stream::ShardId;
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::metrics::{Change, LeaseMetrics};
use super::{Ended, HeldShards, Leases, Owner, Timing, balance, object};
use crate::progress::Progress;
use crate::source_events::SourceEvents;

/// Most shards a replica asks others for in one round. A hand-over is
/// graceful (stop, save, pass), so the bound is about churn, not safety: a
/// replica joining a source of 256 shards over 4 replicas needs 64.
const MAX_ASKS_PER_ROUND: usize = 64;

/// Lease writes in flight at once.
const CONCURRENT_WRITES: usize = 16;
/// What this replica holds of one shard.
struct Held {
    lease: Lease,
    /// When the last successful renewal (or take) was sent.
    renewed: Option<Instant>,
    state: HeldState,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HeldState {
    Reading,
    /// Asked for by `to`: reading stops, then the lease is passed.
    HandingOver {
        to: String,
    },
    /// Read to its end or gone: deleted once saved.
    Done,
}

/// Takes, renews, balances and passes on this replica's shard leases.
pub(crate) struct Coordinator {
    api: Api<Lease>,
    owner: Owner,
    timing: Timing,
    progress: Arc<Progress>,
    held_shards: HeldShards,
    metrics: LeaseMetrics,
    events: Option<SourceEvents>,
    readable: watch::Receiver<BTreeSet<ShardId>>,
    allowed: watch::Sender<BTreeSet<ShardId>>,
    ended: mpsc::UnboundedReceiver<(ShardId, Ended)>,
    held: BTreeMap<ShardId, Held>,
    /// Per lease name: its `resourceVersion` and since when this replica has
    /// seen it unchanged.
    seen: HashMap<String, (String, Instant)>,
    /// When this replica last gave a lease to one that asked: it asks for
    /// none itself for two rounds after, or replicas starting together pass
    /// shards back and forth while their counts settle.
    last_given: Option<Instant>,
    /// The adapter is shutting down: nothing more is taken or asked for.
    stopping: CancellationToken,
    /// When the first lease another replica holds expires if it is not
    /// renewed before: a round then takes it over without waiting for the
    /// next tick.
    next_expiry: Option<Instant>,
}

impl Coordinator {
    pub(crate) fn new(
        client: kube::Client,
        owner: Owner,
        timing: Timing,
        progress: Arc<Progress>,
        held_shards: HeldShards,
        metrics: LeaseMetrics,
        events: Option<SourceEvents>,
    ) -> (Coordinator, Leases) {
        let (readable_tx, readable_rx) = watch::channel(BTreeSet::new());
        let (allowed_tx, allowed_rx) = watch::channel(BTreeSet::new());
        let (ended_tx, ended_rx) = mpsc::unbounded_channel();
        let coordinator = Coordinator {
            api: Api::namespaced(client, &owner.namespace),
            owner,
            timing,
            progress,
            held_shards,
            metrics,
            events,
            readable: readable_rx,
            allowed: allowed_tx,
            ended: ended_rx,
            held: BTreeMap::new(),
            seen: HashMap::new(),
            last_given: None,
            stopping: CancellationToken::new(),
            next_expiry: None,
        };
        let leases = Leases {
            readable: readable_tx,
            allowed: allowed_rx,
            ended: ended_tx,
        };
        (coordinator, leases)
    }

    /// Runs rounds until `stop`, then returns itself so that the caller can
    /// release the leases once the final checkpoint is saved.
    ///
    /// Once `stopping` (the adapter's shutdown) it takes and asks for nothing
    /// more, but goes on renewing what it holds until the checkpoint is saved.
    pub(crate) async fn run(
        mut self,
        stopping: CancellationToken,
        stop: CancellationToken,
    ) -> Coordinator {
        self.stopping = stopping;
        info!(identity = %self.owner.identity, duration = ?self.timing.duration, "sharing shards through leases");
        let mut ticks = tokio::time::interval(self.timing.round);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => self.round().await,
                () = sleep_until(self.next_expiry), if self.next_expiry.is_some() => {
                    self.round().await;
                }
                Some((shard, how)) = self.ended.recv() => self.on_ended(shard, how).await,
                Ok(()) = self.readable.changed() => {
                    // Newly readable shards are taken now, not a round later.
                    self.round().await;
                    ticks.reset();
                }
                _ = stop.cancelled() => break,
            }
        }
        self
    }

    /// Releases every lease held (passing those asked for to the asker),
    /// once the final checkpoint was saved.
    pub(crate) async fn release_all(mut self) {
        let now = Timestamp::now();
        let duration = self.owner.duration_seconds;
        let mut held = std::mem::take(&mut self.held);
        // Passed to this replica since its last round (it asked before it
        // began to stop): released too. Its own asks are withdrawn, so that
        // nothing more is passed to a replica about to exit.
        match self.list().await {
            Ok(listed) => {
                for (shard, lease) in listed {
                    if object::holder(&lease) == Some(self.owner.identity.as_str()) {
                        held.entry(shard).or_insert(Held {
                            lease,
                            renewed: None,
                            state: HeldState::Reading,
                        });
                    } else if object::handoff_to(&lease) == Some(self.owner.identity.as_str()) {
                        let name = lease.metadata.name.clone().unwrap_or_default();
                        let withdraw = serde_json::json!({"metadata": {"annotations": {object::HANDOFF_ANNOTATION: null}}});
                        if let Err(e) = self
                            .api
                            .patch(&name, &PatchParams::default(), &Patch::Merge(&withdraw))
                            .await
                        {
                            debug!(shard = %shard, error = %Report(&e), "withdrawing an ask failed");
                        }
                    }
                }
            }
            Err(e) => {
                warn!(error = %Report(&e), "listing shard leases before releasing them failed")
            }
        }
        let mut writes = Vec::new();
        for (shard, held) in held {
            let api = self.api.clone();
            let name = held.lease.metadata.name.clone().unwrap_or_default();
            let how = match &held.state {
                HeldState::Done => PassOn::Delete,
                HeldState::HandingOver { to } => PassOn::To(Some(to.clone())),
                HeldState::Reading => PassOn::To(None),
            };
            let me = self.owner.identity.clone();
            writes.push(async move {
                let result = pass_on(&api, held.lease, how, &me, duration, now).await;
                (shard, name, result)
            });
        }
        let results = concurrently(writes).await;
        let mut released = 0;
        for (shard, name, result) in results {
            match result {
                Ok(()) => {
                    released += 1;
                    self.metrics.count(Change::Released);
                }
                Err(e) => {
                    warn!(shard = %shard, lease = %name, error = %Report(&e), "releasing a shard lease failed; another replica takes it once it expires");
                }
            }
        }
        self.held_shards.set(BTreeSet::new());
        self.metrics.held.set(0);
        info!(released, "shard leases released");
    }

    /// The source's shard leases, by shard.
    async fn list(&self) -> Result<Vec<(ShardId, Lease)>, kube::Error> {
        let list = self
            .api
            .list(&ListParams::default().labels(&format!(
                "{}={}",
                object::SOURCE_LABEL,
                self.owner.source
            )))
            .await?;
        Ok(list
            .items
            .into_iter()
            .filter_map(|lease| Some((object::shard_of(&lease)?, lease)))
            .collect())
    }

    /// One round: see every lease, renew ours, keep the deadline, balance.
    async fn round(&mut self) {
        let listed = match self.list().await {
            Ok(list) => list,
            Err(e) => {
                warn!(error = %Report(&e), "listing shard leases failed");
                self.keep_deadline();
                self.publish().await;
                return;
            }
        };
        let now = Instant::now();
        let mut leases: BTreeMap<ShardId, Lease> = BTreeMap::new();
        let mut names = std::collections::HashSet::new();
        for (shard, lease) in listed {
            let Some(name) = lease.metadata.name.clone() else {
                continue;
            };
            let version = lease.metadata.resource_version.clone().unwrap_or_default();
            match self.seen.get(&name) {
                Some((seen, _)) if *seen == version => {}
                _ => {
                    self.seen.insert(name.clone(), (version, now));
                }
            }
            names.insert(name);
            leases.insert(shard, lease);
        }
        self.seen.retain(|name, _| names.contains(name));
        self.next_expiry = leases
            .values()
            .filter(|lease| {
                object::holder(lease).is_some_and(|h| h != self.owner.identity.as_str())
            })
            .filter_map(|lease| {
                let (_, since) = self.seen.get(lease.metadata.name.as_deref()?)?;
                let duration = object::duration_seconds(lease)
                    .and_then(|s| u64::try_from(s).ok())
                    .map_or(self.timing.duration, Duration::from_secs);
                Some(*since + duration)
            })
            .filter(|at| *at > now)
            .min();

        self.follow(&leases);
        self.renew().await;
        self.keep_deadline();
        self.collect(&leases).await;
        self.balance(&leases).await;
        self.publish().await;
    }

    /// Deletes the leases of shards read to their end: held ones (a shard
    /// task that ended before its lease could be deleted, or a delete that
    /// failed), and ones nobody holds any more (a holder that died between
    /// saving the end and deleting).
    async fn collect(&mut self, leases: &BTreeMap<ShardId, Lease>) {
        let now = Instant::now();
        let mut deletes = Vec::new();
        for (shard, lease) in leases {
            if !self.progress.is_finished(shard) {
                continue;
            }
            let name = lease.metadata.name.clone().unwrap_or_default();
            let expired = self
                .seen
                .get(&name)
                .is_some_and(|(_, since)| now.duration_since(*since) >= self.timing.duration);
            let ours = self.held.remove(shard).map(|held| held.lease);
            if ours.is_some() || object::holder(lease).is_none() || expired {
                let api = self.api.clone();
                let lease = ours.unwrap_or_else(|| lease.clone());
                let shard = shard.clone();
                deletes.push(async move {
                    let result = delete(&api, &lease).await;
                    (shard, result)
                });
            }
        }
        let results = concurrently(deletes).await;
        for (shard, result) in results {
            match result {
                Ok(()) => {
                    debug!(shard = %shard, "deleted the lease of a finished shard");
                    self.metrics.count(Change::Released);
                }
                Err(kube::Error::Api(status)) if status.code == 409 => {}
                Err(e) => {
                    warn!(shard = %shard, error = %Report(&e), "deleting the lease of a finished shard failed");
                }
            }
        }
    }

    /// Takes what the listing says of the leases held: lost ones, hand-overs
    /// asked, and leases passed to this replica.
    fn follow(&mut self, leases: &BTreeMap<ShardId, Lease>) {
        let me = self.owner.identity.clone();
        let lost: Vec<ShardId> = self
            .held
            .keys()
            .filter(|shard| {
                leases
                    .get(*shard)
                    .is_none_or(|lease| object::holder(lease) != Some(me.as_str()))
            })
            .cloned()
            .collect();
        for shard in lost {
            let holder = leases
                .get(&shard)
                .and_then(|l| object::holder(l))
                .unwrap_or("nobody")
                .to_owned();
            warn!(shard = %shard, holder = %holder, "shard lease lost; reading it stops");
            self.held.remove(&shard);
            self.metrics.count(Change::Lost);
        }
        let mut load: HashMap<String, usize> = HashMap::new();
        for lease in leases.values() {
            if let Some(holder) = object::holder(lease) {
                *load.entry(holder.to_owned()).or_default() += 1;
            }
        }
        for (shard, lease) in leases {
            if object::holder(lease) != Some(me.as_str()) {
                continue;
            }
            match self.held.get_mut(shard) {
                Some(held) => {
                    held.lease = lease.clone();
                    if let (HeldState::Reading, Some(to)) = (&held.state, object::handoff_to(lease))
                        && to != me
                    {
                        let mine = load.get(&me).copied().unwrap_or_default();
                        let theirs = load.get(to).copied().unwrap_or_default();
                        if balance::worth_giving(mine, theirs) {
                            info!(shard = %shard, to = %to, "handing the shard over");
                            held.state = HeldState::HandingOver { to: to.to_owned() };
                            load.insert(me.clone(), mine - 1);
                            load.insert(to.to_owned(), theirs + 1);
                        } else {
                            // Asked before the asker got its share some other
                            // way: declined, and the ask is cleared by this
                            // round's renewal.
                            debug!(shard = %shard, to = %to, mine, theirs, "declining an ask that would not even the load");
                            if let Some(annotations) = held.lease.metadata.annotations.as_mut() {
                                annotations.remove(object::HANDOFF_ANNOTATION);
                            }
                        }
                    }
                }
                None => {
                    // Passed to us after we asked, or ours from before a
                    // restart of this container: read once renewed.
                    debug!(shard = %shard, "holding a shard lease passed to this replica");
                    self.metrics.count(Change::Received);
                    self.held.insert(
                        shard.clone(),
                        Held {
                            lease: lease.clone(),
                            renewed: None,
                            state: HeldState::Reading,
                        },
                    );
                }
            }
        }
    }

    async fn renew(&mut self) {
        let duration = self.owner.duration_seconds;
        let mut writes = Vec::new();
        for (shard, held) in &self.held {
            let api = self.api.clone();
            let next = object::renewed(&held.lease, duration, Timestamp::now());
            let shard = shard.clone();
            let me = self.owner.identity.clone();
            writes.push(async move {
                let sent = Instant::now();
                let result = replace(&api, &next).await;
                if matches!(&result, Err(kube::Error::Api(status)) if status.code == 409) {
                    // Changed since read (an ask, usually): renew the
                    // current object if it is still ours.
                    let name = next.metadata.name.clone().unwrap_or_default();
                    if let Ok(current) = api.get(&name).await
                        && object::holder(&current) == Some(me.as_str())
                    {
                        let sent = Instant::now();
                        let retried =
                            replace(&api, &object::renewed(&current, duration, Timestamp::now()))
                                .await;
                        return (shard, sent, retried);
                    }
                }
                (shard, sent, result)
            });
        }
        let results = concurrently(writes).await;
        for (shard, sent, result) in results {
            let Some(held) = self.held.get_mut(&shard) else {
                continue;
            };
            match result {
                Ok(lease) => {
                    held.lease = lease;
                    held.renewed = Some(sent);
                }
                // Changed since listed (a hand-over asked, or taken): the
                // next listing says which.
                Err(kube::Error::Api(status)) if status.code == 409 => {}
                Err(e) => {
                    warn!(shard = %shard, error = %Report(&e), "renewing a shard lease failed");
                }
            }
        }
    }

    /// Stops reading shards whose lease was not renewed in time: a taker may
    /// soon see it expired. A lease that is still ours is renewed again in
    /// a later round and read again then.
    fn keep_deadline(&mut self) {
        let deadline = self.timing.deadline;
        let late: Vec<ShardId> = self
            .held
            .iter()
            .filter(|(_, held)| held.renewed.is_some_and(|at| at.elapsed() >= deadline))
            .map(|(shard, _)| shard.clone())
            .collect();
        for shard in late {
            warn!(shard = %shard, deadline = ?deadline, "shard lease not renewed in time; reading it stops");
            self.held.remove(&shard);
            self.metrics.count(Change::Lost);
        }
    }

    async fn balance(&mut self, leases: &BTreeMap<ShardId, Lease>) {
        if self.stopping.is_cancelled() {
            return;
        }
        let readable = self.readable.borrow().clone();
        let now = Instant::now();
        let seen: BTreeMap<ShardId, balance::Seen> = leases
            .iter()
            .map(|(shard, lease)| {
                let name = lease.metadata.name.clone().unwrap_or_default();
                let duration = object::duration_seconds(lease)
                    .and_then(|s| u64::try_from(s).ok())
                    .map_or(self.timing.duration, Duration::from_secs);
                let expired = self
                    .seen
                    .get(&name)
                    .is_some_and(|(_, since)| now.duration_since(*since) >= duration);
                let held = self.held.contains_key(shard);
                let seen = balance::Seen {
                    holder: if held {
                        Some(self.owner.identity.clone())
                    } else {
                        object::holder(lease).map(str::to_owned)
                    },
                    expired: !held && expired,
                    handoff_asked: object::handoff_to(lease).is_some(),
                };
                (shard.clone(), seen)
            })
            .collect();
        let giving = self
            .held
            .values()
            .any(|held| matches!(held.state, HeldState::HandingOver { .. }))
            || self
                .last_given
                .is_some_and(|at| at.elapsed() < self.timing.round * 2);
        let max_asks = if giving { 0 } else { MAX_ASKS_PER_ROUND };
        let moves = balance::balance(&self.owner.identity, &readable, &seen, max_asks);
        if moves.take.is_empty() && moves.ask.is_empty() {
            return;
        }
        let duration = self.owner.duration_seconds;
        let me = self.owner.identity.clone();
        let mut takes = Vec::new();
        for shard in moves.take.clone() {
            let api = self.api.clone();
            let before = leases
                .get(&shard)
                .and_then(|l| object::holder(l).map(str::to_owned));
            let next = match leases.get(&shard) {
                None => Write::Create(object::new(&self.owner, &shard, Timestamp::now())),
                Some(lease) => {
                    Write::Replace(object::pass(lease, Some(&me), duration, Timestamp::now()))
                }
            };
            takes.push(async move {
                let sent = Instant::now();
                let result = next.send(&api).await;
                (shard, sent, before, result)
            });
        }
        let results = concurrently(takes).await;
        let mut taken_over: BTreeMap<String, Vec<ShardId>> = BTreeMap::new();
        for (shard, sent, before, result) in results {
            match result {
                Ok(lease) => {
                    let change = match &before {
                        Some(holder) if *holder != me => Change::TakenOver,
                        _ => Change::Taken,
                    };
                    self.metrics.count(change);
                    if change == Change::TakenOver {
                        let holder = before.unwrap_or_default();
                        warn!(shard = %shard, from = %holder, "took over the lease of a shard whose holder stopped renewing it");
                        taken_over.entry(holder).or_default().push(shard.clone());
                    } else {
                        debug!(shard = %shard, "took a shard lease");
                    }
                    self.held.insert(
                        shard,
                        Held {
                            lease,
                            renewed: Some(sent),
                            state: HeldState::Reading,
                        },
                    );
                }
                Err(kube::Error::Api(status)) if status.code == 409 => {
                    debug!(shard = %shard, "another replica took the shard lease first");
                }
                Err(e) => warn!(shard = %shard, error = %Report(&e), "taking a shard lease failed"),
            }
        }
        // One Event per replica whose leases expired, not one per shard: a
        // replica of 128 shards dying is one thing to notice.
        if let Some(events) = &self.events {
            for (holder, shards) in &taken_over {
                let named: Vec<&str> = shards.iter().take(5).map(ShardId::as_str).collect();
                let more = shards.len().saturating_sub(named.len());
                let tail = if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                };
                events
                    .normal(
                        "ShardTakenOver",
                        &format!(
                            "{me} took over {} shard(s) whose lease {holder} stopped renewing: {}{tail}",
                            shards.len(),
                            named.join(", ")
                        ),
                    )
                    .await;
            }
        }
        let mut asks = Vec::new();
        for shard in moves.ask {
            let Some(lease) = leases.get(&shard) else {
                continue;
            };
            let api = self.api.clone();
            let name = lease.metadata.name.clone().unwrap_or_default();
            let patch = object::ask_patch(&me);
            asks.push(async move {
                // A merge patch, not conditional on the version listed: the
                // holder renews all the time, and an ask changes nothing it
                // relies on (if the lease changed hands meanwhile, its new
                // holder is asked instead, and balancing goes on from there).
                let result = api
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await;
                (shard, result)
            });
        }
        let results = concurrently(asks).await;
        for (shard, result) in results {
            match result {
                Ok(_) => {
                    debug!(shard = %shard, "asked for a shard");
                    self.metrics.count(Change::Asked);
                }
                Err(kube::Error::Api(status)) if status.code == 409 => {}
                Err(e) => warn!(shard = %shard, error = %Report(&e), "asking for a shard failed"),
            }
        }
    }

    /// A shard task ended: pass on or delete its lease once its progress is
    /// saved.
    async fn on_ended(&mut self, shard: ShardId, how: Ended) {
        let Some(held) = self.held.get_mut(&shard) else {
            return;
        };
        match (how, &held.state) {
            (Ended::Done, _) => held.state = HeldState::Done,
            (Ended::Stopped, HeldState::HandingOver { .. }) => {}
            // Stopped while still ours (its lease was late, or shutdown):
            // the supervisor starts it again when it may.
            (Ended::Stopped, _) => return,
        }
        self.progress.commit();
        if let Err(e) = self.progress.flush().await {
            warn!(shard = %shard, error = %Report(&e), "saving progress before passing a shard lease on failed; the next holder repeats what was delivered since the last save");
        }
        let Some(held) = self.held.remove(&shard) else {
            return;
        };
        let duration = self.owner.duration_seconds;
        let (how, change) = match &held.state {
            HeldState::HandingOver { to } => (PassOn::To(Some(to.clone())), Change::Given),
            _ => (PassOn::Delete, Change::Released),
        };
        let result = pass_on(
            &self.api,
            held.lease,
            how,
            &self.owner.identity,
            duration,
            Timestamp::now(),
        )
        .await
        .map(|()| change);
        match result {
            Ok(change) => {
                info!(shard = %shard, change = change.as_str(), "shard lease passed on");
                if change == Change::Given {
                    self.last_given = Some(Instant::now());
                }
                self.metrics.count(change);
            }
            Err(e) => {
                warn!(shard = %shard, error = %Report(&e), "passing a shard lease on failed; it expires, or is deleted once its shard is finished");
            }
        }
        self.publish().await;
    }

    /// Tells the supervisor which shards it may read, and the progress
    /// writer which it may write.
    ///
    /// A shard newly held takes its progress from the shared document first
    /// (what its last holder saved before passing it on): until then this
    /// replica's copy of it may be old, and written back it would move the
    /// shard backwards.
    async fn publish(&mut self) {
        let mut writable: BTreeSet<ShardId> = self.held.keys().cloned().collect();
        let mut readable: BTreeSet<ShardId> = self
            .held
            .iter()
            .filter(|(_, held)| held.renewed.is_some() && held.state == HeldState::Reading)
            .map(|(shard, _)| shard.clone())
            .collect();
        let new: Vec<ShardId> = writable
            .iter()
            .filter(|shard| !self.held_shards.contains(shard))
            .cloned()
            .collect();
        if !new.is_empty()
            && let Err(e) = self.progress.refresh().await
        {
            warn!(error = %Report(&e), shards = new.len(), "reading the shared checkpoint failed; newly held shards wait for the next round");
            for shard in &new {
                writable.remove(shard);
                readable.remove(shard);
            }
        }
        self.metrics
            .held
            .set(i64::try_from(writable.len()).unwrap_or(i64::MAX));
        self.held_shards.set(writable);
        self.allowed.send_if_modified(|current| {
            let changed = *current != readable;
            *current = readable;
            changed
        });
    }
}

/// How a holder lets a lease go.
enum PassOn {
    /// To the replica that asked (`None`: released to whoever takes it).
    To(Option<String>),
    /// Deleted: its shard was read to the end.
    Delete,
}

/// Lets `lease` go. Other replicas write the lease too (asks), so a
/// conflict re-reads it and tries again while it is still ours; a release
/// goes to whoever asked meanwhile.
async fn pass_on(
    api: &Api<Lease>,
    mut lease: Lease,
    how: PassOn,
    me: &str,
    duration: i32,
    now: Timestamp,
) -> Result<(), kube::Error> {
    let name = lease.metadata.name.clone().unwrap_or_default();
    let mut attempts = 0;
    loop {
        attempts += 1;
        let result = match &how {
            PassOn::Delete => delete(api, &lease).await,
            PassOn::To(to) => {
                let to = to
                    .clone()
                    .or_else(|| object::handoff_to(&lease).map(str::to_owned));
                replace(api, &object::pass(&lease, to.as_deref(), duration, now))
                    .await
                    .map(drop)
            }
        };
        match result {
            Err(kube::Error::Api(status)) if status.code == 409 && attempts < 4 => {
                lease = api.get(&name).await?;
                if object::holder(&lease) != Some(me) {
                    // Not ours any more: nothing left to let go.
                    return Ok(());
                }
            }
            other => return other,
        }
    }
}

/// One write of a Lease, owned so that many can be in flight at once.
enum Write {
    Create(Lease),
    Replace(Lease),
}

impl Write {
    /// The Lease as stored.
    async fn send(self, api: &Api<Lease>) -> Result<Lease, kube::Error> {
        match self {
            Write::Create(lease) => api.create(&PostParams::default(), &lease).await,
            Write::Replace(lease) => replace(api, &lease).await,
        }
    }
}

/// Runs `writes` at most [`CONCURRENT_WRITES`] at a time; their results in
/// the order they finish.
async fn concurrently<F: Future>(writes: Vec<F>) -> Vec<F::Output> {
    futures::stream::iter(writes)
        .buffer_unordered(CONCURRENT_WRITES)
        .collect()
        .await
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

async fn replace(api: &Api<Lease>, lease: &Lease) -> Result<Lease, kube::Error> {
    let name = lease.metadata.name.clone().unwrap_or_default();
    api.replace(&name, &PostParams::default(), lease).await
}

async fn delete(api: &Api<Lease>, lease: &Lease) -> Result<(), kube::Error> {
    let name = lease.metadata.name.clone().unwrap_or_default();
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            resource_version: lease.metadata.resource_version.clone(),
            uid: lease.metadata.uid.clone(),
        }),
        ..DeleteParams::default()
    };
    match api.delete(&name, &params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

//! One checkpoint document, several writers: the replicas of a source that
//! share its shards through leases each write, into the stored document, only
//! the shards they hold, and take everybody else's from it.
//!
//! The lease of a shard names its one reader, so the entry of a shard has one
//! writer at a time and the stored value of a held shard is the holder's. A
//! shard changes hands only after its holder saved (a hand-over) or stopped
//! reading (an expired lease); the next holder takes the stored entry.
//!
//! What is not per shard:
//! - the stream: a newer stream (the table's stream was replaced) wins, and a
//!   replica still on the older one writes nothing of it;
//! - the replay: applied by one replica to the whole document at its start
//!   ([`Merge::Everything`]); a replica that does not carry the stored replay's
//!   token (an older one, about to be replaced by a rollout) writes no shard,
//!   its progress belongs to a history that was restarted;
//! - shards forgotten (gone, or finished and unlisted past the retention):
//!   whoever proved it removes the entry, held or not;
//! - first positions at `LATEST`: the first replica to record one for a shard
//!   nobody wrote yet records it for everybody, so that a first start does not
//!   read from `TRIM_HORIZON` the shards another replica takes later.

use std::collections::BTreeSet;

use crate::checkpoint::{Checkpoint, ShardProgress};
use crate::ids::ShardId;

/// What of the local document a save writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merge {
    /// Everything: a replay was just applied to every shard.
    Everything,
    /// The shards this replica holds.
    Held,
}

/// What a merge did with the local document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Merged {
    /// The stored document now carries the held shards' progress.
    Written,
    /// The stored document moved on (another stream, another replay): the
    /// local progress is stale and nothing of it was written.
    Stale(String),
}

/// Writes into `stored` what `local` may write of itself (see the module
/// documentation). `held` says which shards this replica holds; `forgotten`
/// lists the shards it proved gone since its last save.
pub fn merge_into(
    stored: &mut Checkpoint,
    local: &Checkpoint,
    what: Merge,
    held: impl Fn(&ShardId) -> bool,
    forgotten: &BTreeSet<ShardId>,
) -> Merged {
    if what == Merge::Everything {
        *stored = local.clone();
        return Merged::Written;
    }
    if stored.stream_arn != local.stream_arn {
        if stored.stream_arn.label() > local.stream_arn.label() {
            return Merged::Stale(format!(
                "the stored checkpoint reads stream {}, newer than {}",
                stored.stream_arn, local.stream_arn
            ));
        }
        let replay = stored.replay.take();
        *stored = Checkpoint::new(local.stream_arn.clone());
        stored.replay = replay;
    }
    let token = |c: &Checkpoint| c.replay.as_ref().map(|r| r.token.clone());
    if stored.replay.is_some() && token(stored) != token(local) {
        return Merged::Stale(format!(
            "the stored checkpoint applied replay {:?}, this replica carries {:?}",
            token(stored).unwrap_or_default(),
            token(local).unwrap_or_default()
        ));
    }
    if stored.replay.is_none() {
        stored.replay = local.replay.clone();
    }
    for shard in forgotten {
        stored.forget(shard);
    }
    for (shard, progress) in &local.shards {
        if held(shard) {
            stored.shards.insert(shard.clone(), progress.clone());
        } else if matches!(progress, ShardProgress::LatestSince(_)) && !forgotten.contains(shard) {
            stored
                .shards
                .entry(shard.clone())
                .or_insert_with(|| progress.clone());
        }
    }
    for (shard, since) in &local.unlisted_since {
        if stored.shards.contains_key(shard) {
            let entry = stored.unlisted_since.entry(shard.clone()).or_insert(*since);
            *entry = (*entry).min(*since);
        }
    }
    Merged::Written
}

/// Takes into `local` what others wrote: every shard this replica does not
/// hold is set to its stored value (or removed when the document has none,
/// unless it is a first position not saved yet); held shards keep the local
/// value, which is ahead of the stored one.
pub fn adopt(local: &mut Checkpoint, stored: &Checkpoint, held: impl Fn(&ShardId) -> bool) {
    if stored.stream_arn != local.stream_arn {
        if stored.stream_arn.label() < local.stream_arn.label() {
            return;
        }
        *local = stored.clone();
        return;
    }
    // Another replay: either this replica just applied one that is not
    // stored yet (adopting would undo it), or the stored one is newer than
    // this replica, which then writes nothing (see `merge_into`).
    if stored.replay.as_ref().map(|r| &r.token) != local.replay.as_ref().map(|r| &r.token) {
        return;
    }
    // A first position not saved yet is kept: dropped, the shard would be
    // read from TRIM_HORIZON.
    local.shards.retain(|shard, progress| {
        held(shard)
            || stored.shards.contains_key(shard)
            || matches!(progress, ShardProgress::LatestSince(_))
    });
    for (shard, progress) in &stored.shards {
        if !held(shard) {
            local.shards.insert(shard.clone(), progress.clone());
        }
    }
    local.unlisted_since = stored.unlisted_since.clone();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::AppliedReplay;
    use crate::ids::SequenceNumber;
    use dynamodb_source_api::StreamArn;

    fn stream(label: &str) -> StreamArn {
        format!("arn:aws:dynamodb:us-east-1:123456789012:table/orders/stream/{label}")
            .parse()
            .expect("valid")
    }

    fn after(s: &str) -> ShardProgress {
        ShardProgress::After(SequenceNumber::parse(s).expect("digits"))
    }

    fn doc(entries: &[(&str, ShardProgress)]) -> Checkpoint {
        let mut c = Checkpoint::new(stream("2024-01-01T00:00:00.000"));
        for (shard, progress) in entries {
            c.shards.insert(ShardId::new(*shard), progress.clone());
        }
        c
    }

    fn replayed(mut c: Checkpoint, token: &str) -> Checkpoint {
        c.replay = Some(AppliedReplay {
            token: token.to_owned(),
            from: "TRIM_HORIZON".to_owned(),
            applied_at: 1,
        });
        c
    }

    #[test]
    fn a_replica_writes_the_shards_it_holds_and_keeps_the_others() {
        let mut stored = doc(&[("a", after("100")), ("b", after("200"))]);
        // The local view of "b" is old: another replica moved it since.
        let local = doc(&[("a", after("150")), ("b", after("100"))]);
        let merged = merge_into(
            &mut stored,
            &local,
            Merge::Held,
            |s| s.as_str() == "a",
            &BTreeSet::new(),
        );
        assert_eq!(merged, Merged::Written);
        assert_eq!(stored.progress(&ShardId::new("a")), Some(&after("150")));
        assert_eq!(stored.progress(&ShardId::new("b")), Some(&after("200")));
    }

    #[test]
    fn latest_positions_are_recorded_once_for_shards_nobody_wrote() {
        let mut stored = doc(&[("b", after("200"))]);
        let local = doc(&[
            ("b", ShardProgress::LatestSince(5)),
            ("c", ShardProgress::LatestSince(5)),
            ("d", after("1")),
        ]);
        merge_into(
            &mut stored,
            &local,
            Merge::Held,
            |_| false,
            &BTreeSet::new(),
        );
        assert_eq!(stored.progress(&ShardId::new("b")), Some(&after("200")));
        assert_eq!(
            stored.progress(&ShardId::new("c")),
            Some(&ShardProgress::LatestSince(5))
        );
        assert_eq!(
            stored.progress(&ShardId::new("d")),
            None,
            "not held: not written"
        );
    }

    #[test]
    fn forgotten_shards_are_removed_whoever_holds_them() {
        let mut stored = doc(&[("gone", ShardProgress::Finished), ("b", after("2"))]);
        stored.unlisted_since.insert(ShardId::new("gone"), 7);
        let local = doc(&[("b", after("2"))]);
        let forgotten = BTreeSet::from([ShardId::new("gone")]);
        merge_into(&mut stored, &local, Merge::Held, |_| false, &forgotten);
        assert_eq!(stored.progress(&ShardId::new("gone")), None);
        assert!(stored.unlisted_since.is_empty());
    }

    #[test]
    fn a_replica_of_another_replay_writes_nothing() {
        let mut stored = replayed(doc(&[("a", ShardProgress::Replay(None))]), "two");
        let before = stored.clone();
        let old = replayed(doc(&[("a", after("900"))]), "one");
        let merged = merge_into(&mut stored, &old, Merge::Held, |_| true, &BTreeSet::new());
        assert!(matches!(merged, Merged::Stale(_)));
        assert_eq!(stored, before);
        // The replica that applied it writes everything once.
        let mut stored = doc(&[("a", after("900"))]);
        let applied = replayed(doc(&[("a", ShardProgress::Replay(None))]), "two");
        merge_into(
            &mut stored,
            &applied,
            Merge::Everything,
            |_| false,
            &BTreeSet::new(),
        );
        assert_eq!(stored, applied);
    }

    #[test]
    fn the_newer_stream_wins() {
        let mut stored = doc(&[("a", after("1"))]);
        let mut newer = Checkpoint::new(stream("2025-01-01T00:00:00.000"));
        newer.shards.insert(ShardId::new("x"), after("5"));
        assert_eq!(
            merge_into(&mut stored, &newer, Merge::Held, |_| true, &BTreeSet::new()),
            Merged::Written
        );
        assert_eq!(stored.stream_arn, newer.stream_arn);
        assert_eq!(stored.shards.len(), 1);
        let mut older = doc(&[("a", after("9"))]);
        assert!(matches!(
            merge_into(
                &mut older.clone(),
                &doc(&[]),
                Merge::Held,
                |_| true,
                &BTreeSet::new()
            ),
            Merged::Written
        ));
        let merged = merge_into(&mut stored, &older, Merge::Held, |_| true, &BTreeSet::new());
        assert!(matches!(merged, Merged::Stale(_)));
        adopt(&mut older, &stored, |_| true);
        assert_eq!(
            older.stream_arn, newer.stream_arn,
            "the older replica adopts it"
        );
    }

    #[test]
    fn a_replay_not_stored_yet_is_not_undone_by_adopting() {
        let mut local = replayed(doc(&[("a", ShardProgress::Replay(None))]), "two");
        let stored = replayed(doc(&[("a", after("900"))]), "one");
        adopt(&mut local, &stored, |_| false);
        assert_eq!(
            local.progress(&ShardId::new("a")),
            Some(&ShardProgress::Replay(None))
        );
        assert_eq!(local.replay.as_ref().map(|r| r.token.as_str()), Some("two"));
    }

    #[test]
    fn adopting_takes_others_shards_and_keeps_held_ones() {
        let mut local = doc(&[("a", after("150")), ("b", after("100")), ("c", after("1"))]);
        let stored = doc(&[("a", after("100")), ("b", ShardProgress::Finished)]);
        adopt(&mut local, &stored, |s| s.as_str() == "a");
        assert_eq!(local.progress(&ShardId::new("a")), Some(&after("150")));
        assert!(local.is_finished(&ShardId::new("b")));
        assert_eq!(
            local.progress(&ShardId::new("c")),
            None,
            "forgotten elsewhere"
        );
    }
}

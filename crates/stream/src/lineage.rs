//! Which shards may be read now, and from where.
//!
//! DynamoDB splits a shard into children when it closes. A child holds changes
//! made after its parent's last record, so reading a child before its parent is
//! finished would reorder changes to the same item. This module decides, from
//! the shards the stream lists and the saved progress, which shards are ready
//! and where each starts. It does no I/O.
//!
//! # Guarantees
//! - A child is started only when its parent is finished (read to its end,
//!   its last records delivered) or unknown to the source.
//! - A shard the source knows (listed now, in the checkpoint with progress
//!   left, or being read) holds its children back whether or not one
//!   DescribeStream answer lists it.
//! - A shard with progress left that is not listed is started anyway, from
//!   its progress: reading it directly is how the source learns whether it
//!   still exists (ResourceNotFound means gone, and only then is it forgotten
//!   and its children released).
//!
//! # Assumptions
//! - A parent that is neither listed, nor in the checkpoint, nor being read
//!   was trimmed before the source started (or was forgotten as gone), so it
//!   has nothing left to deliver: its children do not wait for it.
//! - Shard ids embed their creation time, so sorting them reads older shards first.
//!
//! # Caveats
//! - The parent of a shard that is not listed is not known, so such a shard
//!   starts without waiting for one; it was listed with its parent when it was
//!   first read, and its parent was finished then.

use std::collections::{BTreeMap, HashSet};

use dynamodb_source_api::StartingPosition;

use crate::checkpoint::{Checkpoint, ShardProgress};
use crate::ids::{SequenceNumber, ShardId};

/// A shard as DescribeStream lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard {
    pub id: ShardId,
    pub parent: Option<ShardId>,
    /// The shard has an ending sequence number: it takes no new records.
    pub closed: bool,
}

/// Where a shard's reading starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartAt {
    TrimHorizon,
    Latest,
    After(SequenceNumber),
}

/// A shard to start reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub shard: ShardId,
    pub start: StartAt,
    /// Records created before this Unix second are skipped: they predate a
    /// `LATEST` start that could not be resumed exactly.
    pub skip_created_before: Option<i64>,
    /// Records created before this time (Unix milliseconds) are skipped,
    /// exactly: a replay starts at the time it names.
    pub replay_from_millis: Option<i64>,
}

/// The outcome of one planning round.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// Shards to start, parents before children, oldest first.
    pub start: Vec<Assignment>,
    /// Progress to record before starting (skipped closed shards, `LATEST` starts).
    pub record: BTreeMap<ShardId, ShardProgress>,
}

/// Whether the source has delivered anything from this stream before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// No checkpoint existed: the starting position applies to the open shards.
    FirstStart(StartingPosition),
    /// The source ran before: every shard without progress is new and is read
    /// from its beginning, so nothing written since the source started is missed.
    Resumed,
}

/// Decides which shards to start now.
///
/// A shard is ready when it is not finished, not already being read, and its
/// parent is finished or unknown (see the module's guarantees).
pub fn plan(
    shards: &[Shard],
    checkpoint: &Checkpoint,
    running: &HashSet<ShardId>,
    origin: Origin,
    now_unix: i64,
) -> Plan {
    let listed: HashSet<&ShardId> = shards.iter().map(|s| &s.id).collect();
    let mut plan = Plan::default();

    // At a first start at LATEST, closed shards hold only history: mark them
    // finished so their open children become ready in this same round.
    let latest_first_start = origin == Origin::FirstStart(StartingPosition::Latest);
    if latest_first_start {
        for shard in shards.iter().filter(|s| s.closed) {
            if checkpoint.progress(&shard.id).is_none() {
                plan.record
                    .insert(shard.id.clone(), ShardProgress::Finished);
            }
        }
    }
    let finished = |id: &ShardId| {
        checkpoint.is_finished(id) || matches!(plan.record.get(id), Some(ShardProgress::Finished))
    };
    let known = |id: &ShardId| {
        listed.contains(id) || checkpoint.progress(id).is_some() || running.contains(id)
    };

    let mut ready: Vec<&ShardId> = shards
        .iter()
        .filter(|s| !finished(&s.id) && !running.contains(&s.id))
        .filter(|s| match &s.parent {
            Some(parent) => finished(parent) || !known(parent),
            None => true,
        })
        .map(|s| &s.id)
        .collect();
    // Shards with progress left that this answer did not list: read directly.
    ready.extend(checkpoint.shards.iter().filter_map(|(id, progress)| {
        (*progress != ShardProgress::Finished && !listed.contains(id) && !running.contains(id))
            .then_some(id)
    }));
    // Shard ids embed their creation time, so this is oldest first.
    ready.sort();

    for id in ready {
        let assignment = match checkpoint.progress(id) {
            Some(ShardProgress::After(seq)) => Assignment {
                shard: id.clone(),
                start: StartAt::After(seq.clone()),
                skip_created_before: None,
                replay_from_millis: None,
            },
            Some(ShardProgress::LatestSince(since)) => Assignment {
                shard: id.clone(),
                start: StartAt::TrimHorizon,
                skip_created_before: Some(*since),
                replay_from_millis: None,
            },
            Some(ShardProgress::Replay(from)) => Assignment {
                shard: id.clone(),
                start: StartAt::TrimHorizon,
                skip_created_before: None,
                replay_from_millis: *from,
            },
            Some(ShardProgress::Finished) => continue,
            None if latest_first_start => {
                plan.record
                    .insert(id.clone(), ShardProgress::LatestSince(now_unix));
                Assignment {
                    shard: id.clone(),
                    start: StartAt::Latest,
                    skip_created_before: None,
                    replay_from_millis: None,
                }
            }
            None => Assignment {
                shard: id.clone(),
                start: StartAt::TrimHorizon,
                skip_created_before: None,
                replay_from_millis: None,
            },
        };
        plan.start.push(assignment);
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkpoint() -> Checkpoint {
        Checkpoint::new(
            "arn:aws:dynamodb:us-east-1:123456789012:table/t10/stream/label"
                .parse()
                .expect("valid"),
        )
    }

    fn shard(id: &str, parent: Option<&str>, closed: bool) -> Shard {
        Shard {
            id: ShardId::new(id),
            parent: parent.map(ShardId::new),
            closed,
        }
    }

    fn started(plan: &Plan) -> Vec<(&str, StartAt)> {
        plan.start
            .iter()
            .map(|a| (a.shard.as_str(), a.start.clone()))
            .collect()
    }

    #[test]
    fn child_shard_waits_for_parent_end() {
        let shards = [
            shard("s1", None, true),
            shard("s2", Some("s1"), false),
            shard("s3", Some("s1"), false),
        ];
        let mut checkpoint = checkpoint();
        let plan = plan_for(&shards, &checkpoint, Origin::Resumed);
        assert_eq!(started(&plan), vec![("s1", StartAt::TrimHorizon)]);

        checkpoint.finish(&ShardId::new("s1"));
        let plan = plan_for(&shards, &checkpoint, Origin::Resumed);
        assert_eq!(
            started(&plan),
            vec![("s2", StartAt::TrimHorizon), ("s3", StartAt::TrimHorizon)]
        );
    }

    fn plan_for(shards: &[Shard], checkpoint: &Checkpoint, origin: Origin) -> Plan {
        plan(shards, checkpoint, &HashSet::new(), origin, 1_700_000_000)
    }

    #[test]
    fn shard_whose_parent_was_trimmed_away_is_ready() {
        let shards = [shard("s2", Some("gone"), false)];
        let plan = plan_for(&shards, &checkpoint(), Origin::Resumed);
        assert_eq!(started(&plan), vec![("s2", StartAt::TrimHorizon)]);
    }

    #[test]
    fn a_parent_left_out_of_one_answer_still_holds_its_children_back() {
        // The parent is being read, or has progress left in the checkpoint:
        // one DescribeStream answer that does not list it proves nothing.
        let shards = [
            shard("s2", Some("s1"), false),
            shard("s3", Some("s1"), false),
        ];
        let running = HashSet::from([ShardId::new("s1")]);
        let plan_running = plan(&shards, &checkpoint(), &running, Origin::Resumed, 0);
        assert!(plan_running.start.is_empty(), "{plan_running:?}");

        let mut checkpoint = checkpoint();
        let seq = SequenceNumber::parse("000000000000000000007").expect("digits");
        checkpoint.advance(&ShardId::new("s1"), &seq);
        let plan = plan_for(&shards, &checkpoint, Origin::Resumed);
        assert_eq!(
            started(&plan),
            vec![("s1", StartAt::After(seq))],
            "the unlisted parent is read directly, its children wait"
        );
    }

    #[test]
    fn running_and_finished_shards_are_not_started_again() {
        let shards = [shard("s1", None, true), shard("s2", None, false)];
        let mut checkpoint = checkpoint();
        checkpoint.finish(&ShardId::new("s1"));
        let running = HashSet::from([ShardId::new("s2")]);
        let plan = plan(&shards, &checkpoint, &running, Origin::Resumed, 0);
        assert!(plan.start.is_empty(), "{plan:?}");
    }

    #[test]
    fn resumed_shard_continues_after_its_checkpoint() {
        let shards = [shard("s1", None, false)];
        let mut checkpoint = checkpoint();
        let seq = SequenceNumber::parse("000000000000000000007").expect("digits");
        checkpoint.advance(&ShardId::new("s1"), &seq);
        let plan = plan_for(&shards, &checkpoint, Origin::Resumed);
        assert_eq!(started(&plan), vec![("s1", StartAt::After(seq))]);
    }

    #[test]
    fn first_start_at_latest_skips_history_and_remembers_when() {
        let shards = [shard("s1", None, true), shard("s2", Some("s1"), false)];
        let plan = plan_for(
            &shards,
            &checkpoint(),
            Origin::FirstStart(StartingPosition::Latest),
        );
        assert_eq!(started(&plan), vec![("s2", StartAt::Latest)]);
        assert_eq!(
            plan.record,
            BTreeMap::from([
                (ShardId::new("s1"), ShardProgress::Finished),
                (
                    ShardId::new("s2"),
                    ShardProgress::LatestSince(1_700_000_000)
                ),
            ])
        );
    }

    #[test]
    fn first_start_at_trim_horizon_reads_everything_in_lineage_order() {
        let shards = [shard("s2", Some("s1"), false), shard("s1", None, true)];
        let plan = plan_for(
            &shards,
            &checkpoint(),
            Origin::FirstStart(StartingPosition::TrimHorizon),
        );
        assert_eq!(started(&plan), vec![("s1", StartAt::TrimHorizon)]);
        assert!(plan.record.is_empty());
    }

    #[test]
    fn unresumable_latest_start_rereads_from_trim_horizon_skipping_older_records() {
        let shards = [shard("s1", None, false)];
        let mut checkpoint = checkpoint();
        checkpoint.shards.insert(
            ShardId::new("s1"),
            ShardProgress::LatestSince(1_650_000_000),
        );
        let plan = plan_for(&shards, &checkpoint, Origin::Resumed);
        assert_eq!(
            plan.start,
            vec![Assignment {
                shard: ShardId::new("s1"),
                start: StartAt::TrimHorizon,
                skip_created_before: Some(1_650_000_000),
                replay_from_millis: None,
            }]
        );
    }

    #[test]
    fn new_shards_after_start_are_read_from_trim_horizon() {
        // The source already ran: a shard without progress appeared later.
        let shards = [shard("s9", None, false)];
        let plan = plan_for(&shards, &checkpoint(), Origin::Resumed);
        assert_eq!(started(&plan), vec![("s9", StartAt::TrimHorizon)]);
    }
}

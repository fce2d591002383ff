//! Which shard leases a replica takes or asks for, from what it sees of
//! everybody's leases: the Kinesis Client Library's balancing, without its
//! table. Pure, so every case is a unit test.
//!
//! Every replica aims at `ceil(readable shards / replicas)`, where the
//! replicas are those holding a live lease, and itself. Below that, it first
//! takes shards nobody holds (no lease, released, or expired), in an order of
//! its own so that replicas starting together do not all race for the same
//! ones; then asks the most loaded holder for some of its shards: only one
//! above the target, or any holder when this replica is two or more below it
//! (so 4 shards over 3 replicas settle at 2, 1, 1 instead of 2, 2, 0), and at
//! most a bounded number per round. An ask is a hand-over request written on
//! the lease; the holder stops reading, saves, and passes the lease on.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};

use dynamodb_source_stream::ShardId;

/// One shard's lease, as this replica sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Seen {
    /// Who holds it; `None` when released.
    pub holder: Option<String>,
    /// Not renewed for a whole lease duration, by this replica's clock.
    pub expired: bool,
    /// A hand-over was asked of its holder.
    pub handoff_asked: bool,
}

/// What to do this round.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Moves {
    /// Shards nobody holds (no lease, released or expired): take them.
    pub take: Vec<ShardId>,
    /// Shards to ask their holder for.
    pub ask: Vec<ShardId>,
}

/// The balancing decision of replica `me` (see the module documentation).
/// `leases` holds every lease seen; shards of `readable` without one have no
/// lease yet.
pub(crate) fn balance(
    me: &str,
    readable: &BTreeSet<ShardId>,
    leases: &BTreeMap<ShardId, Seen>,
    max_asks: usize,
) -> Moves {
    let mut load: BTreeMap<&str, usize> = BTreeMap::new();
    load.insert(me, 0);
    let mut free = Vec::new();
    for shard in readable {
        match leases.get(shard) {
            Some(Seen {
                holder: Some(holder),
                expired: false,
                ..
            }) => *load.entry(holder.as_str()).or_default() += 1,
            _ => free.push(shard),
        }
    }
    let replicas = load.len();
    let target = readable.len().div_ceil(replicas);
    let mine = load.get(me).copied().unwrap_or_default();
    let mut moves = Moves::default();
    if mine >= target {
        return moves;
    }
    let mut need = target - mine;
    free.sort_by_key(|shard| spread(me, shard));
    moves.take = free.into_iter().take(need).cloned().collect();
    need -= moves.take.len();
    if need == 0 || !moves.take.is_empty() {
        // Asking waits until what is free was taken: taking is immediate.
        return moves;
    }
    let Some((victim, victim_load)) = load
        .iter()
        .filter(|(holder, _)| **holder != me)
        .max_by_key(|(holder, load)| (**load, std::cmp::Reverse(**holder)))
    else {
        return moves;
    };
    let spare = if *victim_load > target {
        victim_load - target
    } else if need >= 2 && *victim_load > 1 {
        1
    } else {
        0
    };
    let mut theirs: Vec<&ShardId> = readable
        .iter()
        .filter(|shard| {
            leases.get(*shard).is_some_and(|seen| {
                seen.holder.as_deref() == Some(*victim) && !seen.expired && !seen.handoff_asked
            })
        })
        .collect();
    theirs.sort_by_key(|shard| spread(me, shard));
    moves.ask = theirs
        .into_iter()
        .take(need.min(spare).min(max_asks))
        .cloned()
        .collect();
    moves
}

/// Whether a holder of `mine` shards evens the load by giving one to a
/// replica that holds `theirs`: only when it holds two more, or the shard
/// would just come back. An ask can outlive the need for it (the asker got
/// its share meanwhile), so the holder judges it again when it sees it.
pub(crate) fn worth_giving(mine: usize, theirs: usize) -> bool {
    mine >= theirs + 2
}

/// An order of the shards that differs from replica to replica.
fn spread(me: &str, shard: &ShardId) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    me.hash(&mut hasher);
    shard.hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shards(n: usize) -> BTreeSet<ShardId> {
        (0..n)
            .map(|i| ShardId::new(format!("shard-{i:03}")))
            .collect()
    }

    fn held(holder: &str) -> Seen {
        Seen {
            holder: Some(holder.to_owned()),
            expired: false,
            handoff_asked: false,
        }
    }

    /// Runs rounds of `replicas` taking turns until nobody moves; every
    /// ask is granted at once. Returns the loads.
    fn settle(readable: &BTreeSet<ShardId>, replicas: &[&str], max_asks: usize) -> Vec<usize> {
        let mut leases: BTreeMap<ShardId, Seen> = BTreeMap::new();
        for _ in 0..1000 {
            let mut moved = false;
            for me in replicas {
                let moves = balance(me, readable, &leases, max_asks);
                for shard in moves.take.iter().chain(&moves.ask) {
                    leases.insert(shard.clone(), held(me));
                    moved = true;
                }
            }
            if !moved {
                break;
            }
        }
        replicas
            .iter()
            .map(|me| {
                leases
                    .values()
                    .filter(|s| s.holder.as_deref() == Some(*me))
                    .count()
            })
            .collect()
    }

    #[test]
    fn a_lone_replica_takes_every_shard_at_once() {
        let readable = shards(256);
        let moves = balance("a", &readable, &BTreeMap::new(), 4);
        assert_eq!(moves.take.len(), 256);
        assert!(moves.ask.is_empty());
    }

    #[test]
    fn replicas_converge_to_an_even_share() {
        assert_eq!(settle(&shards(24), &["a", "b", "c"], 2), vec![8, 8, 8]);
        let mut loads = settle(&shards(4), &["a", "b", "c"], 2);
        loads.sort_unstable();
        assert_eq!(loads, vec![1, 1, 2]);
        let loads = settle(&shards(256), &["a", "b", "c", "d"], 16);
        assert_eq!(loads, vec![64, 64, 64, 64]);
    }

    #[test]
    fn a_new_replica_asks_the_most_loaded_for_a_bounded_number() {
        let readable = shards(10);
        let leases: BTreeMap<ShardId, Seen> = readable
            .iter()
            .enumerate()
            .map(|(i, s)| (s.clone(), held(if i < 7 { "a" } else { "b" })))
            .collect();
        let moves = balance("c", &readable, &leases, 2);
        assert!(moves.take.is_empty());
        assert_eq!(moves.ask.len(), 2, "bounded per round");
        assert!(
            moves
                .ask
                .iter()
                .all(|s| leases[s].holder.as_deref() == Some("a"))
        );
    }

    #[test]
    fn expired_and_released_leases_are_taken_before_asking() {
        let readable = shards(4);
        let mut leases: BTreeMap<ShardId, Seen> =
            readable.iter().map(|s| (s.clone(), held("a"))).collect();
        let dead = ShardId::new("shard-001");
        leases.insert(
            dead.clone(),
            Seen {
                expired: true,
                ..held("b")
            },
        );
        let moves = balance("c", &readable, &leases, 4);
        assert_eq!(moves.take, vec![dead]);
        assert!(moves.ask.is_empty());
    }

    #[test]
    fn a_balanced_replica_does_nothing() {
        let readable = shards(3);
        let leases: BTreeMap<ShardId, Seen> = readable
            .iter()
            .enumerate()
            .map(|(i, s)| (s.clone(), held(if i < 2 { "a" } else { "b" })))
            .collect();
        assert_eq!(balance("b", &readable, &leases, 4), Moves::default());
        assert_eq!(balance("a", &readable, &leases, 4), Moves::default());
    }

    #[test]
    fn an_ask_is_granted_only_when_it_evens_the_load() {
        assert!(worth_giving(10, 8));
        assert!(worth_giving(2, 0));
        assert!(!worth_giving(9, 8), "the shard would just come back");
        assert!(!worth_giving(8, 8));
        assert!(!worth_giving(0, 0));
    }

    #[test]
    fn shards_already_asked_for_are_not_asked_again() {
        let readable = shards(4);
        let leases: BTreeMap<ShardId, Seen> = readable
            .iter()
            .map(|s| {
                (
                    s.clone(),
                    Seen {
                        handoff_asked: true,
                        ..held("a")
                    },
                )
            })
            .collect();
        assert!(balance("b", &readable, &leases, 4).ask.is_empty());
    }
}

//! One shard's records between being read and being checkpointed: which
//! may be sent now, and how far the checkpoint may move. Pure bookkeeping,
//! no I/O.
//!
//! # Guarantees
//! - Records of one item key are handed out one after another, in stream
//!   order: the next one only once the one before it was settled.
//! - Of the records that may be sent, the oldest goes first, so with one
//!   send at a time the shard is delivered strictly in stream order.
//! - The checkpoint never passes an unsettled record: it moves to the last
//!   sequence number below which every record was settled (acknowledged,
//!   dead-lettered, filtered or skipped).
//!
//! # Caveats
//! - Keys are compared by a 64-bit hash: two keys that collide are merely
//!   sent one after another, as if they were one.

use std::collections::{BTreeSet, HashMap, VecDeque};

use dynamodb_source_stream::SequenceNumber;

/// What a record of the window waits for.
enum State<T> {
    /// Read; to be handed out once its key is free.
    Waiting(T),
    /// Handed out, not settled yet.
    Sent,
    Settled,
}

struct Slot<T> {
    sequence: Option<SequenceNumber>,
    /// `None`: the record orders with nothing (a malformed one).
    key: Option<u64>,
    state: State<T>,
}

pub(crate) struct Window<T> {
    /// The index of `slots[0]`; indexes never repeat within a shard.
    first: u64,
    slots: VecDeque<Slot<T>>,
    /// Keys with a record handed out or ready to be, and the records of that
    /// key behind it, oldest first.
    keys: HashMap<u64, VecDeque<u64>>,
    /// Records that may be handed out now, by index: oldest first.
    ready: BTreeSet<u64>,
    unsettled: usize,
}

impl<T> Default for Window<T> {
    fn default() -> Self {
        Window {
            first: 0,
            slots: VecDeque::new(),
            keys: HashMap::new(),
            ready: BTreeSet::new(),
            unsettled: 0,
        }
    }
}

impl<T> Window<T> {
    /// Records held, settled or not, from the oldest unsettled one on.
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Records not settled yet.
    pub(crate) fn unsettled(&self) -> usize {
        self.unsettled
    }

    /// Adds the next record of the shard: `work` to hand out, or `None` for a
    /// record settled at once (filtered, skipped).
    pub(crate) fn push(
        &mut self,
        sequence: Option<SequenceNumber>,
        key: Option<u64>,
        work: Option<T>,
    ) {
        let index = self.first + self.slots.len() as u64;
        let state = match work {
            None => State::Settled,
            Some(work) => {
                self.unsettled += 1;
                match key {
                    Some(key) => match self.keys.get_mut(&key) {
                        Some(behind) => behind.push_back(index),
                        None => {
                            self.keys.insert(key, VecDeque::new());
                            self.ready.insert(index);
                        }
                    },
                    None => {
                        self.ready.insert(index);
                    }
                }
                State::Waiting(work)
            }
        };
        self.slots.push_back(Slot {
            sequence,
            key,
            state,
        });
    }

    /// Whether a record could be handed out now.
    pub(crate) fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    /// The oldest record that may be sent now, and its index.
    pub(crate) fn next(&mut self) -> Option<(u64, T)> {
        let index = self.ready.pop_first()?;
        let slot = self.slot_mut(index)?;
        match std::mem::replace(&mut slot.state, State::Sent) {
            State::Waiting(work) => Some((index, work)),
            // Only waiting records are ever ready.
            other => {
                slot.state = other;
                None
            }
        }
    }

    /// Marks a handed-out record settled; the next record of its key may go.
    pub(crate) fn settle(&mut self, index: u64) {
        let Some(slot) = self.slot_mut(index) else {
            return;
        };
        if !matches!(slot.state, State::Sent) {
            return;
        }
        slot.state = State::Settled;
        let key = slot.key;
        self.unsettled -= 1;
        if let Some(key) = key
            && let Some(behind) = self.keys.get_mut(&key)
        {
            match behind.pop_front() {
                Some(next) => {
                    self.ready.insert(next);
                }
                None => {
                    self.keys.remove(&key);
                }
            }
        }
    }

    /// Drops the settled records at the front and returns the newest sequence
    /// number among them: where the checkpoint may move.
    pub(crate) fn advance(&mut self) -> Option<SequenceNumber> {
        let mut newest = None;
        while let Some(slot) = self.slots.front() {
            if !matches!(slot.state, State::Settled) {
                break;
            }
            if let Some(slot) = self.slots.pop_front() {
                self.first += 1;
                if slot.sequence.is_some() {
                    newest = slot.sequence;
                }
            }
        }
        self.shrink();
        newest
    }

    /// Gives back memory a burst left: a shard that once held a full
    /// window and now holds a few records should not keep room for a
    /// thousand, times every shard of the table.
    fn shrink(&mut self) {
        const ROOM: usize = 32;
        let len = self.slots.len();
        if self.slots.capacity() > 4 * len.max(ROOM) {
            self.slots.shrink_to(2 * len.max(ROOM));
        }
        let keys = self.keys.len();
        if self.keys.capacity() > 4 * keys.max(ROOM) {
            self.keys.shrink_to(2 * keys.max(ROOM));
        }
    }

    fn slot_mut(&mut self, index: u64) -> Option<&mut Slot<T>> {
        let offset = usize::try_from(index.checked_sub(self.first)?).ok()?;
        self.slots.get_mut(offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drained_window_gives_its_room_back() {
        let mut window = Window::default();
        for n in 0..1000 {
            window.push(seq(n), Some(n), Some(n));
        }
        for (index, _) in drain(&mut window) {
            window.settle(index);
        }
        assert_eq!(window.advance(), seq(999));
        assert!(window.slots.capacity() <= 64, "{}", window.slots.capacity());
        assert!(window.keys.capacity() <= 128, "{}", window.keys.capacity());
    }

    fn seq(n: u64) -> Option<SequenceNumber> {
        SequenceNumber::parse(&format!("{n:021}"))
    }

    fn drain<T>(window: &mut Window<T>) -> Vec<(u64, T)> {
        std::iter::from_fn(|| window.next()).collect()
    }

    #[test]
    fn records_of_one_key_go_one_after_another_and_other_keys_meanwhile() {
        let mut window = Window::default();
        window.push(seq(1), Some(7), Some("a1"));
        window.push(seq(2), Some(7), Some("a2"));
        window.push(seq(3), Some(9), Some("b1"));
        window.push(seq(4), Some(7), Some("a3"));
        let first: Vec<_> = drain(&mut window).into_iter().map(|(_, w)| w).collect();
        assert_eq!(first, vec!["a1", "b1"]);
        window.settle(2);
        assert!(window.next().is_none(), "b1 settled, a1 still out");
        window.settle(0);
        assert_eq!(drain(&mut window), vec![(1, "a2")]);
        window.settle(1);
        assert_eq!(drain(&mut window), vec![(3, "a3")]);
    }

    #[test]
    fn checkpoint_never_passes_an_unsettled_record() {
        let mut window = Window::default();
        window.push(seq(1), Some(1), Some(()));
        window.push(seq(2), Some(2), Some(()));
        window.push(seq(3), Some(3), None);
        let sent = drain(&mut window);
        assert_eq!(sent.len(), 2);
        window.settle(1);
        assert_eq!(window.advance(), None, "record 1 holds the checkpoint back");
        assert_eq!(window.len(), 3);
        window.settle(0);
        assert_eq!(window.advance(), seq(3), "filtered record 3 is passed too");
        assert!(window.is_empty());
        assert_eq!(window.unsettled(), 0);
    }

    #[test]
    fn with_one_send_at_a_time_the_shard_goes_in_stream_order() {
        // When a1 settles, a2 and b1 are both free: a2 is older and goes first.
        let mut window = Window::default();
        window.push(seq(1), Some(1), Some("a1"));
        window.push(seq(2), Some(1), Some("a2"));
        window.push(seq(3), Some(2), Some("b1"));
        let mut order = Vec::new();
        while let Some((index, work)) = window.next() {
            order.push(work);
            window.settle(index);
        }
        assert_eq!(order, vec!["a1", "a2", "b1"]);
    }

    #[test]
    fn records_without_a_key_wait_for_nothing() {
        let mut window = Window::default();
        window.push(seq(1), Some(1), Some("a1"));
        window.push(None, None, Some("bad"));
        window.push(seq(3), Some(1), Some("a2"));
        let sent: Vec<_> = drain(&mut window).into_iter().map(|(_, w)| w).collect();
        assert_eq!(sent, vec!["a1", "bad"]);
        window.settle(1);
        window.settle(0);
        assert_eq!(
            window.advance(),
            seq(1),
            "the unnumbered record moves nothing"
        );
        assert_eq!(drain(&mut window), vec![(2, "a2")]);
    }
}

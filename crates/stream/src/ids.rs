//! Identifiers the Streams API hands out, kept distinct so a shard id is never
//! passed where a sequence number belongs.

use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Serialize};

/// A shard of a stream, e.g. `shardId-00000001700000000000-abcdef12`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ShardId(String);

impl ShardId {
    pub fn new(id: impl Into<String>) -> Self {
        ShardId(id.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ShardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The position of a record within its shard: a decimal number of 21 to 40 digits.
///
/// Ordered numerically, not as text, because the API does not promise a fixed
/// width.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SequenceNumber(String);

impl SequenceNumber {
    /// Accepts what the API returns; anything that is not a decimal number is rejected.
    pub fn parse(s: &str) -> Option<Self> {
        (!s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| SequenceNumber(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn significant(&self) -> &str {
        let trimmed = self.0.trim_start_matches('0');
        if trimmed.is_empty() { "0" } else { trimmed }
    }
}

impl Ord for SequenceNumber {
    fn cmp(&self, other: &Self) -> Ordering {
        let (a, b) = (self.significant(), other.significant());
        a.len().cmp(&b.len()).then_with(|| a.cmp(b))
    }
}

impl PartialOrd for SequenceNumber {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for SequenceNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_order_numerically() {
        let seq = |s| SequenceNumber::parse(s).expect("digits");
        assert!(seq("900000000000000000001") < seq("1000000000000000000000"));
        assert!(seq("000100000000000000000000005") < seq("100000000000000000000006"));
        assert_eq!(
            seq("0100000000000000000000005").cmp(&seq("100000000000000000000005")),
            Ordering::Equal
        );
    }

    #[test]
    fn sequence_number_rejects_non_digits() {
        assert_eq!(SequenceNumber::parse(""), None);
        assert_eq!(SequenceNumber::parse("12a"), None);
        assert_eq!(SequenceNumber::parse("-1"), None);
    }
}

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
/// Compared numerically, not as text, because the API does not promise a
/// fixed width: equality, hashing and order all agree (`0100` is `100`). The
/// text is kept as the API sent it, to be sent back. Deserialising checks the
/// text as [`SequenceNumber::parse`] does, so a checkpoint with anything but
/// digits in a sequence number is refused rather than trusted.
#[derive(Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SequenceNumber(#[serde(deserialize_with = "digits")] String);

impl Clone for SequenceNumber {
    fn clone(&self) -> Self {
        SequenceNumber(self.0.clone())
    }

    /// Reuses the text's buffer: a checkpoint moves once per delivery round.
    fn clone_from(&mut self, source: &Self) {
        self.0.clone_from(&source.0);
    }
}

fn digits<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let text = String::deserialize(deserializer)?;
    match SequenceNumber::parse(&text) {
        Some(_) => Ok(text),
        None => Err(serde::de::Error::custom(format!(
            "{text:?} is not a sequence number (1 to 64 decimal digits)"
        ))),
    }
}

impl PartialEq for SequenceNumber {
    fn eq(&self, other: &Self) -> bool {
        self.significant() == other.significant()
    }
}

impl Eq for SequenceNumber {}

impl std::hash::Hash for SequenceNumber {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.significant().hash(state);
    }
}

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
    fn equality_and_hashing_agree_with_the_order() {
        use std::collections::HashSet;
        let seq = |s| SequenceNumber::parse(s).expect("digits");
        let (padded, plain) = (
            seq("0100000000000000000000005"),
            seq("100000000000000000000005"),
        );
        assert_eq!(padded, plain);
        assert_eq!(HashSet::from([padded.clone(), plain]).len(), 1);
        assert_eq!(
            padded.as_str(),
            "0100000000000000000000005",
            "sent back as received"
        );
        assert_ne!(seq("1"), seq("10"));
    }

    #[test]
    fn deserialising_checks_the_digits() {
        let ok: SequenceNumber = serde_json::from_str("\"000123\"").expect("digits");
        assert_eq!(ok.as_str(), "000123");
        for bad in ["\"12a\"", "\"\"", "\"-1\""] {
            let err = serde_json::from_str::<SequenceNumber>(bad).expect_err(bad);
            assert!(err.to_string().contains("not a sequence number"), "{err}");
        }
    }

    #[test]
    fn sequence_number_rejects_non_digits() {
        assert_eq!(SequenceNumber::parse(""), None);
        assert_eq!(SequenceNumber::parse("12a"), None);
        assert_eq!(SequenceNumber::parse("-1"), None);
    }
}

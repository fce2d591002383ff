//! The enumerated choices a source offers, spelled as the custom resource and
//! the adapter's environment spell them.

use std::fmt;
use std::str::FromStr;

/// A value that is not one of an option's choices.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a valid {option}: expected one of {expected}")]
pub struct OptionError {
    pub option: &'static str,
    pub value: String,
    pub expected: &'static str,
}

/// How an event's `data` presents the stream record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum PayloadFormat {
    /// The record as the DynamoDB Streams API and Lambda present it, typed attribute values.
    #[default]
    Aws,
    /// The same record with attribute values as plain JSON.
    Plain,
    /// Exactly what TriggerMesh's adapter sent, for consumers migrating from it.
    TriggerMesh,
}

impl PayloadFormat {
    pub const CHOICES: &'static str = "AWS, Plain, TriggerMesh";

    pub fn as_str(self) -> &'static str {
        match self {
            PayloadFormat::Aws => "AWS",
            PayloadFormat::Plain => "Plain",
            PayloadFormat::TriggerMesh => "TriggerMesh",
        }
    }
}

impl FromStr for PayloadFormat {
    type Err = OptionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "AWS" => Ok(PayloadFormat::Aws),
            "Plain" => Ok(PayloadFormat::Plain),
            "TriggerMesh" => Ok(PayloadFormat::TriggerMesh),
            other => Err(OptionError {
                option: "payload format",
                value: other.to_owned(),
                expected: Self::CHOICES,
            }),
        }
    }
}

impl fmt::Display for PayloadFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where reading starts in a shard that is open when a source starts with no checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum StartingPosition {
    /// Only records written after the source started.
    #[default]
    Latest,
    /// Everything the stream still holds (up to 24 hours).
    TrimHorizon,
}

impl StartingPosition {
    pub const CHOICES: &'static str = "LATEST, TRIM_HORIZON";

    pub fn as_str(self) -> &'static str {
        match self {
            StartingPosition::Latest => "LATEST",
            StartingPosition::TrimHorizon => "TRIM_HORIZON",
        }
    }
}

impl FromStr for StartingPosition {
    type Err = OptionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "LATEST" => Ok(StartingPosition::Latest),
            "TRIM_HORIZON" => Ok(StartingPosition::TrimHorizon),
            other => Err(OptionError {
                option: "starting position",
                value: other.to_owned(),
                expected: Self::CHOICES,
            }),
        }
    }
}

impl fmt::Display for StartingPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kind of change a stream record describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventName {
    Insert,
    Modify,
    Remove,
}

impl EventName {
    pub const CHOICES: &'static str = "INSERT, MODIFY, REMOVE";

    pub fn as_str(self) -> &'static str {
        match self {
            EventName::Insert => "INSERT",
            EventName::Modify => "MODIFY",
            EventName::Remove => "REMOVE",
        }
    }
}

impl FromStr for EventName {
    type Err = OptionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "INSERT" => Ok(EventName::Insert),
            "MODIFY" => Ok(EventName::Modify),
            "REMOVE" => Ok(EventName::Remove),
            other => Err(OptionError {
                option: "event name",
                value: other.to_owned(),
                expected: Self::CHOICES,
            }),
        }
    }
}

impl fmt::Display for EventName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which kinds of change become events; the others are skipped (and checkpointed past).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EventNameFilter {
    insert: bool,
    modify: bool,
    remove: bool,
}

impl Default for EventNameFilter {
    fn default() -> Self {
        EventNameFilter {
            insert: true,
            modify: true,
            remove: true,
        }
    }
}

impl EventNameFilter {
    pub fn only(names: impl IntoIterator<Item = EventName>) -> Self {
        let mut filter = EventNameFilter {
            insert: false,
            modify: false,
            remove: false,
        };
        for name in names {
            match name {
                EventName::Insert => filter.insert = true,
                EventName::Modify => filter.modify = true,
                EventName::Remove => filter.remove = true,
            }
        }
        filter
    }

    pub fn admits(&self, name: EventName) -> bool {
        match name {
            EventName::Insert => self.insert,
            EventName::Modify => self.modify,
            EventName::Remove => self.remove,
        }
    }
}

/// A comma-separated list such as `INSERT,REMOVE`; empty entries are an error, not "all".
impl FromStr for EventNameFilter {
    type Err = OptionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let names = s
            .split(',')
            .map(|name| name.trim().parse::<EventName>())
            .collect::<Result<Vec<_>, _>>()?;
        Ok(EventNameFilter::only(names))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices_parse_as_spelled_in_the_resource() {
        assert_eq!("AWS".parse(), Ok(PayloadFormat::Aws));
        assert_eq!("Plain".parse(), Ok(PayloadFormat::Plain));
        assert_eq!("TriggerMesh".parse(), Ok(PayloadFormat::TriggerMesh));
        assert_eq!("TRIM_HORIZON".parse(), Ok(StartingPosition::TrimHorizon));
        assert_eq!("LATEST".parse(), Ok(StartingPosition::Latest));
    }

    #[test]
    fn unknown_choice_names_the_option_and_the_choices() {
        let err = "aws"
            .parse::<PayloadFormat>()
            .expect_err("lowercase")
            .to_string();
        assert_eq!(
            err,
            "\"aws\" is not a valid payload format: expected one of AWS, Plain, TriggerMesh"
        );
    }

    #[test]
    fn event_name_filter_admits_only_listed_names() {
        let filter: EventNameFilter = "INSERT, REMOVE".parse().expect("valid");
        assert!(filter.admits(EventName::Insert));
        assert!(!filter.admits(EventName::Modify));
        assert!(filter.admits(EventName::Remove));
        assert!("INSERT,,REMOVE".parse::<EventNameFilter>().is_err());
        assert!(EventNameFilter::default().admits(EventName::Modify));
    }
}

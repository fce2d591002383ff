//! Amazon Resource Names of DynamoDB tables and their streams.

use std::fmt;
use std::str::FromStr;

/// Why a string is not a DynamoDB table or stream ARN.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArnError {
    #[error(
        "{input:?} is not an ARN: expected arn:{{partition}}:dynamodb:{{region}}:{{account}}:table/{{name}}"
    )]
    NotAnArn { input: String },
    #[error("{input:?} has partition {partition:?}: expected aws, aws-cn or aws-us-gov")]
    Partition { input: String, partition: String },
    #[error("{input:?} is an ARN of service {service:?}, not dynamodb")]
    Service { input: String, service: String },
    #[error("{input:?} has region {region:?}, which is not an AWS region name such as us-east-1")]
    Region { input: String, region: String },
    #[error("{input:?} has account {account:?}: expected 12 digits")]
    Account { input: String, account: String },
    #[error(
        "{input:?} names {resource:?}: expected table/{{name}} or table/{{name}}/stream/{{label}}"
    )]
    Resource { input: String, resource: String },
    #[error(
        "{input:?} has table name {name:?}: a table name is 3 to 255 characters of a-z, A-Z, 0-9, '_', '-' and '.'"
    )]
    TableName { input: String, name: String },
}

/// The AWS partition an ARN lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Partition {
    Aws,
    AwsCn,
    AwsUsGov,
}

impl Partition {
    pub fn as_str(self) -> &'static str {
        match self {
            Partition::Aws => "aws",
            Partition::AwsCn => "aws-cn",
            Partition::AwsUsGov => "aws-us-gov",
        }
    }
}

/// A DynamoDB table name, checked against DynamoDB's naming rules.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableName(String);

impl TableName {
    fn parse(name: &str) -> Option<Self> {
        let valid_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
        ((3..=255).contains(&name.len()) && name.chars().all(valid_char))
            .then(|| TableName(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The ARN of a DynamoDB table: the event `source` and where the region comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TableArn {
    partition: Partition,
    region: String,
    account: String,
    table: TableName,
}

/// The ARN of one stream of a table (`.../table/{name}/stream/{label}`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StreamArn {
    table: TableArn,
    label: String,
}

/// What a source's `arn` names: a table (follow its current stream) or one pinned stream.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SourceArn {
    Table(TableArn),
    Stream(StreamArn),
}

impl TableArn {
    pub fn partition(&self) -> Partition {
        self.partition
    }
    pub fn region(&self) -> &str {
        &self.region
    }
    pub fn account(&self) -> &str {
        &self.account
    }
    pub fn table(&self) -> &TableName {
        &self.table
    }
}

impl fmt::Display for TableArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "arn:{}:dynamodb:{}:{}:table/{}",
            self.partition.as_str(),
            self.region,
            self.account,
            self.table
        )
    }
}

impl StreamArn {
    pub fn table(&self) -> &TableArn {
        &self.table
    }
    pub fn label(&self) -> &str {
        &self.label
    }
}

impl fmt::Display for StreamArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/stream/{}", self.table, self.label)
    }
}

impl FromStr for StreamArn {
    type Err = ArnError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.parse::<SourceArn>()? {
            SourceArn::Stream(stream) => Ok(stream),
            SourceArn::Table(_) => Err(ArnError::Resource {
                input: s.to_owned(),
                resource: s.splitn(6, ':').nth(5).unwrap_or_default().to_owned(),
            }),
        }
    }
}

impl SourceArn {
    pub fn table(&self) -> &TableArn {
        match self {
            SourceArn::Table(table) => table,
            SourceArn::Stream(stream) => stream.table(),
        }
    }

    pub fn stream(&self) -> Option<&StreamArn> {
        match self {
            SourceArn::Table(_) => None,
            SourceArn::Stream(stream) => Some(stream),
        }
    }
}

impl fmt::Display for SourceArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceArn::Table(table) => table.fmt(f),
            SourceArn::Stream(stream) => stream.fmt(f),
        }
    }
}

/// Region names as TriggerMesh's CRD pattern admits them: `[a-z]{2}(-gov)?-[a-z]+-\d`.
fn is_region(region: &str) -> bool {
    let mut parts = region.split('-').collect::<Vec<_>>();
    let Some(number) = parts.pop() else {
        return false;
    };
    if number.len() != 1 || !number.chars().all(|c| c.is_ascii_digit()) {
        return false;
    }
    let lower = |p: &&str| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase());
    match parts.as_slice() {
        [country, area] => country.len() == 2 && lower(country) && lower(area),
        [country, "gov", area] => country.len() == 2 && lower(country) && lower(area),
        _ => false,
    }
}

impl FromStr for SourceArn {
    type Err = ArnError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let err_input = || input.to_owned();
        let fields: Vec<&str> = input.splitn(6, ':').collect();
        let [arn, partition, service, region, account, resource] = fields.as_slice() else {
            return Err(ArnError::NotAnArn { input: err_input() });
        };
        if *arn != "arn" {
            return Err(ArnError::NotAnArn { input: err_input() });
        }
        let partition = match *partition {
            "aws" => Partition::Aws,
            "aws-cn" => Partition::AwsCn,
            "aws-us-gov" => Partition::AwsUsGov,
            other => {
                return Err(ArnError::Partition {
                    input: err_input(),
                    partition: other.to_owned(),
                });
            }
        };
        if *service != "dynamodb" {
            return Err(ArnError::Service {
                input: err_input(),
                service: (*service).to_owned(),
            });
        }
        if !is_region(region) {
            return Err(ArnError::Region {
                input: err_input(),
                region: (*region).to_owned(),
            });
        }
        if account.len() != 12 || !account.chars().all(|c| c.is_ascii_digit()) {
            return Err(ArnError::Account {
                input: err_input(),
                account: (*account).to_owned(),
            });
        }
        let resource_err = || ArnError::Resource {
            input: err_input(),
            resource: (*resource).to_owned(),
        };
        let path: Vec<&str> = resource.split('/').collect();
        let (name, label) = match path.as_slice() {
            ["table", name] => (*name, None),
            ["table", name, "stream", label] if !label.is_empty() => (*name, Some(*label)),
            _ => return Err(resource_err()),
        };
        let table = TableName::parse(name).ok_or_else(|| ArnError::TableName {
            input: err_input(),
            name: name.to_owned(),
        })?;
        let table = TableArn {
            partition,
            region: (*region).to_owned(),
            account: (*account).to_owned(),
            table,
        };
        Ok(match label {
            None => SourceArn::Table(table),
            Some(label) => SourceArn::Stream(StreamArn {
                table,
                label: label.to_owned(),
            }),
        })
    }
}

/// Stored (in checkpoints) in the text form the API uses.
impl serde::Serialize for StreamArn {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for StreamArn {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_arn_gives_region_and_name() {
        let arn: SourceArn = "arn:aws:dynamodb:us-west-2:123456789012:table/triggermeshtest"
            .parse()
            .expect("valid");
        assert_eq!(arn.table().region(), "us-west-2");
        assert_eq!(arn.table().table().as_str(), "triggermeshtest");
        assert_eq!(arn.stream(), None);
        assert_eq!(
            arn.to_string(),
            "arn:aws:dynamodb:us-west-2:123456789012:table/triggermeshtest"
        );
    }

    #[test]
    fn stream_arn_pins_the_stream_and_keeps_the_table() {
        let input = "arn:aws-us-gov:dynamodb:us-gov-west-1:123456789012:table/t.1/stream/2024-01-02T03:04:05.678";
        let arn: SourceArn = input.parse().expect("valid");
        let stream = arn.stream().expect("a stream arn");
        assert_eq!(stream.label(), "2024-01-02T03:04:05.678");
        assert_eq!(arn.table().partition(), Partition::AwsUsGov);
        assert_eq!(
            arn.table().to_string(),
            "arn:aws-us-gov:dynamodb:us-gov-west-1:123456789012:table/t.1"
        );
        assert_eq!(arn.to_string(), input);
        assert_eq!(input.parse::<StreamArn>().expect("valid"), stream.clone());
    }

    #[test]
    fn china_partition_is_accepted() {
        let arn: SourceArn = "arn:aws-cn:dynamodb:cn-north-1:123456789012:table/orders"
            .parse()
            .expect("valid");
        assert_eq!(arn.table().partition(), Partition::AwsCn);
    }

    #[test]
    fn malformed_arns_say_what_is_wrong() {
        let cases = [
            ("table/orders", "is not an ARN"),
            (
                "arn:gcp:dynamodb:us-east-1:123456789012:table/orders",
                "partition \"gcp\"",
            ),
            (
                "arn:aws:sqs:us-east-1:123456789012:table/orders",
                "service \"sqs\"",
            ),
            (
                "arn:aws:dynamodb:useast1:123456789012:table/orders",
                "region \"useast1\"",
            ),
            (
                "arn:aws:dynamodb:us-east-1:1234:table/orders",
                "account \"1234\"",
            ),
            (
                "arn:aws:dynamodb:us-east-1:123456789012:index/orders",
                "names \"index/orders\"",
            ),
            (
                "arn:aws:dynamodb:us-east-1:123456789012:table/o",
                "table name \"o\"",
            ),
            (
                "arn:aws:dynamodb:us-east-1:123456789012:table/orders/index/by-date",
                "expected table/{name}",
            ),
        ];
        for (input, expected) in cases {
            let err = input.parse::<SourceArn>().expect_err(input).to_string();
            assert!(err.contains(expected), "{input}: {err}");
        }
    }

    #[test]
    fn a_table_arn_is_not_a_stream_arn() {
        assert!(
            "arn:aws:dynamodb:us-east-1:123456789012:table/orders"
                .parse::<StreamArn>()
                .is_err()
        );
    }
}

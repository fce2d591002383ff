//! An in-process fake of the DynamoDB Streams JSON API on loopback.
//!
//! moto cannot be made to split a shard, trim a stream, expire an iterator or
//! throttle on demand, yet those are exactly the situations where a stream
//! reader loses or repeats records. This fake speaks the same wire protocol as
//! the service (awsJson 1.0: `POST /`, `X-Amz-Target:
//! DynamoDBStreams_20120810.<Operation>`, errors as `{"__type", "message"}`),
//! so the adapter binary talks to it through `AWS_ENDPOINT_URL` with the real
//! AWS SDK and what is tested is the adapter's reaction to the service, not to
//! a mock of its own client.
//!
//! A test scripts the stream (tables, streams, shards with parents, records,
//! closing, splitting, trimming), queues faults per operation, scripts the
//! answers a real service gives now and then without an error (a shard missing
//! from DescribeStream, a listing with no shard, a GetRecords answer without
//! `NextShardIterator` on an open shard, a malformed record), and reads back
//! what the adapter asked for: calls per operation, iterator requests, the
//! order in which shards were first read, and shards read before their parent
//! had been read to its end.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// The account every ARN of the fake belongs to.
pub const ACCOUNT: &str = "123456789012";
const TARGET_PREFIX: &str = "DynamoDBStreams_20120810.";
const JSON_1_0: &str = "application/x-amz-json-1.0";
/// The first sequence number handed out. The service's are decimal strings of
/// 21 digits or more; starting at 10^20 keeps every one at 21 digits.
const FIRST_SEQUENCE: u128 = 100_000_000_000_000_000_000;
/// Gap between consecutive sequence numbers, so "one less than a record's
/// sequence number" is never another record's.
const SEQUENCE_STEP: u128 = 100;
/// The service's upper bounds on GetRecords' and DescribeStream's `Limit`.
const MAX_RECORDS_PER_CALL: usize = 1000;
const MAX_SHARDS_PER_PAGE: usize = 100;

/// The four operations of the DynamoDB Streams API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    ListStreams,
    DescribeStream,
    GetShardIterator,
    GetRecords,
}

impl Op {
    fn from_target(target: &str) -> Option<Op> {
        match target.strip_prefix(TARGET_PREFIX)? {
            "ListStreams" => Some(Op::ListStreams),
            "DescribeStream" => Some(Op::DescribeStream),
            "GetShardIterator" => Some(Op::GetShardIterator),
            "GetRecords" => Some(Op::GetRecords),
            _ => None,
        }
    }
}

/// An error the fake answers with instead of doing the operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The iterator is older than 15 minutes.
    ExpiredIterator,
    LimitExceeded,
    Throttling,
    ProvisionedThroughputExceeded,
    /// The position asked for is older than the stream's retention.
    TrimmedDataAccess,
    ResourceNotFound,
    /// HTTP 500.
    InternalServerError,
    /// No answer at all: the request is read and then left hanging, as over
    /// a connection a NAT or load balancer dropped without a word.
    Unanswered,
}

impl Fault {
    fn error(self) -> ApiError {
        let (status, kind) = match self {
            Fault::ExpiredIterator => (
                400,
                "com.amazonaws.dynamodb.v20120810#ExpiredIteratorException",
            ),
            Fault::LimitExceeded => (
                400,
                "com.amazonaws.dynamodb.v20120810#LimitExceededException",
            ),
            Fault::Throttling => (400, "com.amazon.coral.availability#ThrottlingException"),
            Fault::ProvisionedThroughputExceeded => (
                400,
                "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
            ),
            Fault::TrimmedDataAccess => (
                400,
                "com.amazonaws.dynamodb.v20120810#TrimmedDataAccessException",
            ),
            Fault::ResourceNotFound => (
                400,
                "com.amazonaws.dynamodb.v20120810#ResourceNotFoundException",
            ),
            Fault::InternalServerError => {
                (500, "com.amazonaws.dynamodb.v20120810#InternalServerError")
            }
            // Never sent: `handle` waits until the client gives up.
            Fault::Unanswered => (500, "unanswered"),
        };
        ApiError {
            status,
            kind,
            message: format!("injected by the test: {self:?}"),
            fault: Some(self),
        }
    }
}

/// The kind of change a record describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventName {
    Insert,
    Modify,
    #[allow(
        dead_code,
        reason = "part of the fake's scripting API; not every script uses it"
    )]
    Remove,
}

impl EventName {
    fn as_str(self) -> &'static str {
        match self {
            EventName::Insert => "INSERT",
            EventName::Modify => "MODIFY",
            EventName::Remove => "REMOVE",
        }
    }
}

/// One change to an item (partition key `pk`, a string), as a test writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub key: String,
    pub event: EventName,
    /// Stored in the item's `value` number attribute.
    pub value: i64,
    /// Length of an extra `data` string attribute, to size records.
    pub padding: usize,
    /// The item is shaped like a production one ([`Change::rich`]) instead of
    /// just `pk`, `value` and `data`.
    pub rich: bool,
}

impl Change {
    pub fn insert(key: impl Into<String>, value: i64) -> Change {
        Change {
            key: key.into(),
            event: EventName::Insert,
            value,
            padding: 0,
            rich: false,
        }
    }

    pub fn modify(key: impl Into<String>, value: i64) -> Change {
        Change {
            event: EventName::Modify,
            ..Change::insert(key, value)
        }
    }

    #[allow(
        dead_code,
        reason = "part of the fake's scripting API; not every script uses it"
    )]
    pub fn remove(key: impl Into<String>) -> Change {
        Change {
            event: EventName::Remove,
            ..Change::insert(key, 0)
        }
    }

    #[allow(
        dead_code,
        reason = "used by the benchmarks, which include this module"
    )]
    pub fn padded(mut self, bytes: usize) -> Change {
        self.padding = bytes;
        self
    }

    /// Images shaped like a production item rather than a test's: besides
    /// `pk` and `value`, attributes of the types a real table holds (S, N,
    /// BOOL, NULL, SS, NS, L and nested M: an order with a customer, an
    /// address and two lines), about 550 bytes of item per image, so a
    /// MODIFY with both images is about 1.1 KB (its `SizeBytes`; some 2.2 KB
    /// as the DynamoDB JSON GetRecords serves). The old image differs from
    /// the new one in a few attributes, as an update's does; `padding` still
    /// adds its `data` attribute on top.
    #[allow(
        dead_code,
        reason = "used by the benchmarks, which include this module"
    )]
    pub fn rich(mut self) -> Change {
        self.rich = true;
        self
    }
}

/// The attributes [`Change::rich`] adds to an image of item `key` at `value`.
fn rich_attributes(key: &str, value: i64) -> Value {
    let n = value.unsigned_abs();
    let status = ["PENDING", "PAID", "PACKED", "SHIPPED", "DELIVERED"][(n % 5) as usize];
    let line = |i: u64| {
        let size = ["S", "M", "L"][(i % 3) as usize];
        json!({ "M": {
            "sku": { "S": format!("SKU-{:05}-{size}", (n * 7 + i * 131) % 100_000) },
            "title": { "S": format!("Cotton t-shirt, colour {i}") },
            "quantity": { "N": (1 + (n + i) % 4).to_string() },
            "unitPrice": { "N": format!("{}.{:02}", 9 + i * 5, (n + i) % 100) },
            "giftWrap": { "BOOL": (n + i).is_multiple_of(3) },
        }})
    };
    let updated = format!(
        "2026-11-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        1 + n % 28,
        n % 24,
        n % 60,
        (n / 7) % 60,
        n % 1000
    );
    json!({
        "status": { "S": status },
        "paid": { "BOOL": n % 5 >= 1 },
        "total": { "N": format!("{}.{:02}", 40 + n % 60, n % 100) },
        "currency": { "S": "EUR" },
        "updatedAt": { "S": updated },
        "version": { "N": n.to_string() },
        "couponCode": { "NULL": true },
        "tags": { "SS": ["priority", "gift", "eu-west", "newsletter"] },
        "ratings": { "NS": ["4", "5", "3.5"] },
        "customer": { "M": {
            "id": { "S": format!("cust-{:08}", key.len() as u64 * 7919 + n % 1000) },
            "name": { "S": "Ada Lovelace" },
            "email": { "S": "ada.lovelace@example.com" },
            "loyaltyTier": { "N": (n % 4).to_string() },
            "address": { "M": {
                "street": { "S": "12 Analytical Engine Road" },
                "city": { "S": "London" },
                "postcode": { "S": "NW1 2DB" },
                "country": { "S": "GB" },
            }},
        }},
        "lines": { "L": [line(0), line(1)] },
        "note": { "S": "Leave the parcel with the neighbour at no. 14." },
    })
}

/// An item's size as DynamoDB counts it, roughly: attribute names and values,
/// numbers at about half their digits, 3 bytes per list or map, 1 per
/// element of either.
fn item_size(image: &Value) -> usize {
    fn value_size(v: &Value) -> usize {
        let Some((kind, inner)) = v.as_object().and_then(|o| o.iter().next()) else {
            return 0;
        };
        match (kind.as_str(), inner) {
            ("S" | "B", Value::String(s)) => s.len(),
            ("N", Value::String(n)) => n.len() / 2 + 1,
            ("SS" | "BS", Value::Array(a)) => {
                a.iter().filter_map(Value::as_str).map(str::len).sum()
            }
            ("NS", Value::Array(a)) => a
                .iter()
                .filter_map(Value::as_str)
                .map(|n| n.len() / 2 + 1)
                .sum(),
            ("L", Value::Array(a)) => 3 + a.iter().map(|e| 1 + value_size(e)).sum::<usize>(),
            ("M", Value::Object(m)) => {
                3 + m
                    .iter()
                    .map(|(name, e)| 1 + name.len() + value_size(e))
                    .sum::<usize>()
            }
            _ => 1,
        }
    }
    image.as_object().map_or(0, |attributes| {
        attributes
            .iter()
            .map(|(name, v)| name.len() + value_size(v))
            .sum()
    })
}

/// A record the fake wrote to a shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub shard: String,
    pub event_id: String,
    pub sequence_number: String,
    pub key: String,
}

impl Written {
    /// The `partitionkey` its event arrives with (`pk=KEY`), unless an edit
    /// removed the record's `Keys`.
    pub fn partition_key(&self) -> String {
        super::item_key("pk", &self.key)
    }
}

/// Records as written, per item key in stream order (their order in
/// `written`), for [`super::assert_delivered`]. A record whose `Keys` an
/// edit removed arrives without a key: build that expectation by hand.
pub fn written_per_key<'a>(written: impl IntoIterator<Item = &'a Written>) -> super::PerKey {
    super::per_key(
        written
            .into_iter()
            .map(|w| (Some(w.partition_key()), w.event_id.clone())),
    )
}

/// The event ids of `written`, in its order.
pub fn ids(written: &[Written]) -> Vec<String> {
    written.iter().map(|w| w.event_id.clone()).collect()
}

/// `n` changes cycling over `keys` keys (`k0`, `k1`, ...), values from `first`.
pub fn changes(keys: usize, n: usize, first: i64) -> Vec<Change> {
    (0..n)
        .map(|i| Change::modify(format!("k{}", i % keys), first + i as i64))
        .collect()
}

/// One request the fake answered.
#[derive(Debug, Clone)]
pub struct Call {
    pub op: Op,
    pub at: Instant,
    /// The shard it concerned (GetShardIterator, GetRecords).
    #[allow(
        dead_code,
        reason = "part of the fake's scripting API; not every script uses it"
    )]
    pub shard: Option<String>,
    /// `None` when the operation succeeded.
    pub error: Option<String>,
    /// The access key id the request was signed with: which process asked,
    /// when each runs with a key of its own.
    #[allow(
        dead_code,
        reason = "part of the fake's scripting API; not every script uses it"
    )]
    pub client: Option<String>,
}

/// One GetShardIterator request, as asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IteratorRequest {
    pub shard: String,
    /// TRIM_HORIZON, LATEST, AT_SEQUENCE_NUMBER or AFTER_SEQUENCE_NUMBER.
    pub kind: String,
    pub sequence_number: Option<String>,
    /// The error code answered, if any.
    pub error: Option<String>,
}

#[derive(Debug)]
struct ApiError {
    status: u16,
    kind: &'static str,
    message: String,
    fault: Option<Fault>,
}

impl ApiError {
    fn validation(message: impl Into<String>) -> ApiError {
        ApiError {
            status: 400,
            kind: "com.amazon.coral.validate#ValidationException",
            message: message.into(),
            fault: None,
        }
    }

    fn not_found(message: impl Into<String>) -> ApiError {
        ApiError {
            message: message.into(),
            ..Fault::ResourceNotFound.error()
        }
    }

    fn trimmed(message: impl Into<String>) -> ApiError {
        ApiError {
            message: message.into(),
            ..Fault::TrimmedDataAccess.error()
        }
    }

    fn code(&self) -> String {
        self.kind.rsplit('#').next().unwrap_or(self.kind).to_owned()
    }
}

struct StoredRecord {
    sequence: u128,
    /// What `append` and `records` report of it.
    #[allow(
        dead_code,
        reason = "part of the fake's scripting API; not every script uses it"
    )]
    written: Written,
    /// The record as GetRecords returns it, rendered once at append time so
    /// that serving a batch costs the fake little CPU (benchmarks share it).
    json: String,
}

struct ShardState {
    stream: String,
    parent: Option<String>,
    start: u128,
    end: Option<u128>,
    /// Sorted by sequence number (appends only ever increase it).
    records: Vec<StoredRecord>,
    /// The greatest sequence number trimmed away (0: nothing trimmed).
    trimmed_up_to: u128,
    /// A GetRecords answer reached the end of this closed shard.
    end_served: bool,
}

struct StreamState {
    table: String,
    label: String,
    /// Shard ids in creation order (which is also their lexical order).
    shards: Vec<String>,
}

/// Where an iterator points: the next record is the first one after `after`.
struct Position {
    shard: String,
    after: u128,
}

/// A period in which every call of `op` answers `fault`; it starts
/// (`until` set) at the first such call.
struct Window {
    op: Op,
    period: Duration,
    until: Option<Instant>,
    fault: Fault,
}

struct Service {
    region: String,
    records_per_call: usize,
    shards_per_page: usize,
    /// Table name to its streams' ARNs, oldest first; empty: no stream.
    tables: BTreeMap<String, Vec<String>>,
    streams: HashMap<String, StreamState>,
    shards: HashMap<String, ShardState>,
    next_sequence: u128,
    next_id: u64,
    queued: HashMap<Op, VecDeque<Fault>>,
    windows: Vec<Window>,
    calls: Vec<Call>,
    iterator_requests: Vec<IteratorRequest>,
    first_reads: Vec<String>,
    read_before_parent_end: Vec<String>,
    /// Shard to how many more DescribeStream answers leave it out. The
    /// service's DescribeStream is eventually consistent: a shard that exists,
    /// and may be being read, is sometimes missing from an answer.
    hidden: HashMap<String, usize>,
    /// How many more DescribeStream answers list no shard at all (status
    /// ENABLED), as an eventually consistent answer can.
    empty_describes: usize,
    /// Shard to how many more GetRecords answers on it leave out
    /// `NextShardIterator` although the shard is open: the service's
    /// documentation says a null iterator means a closed shard read to its end,
    /// and a reader that trusts that alone gives up on a shard still written to.
    dropped_iterators: HashMap<String, usize>,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

fn sequence_string(sequence: u128) -> String {
    format!("{sequence:021}")
}

fn parse_sequence(s: &str) -> Option<u128> {
    (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

fn encode_iterator(shard: &str, after: u128, serial: u64) -> String {
    URL_SAFE_NO_PAD.encode(format!("{shard}|{after}|{serial}"))
}

fn decode_iterator(iterator: &str) -> Option<Position> {
    let text = String::from_utf8(URL_SAFE_NO_PAD.decode(iterator).ok()?).ok()?;
    let mut parts = text.split('|');
    let shard = parts.next()?.to_owned();
    let after = parts.next()?.parse().ok()?;
    Some(Position { shard, after })
}

impl Service {
    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn sequence(&mut self) -> u128 {
        let sequence = self.next_sequence;
        self.next_sequence += SEQUENCE_STEP;
        sequence
    }

    fn shard_mut(&mut self, shard: &str) -> &mut ShardState {
        self.shards
            .get_mut(shard)
            .unwrap_or_else(|| panic!("the fake has no shard {shard}"))
    }

    fn take_fault(&mut self, op: Op) -> Option<Fault> {
        if let Some(fault) = self.queued.get_mut(&op).and_then(VecDeque::pop_front) {
            return Some(fault);
        }
        let now = Instant::now();
        for window in self.windows.iter_mut().filter(|w| w.op == op) {
            window.until.get_or_insert(now + window.period);
        }
        self.windows
            .retain(|w| w.until.is_none_or(|until| until > now));
        self.windows.iter().find(|w| w.op == op).map(|w| w.fault)
    }

    fn append(&mut self, shard: &str, changes: Vec<Change>) -> Vec<Written> {
        changes
            .into_iter()
            .map(|change| self.append_one(shard, change, |_| {}))
            .collect()
    }

    /// Appends one record; `edit` may change its JSON as GetRecords serves it.
    fn append_one(
        &mut self,
        shard: &str,
        change: Change,
        edit: impl FnOnce(&mut Value),
    ) -> Written {
        assert!(
            self.shard_mut(shard).end.is_none(),
            "shard {shard} is closed: it takes no new records"
        );
        let sequence = self.sequence();
        let id = self.id();
        let event_id = format!("{:016x}{:016x}", id, id.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut json = self.record_json(&event_id, &change, sequence, unix_now());
        edit(&mut json);
        let record = Written {
            shard: shard.to_owned(),
            // What the served record says, which an edit may have removed.
            event_id: json["eventID"].as_str().unwrap_or_default().to_owned(),
            sequence_number: sequence_string(sequence),
            key: change.key,
        };
        self.shard_mut(shard).records.push(StoredRecord {
            sequence,
            written: record.clone(),
            json: json.to_string(),
        });
        record
    }

    fn close(&mut self, shard: &str) {
        let end = self.sequence();
        let state = self.shard_mut(shard);
        if state.end.is_none() {
            state.end = Some(state.records.last().map_or(end, |r| r.sequence));
        }
    }

    fn add_shard(&mut self, stream: &str, parent: Option<&str>) -> String {
        assert!(
            self.streams.contains_key(stream),
            "the fake has no stream {stream}"
        );
        if let Some(parent) = parent {
            assert!(
                self.shards.contains_key(parent),
                "the fake has no shard {parent}"
            );
        }
        let n = self.id();
        // Creation time first, as the service does: lexical order is age order.
        let id = format!(
            "shardId-{:020}-{:08x}",
            1_700_000_000_000u64 + n,
            (n as u32).wrapping_mul(2_654_435_761)
        );
        let start = self.sequence();
        self.shards.insert(
            id.clone(),
            ShardState {
                stream: stream.to_owned(),
                parent: parent.map(str::to_owned),
                start,
                end: None,
                records: Vec::new(),
                trimmed_up_to: 0,
                end_served: false,
            },
        );
        if let Some(s) = self.streams.get_mut(stream) {
            s.shards.push(id.clone());
        }
        id
    }

    fn record_json(&self, event_id: &str, change: &Change, sequence: u128, created: u64) -> Value {
        let keys = json!({ "pk": { "S": change.key } });
        let image = |value: i64| {
            let mut image =
                json!({ "pk": { "S": change.key }, "value": { "N": value.to_string() } });
            if change.padding > 0 {
                image["data"] = json!({ "S": "x".repeat(change.padding) });
            }
            if change.rich
                && let (Some(image), Value::Object(more)) =
                    (image.as_object_mut(), rich_attributes(&change.key, value))
            {
                image.extend(more);
            }
            image
        };
        let (new_image, old_image) = match change.event {
            EventName::Insert => (Some(image(change.value)), None),
            EventName::Modify => (Some(image(change.value)), Some(image(change.value - 1))),
            EventName::Remove => (None, Some(image(change.value))),
        };
        // Plain records keep the size they always had.
        let size = if change.rich {
            2 + change.key.len()
                + new_image
                    .iter()
                    .chain(&old_image)
                    .map(item_size)
                    .sum::<usize>()
        } else {
            40 + change.key.len() + change.padding
        };
        let mut dynamodb = json!({
            "ApproximateCreationDateTime": created,
            "Keys": keys,
            "SequenceNumber": sequence_string(sequence),
            "SizeBytes": size,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        });
        if let Some(image) = new_image {
            dynamodb["NewImage"] = image;
        }
        if let Some(image) = old_image {
            dynamodb["OldImage"] = image;
        }
        json!({
            "eventID": event_id,
            "eventName": change.event.as_str(),
            "eventVersion": "1.1",
            "eventSource": "aws:dynamodb",
            "awsRegion": self.region,
            "dynamodb": dynamodb,
        })
    }

    fn list_streams(&mut self, input: &Value) -> Result<Value, ApiError> {
        let table = input["TableName"].as_str();
        let limit = input["Limit"].as_u64().map_or(100, |l| l.clamp(1, 100)) as usize;
        let start = input["ExclusiveStartStreamArn"].as_str();
        let all: Vec<&String> = self
            .tables
            .iter()
            .filter(|(name, _)| table.is_none_or(|t| t == name.as_str()))
            .flat_map(|(_, arns)| arns)
            .filter(|arn| start.is_none_or(|s| arn.as_str() > s))
            .collect();
        let page: Vec<Value> = all
            .iter()
            .take(limit)
            .map(|arn| {
                let stream = &self.streams[arn.as_str()];
                json!({ "StreamArn": arn, "TableName": stream.table, "StreamLabel": stream.label })
            })
            .collect();
        let mut out = json!({ "Streams": page });
        if all.len() > limit {
            out["LastEvaluatedStreamArn"] = json!(all[limit - 1]);
        }
        Ok(out)
    }

    fn describe_stream(&mut self, input: &Value) -> Result<Value, ApiError> {
        let arn = input["StreamArn"]
            .as_str()
            .ok_or_else(|| ApiError::validation("StreamArn is required"))?;
        let stream = self.streams.get(arn).ok_or_else(|| {
            ApiError::not_found(format!(
                "Requested resource not found: Stream: {arn} not found"
            ))
        })?;
        // Every answer about this stream counts against the scripted omissions.
        let empty = self.empty_describes > 0;
        self.empty_describes = self.empty_describes.saturating_sub(1);
        let mut hidden = HashSet::new();
        for (shard, left) in &mut self.hidden {
            if *left > 0 && stream.shards.contains(shard) {
                *left -= 1;
                hidden.insert(shard.as_str());
            }
        }
        let limit = input["Limit"]
            .as_u64()
            .map_or(MAX_SHARDS_PER_PAGE, |l| {
                (l as usize).clamp(1, MAX_SHARDS_PER_PAGE)
            })
            .min(self.shards_per_page);
        let start = input["ExclusiveStartShardId"].as_str();
        let rest: Vec<&String> = stream
            .shards
            .iter()
            .filter(|_| !empty)
            .filter(|id| !hidden.contains(id.as_str()))
            .filter(|id| start.is_none_or(|s| id.as_str() > s))
            .collect();
        let shards: Vec<Value> = rest
            .iter()
            .take(limit)
            .map(|id| {
                let shard = &self.shards[id.as_str()];
                let mut range = json!({ "StartingSequenceNumber": sequence_string(shard.start) });
                if let Some(end) = shard.end {
                    range["EndingSequenceNumber"] = json!(sequence_string(end));
                }
                let mut out = json!({ "ShardId": id, "SequenceNumberRange": range });
                if let Some(parent) = &shard.parent {
                    out["ParentShardId"] = json!(parent);
                }
                out
            })
            .collect();
        let mut description = json!({
            "StreamArn": arn,
            "StreamLabel": stream.label,
            "StreamStatus": "ENABLED",
            "StreamViewType": "NEW_AND_OLD_IMAGES",
            "CreationRequestDateTime": 1_700_000_000,
            "TableName": stream.table,
            "KeySchema": [{ "AttributeName": "pk", "KeyType": "HASH" }],
            "Shards": shards,
        });
        if rest.len() > limit {
            description["LastEvaluatedShardId"] = json!(rest[limit - 1]);
        }
        Ok(json!({ "StreamDescription": description }))
    }

    fn get_shard_iterator(&mut self, input: &Value) -> Result<Value, ApiError> {
        let (Some(arn), Some(shard_id), Some(kind)) = (
            input["StreamArn"].as_str(),
            input["ShardId"].as_str(),
            input["ShardIteratorType"].as_str(),
        ) else {
            return Err(ApiError::validation(
                "StreamArn, ShardId and ShardIteratorType are required",
            ));
        };
        let sequence = input["SequenceNumber"].as_str();
        let result = self.iterator_for(arn, shard_id, kind, sequence);
        self.iterator_requests.push(IteratorRequest {
            shard: shard_id.to_owned(),
            kind: kind.to_owned(),
            sequence_number: sequence.map(str::to_owned),
            error: result.as_ref().err().map(ApiError::code),
        });
        result
    }

    fn iterator_for(
        &mut self,
        arn: &str,
        shard_id: &str,
        kind: &str,
        sequence: Option<&str>,
    ) -> Result<Value, ApiError> {
        let latest = self.next_sequence - 1;
        let shard = self
            .shards
            .get(shard_id)
            .filter(|s| s.stream == arn)
            .ok_or_else(|| {
                ApiError::not_found(format!(
                    "Requested resource not found: Shard: {shard_id} in Stream: {arn} not found"
                ))
            })?;
        let given = || {
            sequence
                .and_then(parse_sequence)
                .ok_or_else(|| ApiError::validation(format!("{kind} needs a valid SequenceNumber")))
        };
        let after = match kind {
            "TRIM_HORIZON" => shard.trimmed_up_to,
            "LATEST" => latest,
            "AT_SEQUENCE_NUMBER" => given()?.saturating_sub(1),
            "AFTER_SEQUENCE_NUMBER" => given()?,
            other => {
                return Err(ApiError::validation(format!(
                    "unknown ShardIteratorType {other}"
                )));
            }
        };
        if after < shard.trimmed_up_to {
            return Err(ApiError::trimmed(format!(
                "Records after {after} in shard {shard_id} are beyond the trim horizon"
            )));
        }
        let serial = self.id();
        Ok(json!({ "ShardIterator": encode_iterator(shard_id, after, serial) }))
    }

    fn get_records(&mut self, input: &Value) -> Result<String, ApiError> {
        let position = input["ShardIterator"]
            .as_str()
            .and_then(decode_iterator)
            .ok_or_else(|| ApiError::validation("Invalid ShardIterator"))?;
        let limit = input["Limit"]
            .as_u64()
            .map_or(MAX_RECORDS_PER_CALL, |l| {
                (l as usize).clamp(1, MAX_RECORDS_PER_CALL)
            })
            .min(self.records_per_call);
        let shard = self
            .shards
            .get(&position.shard)
            .ok_or_else(|| ApiError::not_found(format!("Shard {} not found", position.shard)))?;
        if position.after < shard.trimmed_up_to {
            return Err(ApiError::trimmed(format!(
                "Records after {} in shard {} were trimmed while the iterator was held",
                position.after, position.shard
            )));
        }
        let from = shard
            .records
            .partition_point(|r| r.sequence <= position.after);
        let batch = &shard.records[from..(from + limit).min(shard.records.len())];
        let last = batch.last().map_or(position.after, |r| r.sequence);
        let at_end = shard.end.is_some() && from + batch.len() == shard.records.len();
        let records: Vec<&str> = batch.iter().map(|r| r.json.as_str()).collect();
        let mut out = format!("{{\"Records\":[{}]", records.join(","));
        let parent_unfinished = shard
            .parent
            .as_ref()
            .and_then(|p| self.shards.get(p))
            .is_some_and(|p| !p.end_served);

        let id = position.shard;
        if parent_unfinished && !self.read_before_parent_end.contains(&id) {
            self.read_before_parent_end.push(id.clone());
        }
        if !self.first_reads.contains(&id) {
            self.first_reads.push(id.clone());
        }
        let dropped = self
            .dropped_iterators
            .get_mut(&id)
            .filter(|left| **left > 0)
            .map(|left| *left -= 1)
            .is_some();
        if at_end {
            self.shard_mut(&id).end_served = true;
        } else if !dropped {
            let serial = self.id();
            out.push_str(",\"NextShardIterator\":");
            out.push_str(&json!(encode_iterator(&id, last, serial)).to_string());
        }
        out.push('}');
        Ok(out)
    }

    fn answer(&mut self, op: Op, input: &Value) -> (Option<String>, Result<String, ApiError>) {
        let shard = match op {
            Op::GetShardIterator => input["ShardId"].as_str().map(str::to_owned),
            Op::GetRecords => input["ShardIterator"]
                .as_str()
                .and_then(decode_iterator)
                .map(|p| p.shard),
            _ => None,
        };
        if let Some(fault) = self.take_fault(op) {
            return (shard, Err(fault.error()));
        }
        let result = match op {
            Op::ListStreams => self.list_streams(input).map(|v| v.to_string()),
            Op::DescribeStream => self.describe_stream(input).map(|v| v.to_string()),
            Op::GetShardIterator => self.get_shard_iterator(input).map(|v| v.to_string()),
            Op::GetRecords => self.get_records(input),
        };
        (shard, result)
    }
}

type Shared = Arc<Mutex<Service>>;

fn lock(state: &Shared) -> MutexGuard<'_, Service> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

fn reply(status: u16, body: &Value) -> Response {
    reply_raw(status, body.to_string())
}

fn reply_raw(status: u16, body: String) -> Response {
    let mut response = (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        body,
    )
        .into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON_1_0));
    headers.insert(
        "x-amzn-requestid",
        HeaderValue::from_static("00000000-0000-0000-0000-000000000000"),
    );
    response
}

async fn handle(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let Some(op) = Op::from_target(target) else {
        return reply(
            400,
            &json!({
                "__type": "com.amazon.coral.service#UnknownOperationException",
                "message": format!("unknown operation {target:?}"),
            }),
        );
    };
    let input: Value = match serde_json::from_slice(&body) {
        Ok(value @ Value::Object(_)) => value,
        _ => {
            return reply(
                400,
                &json!({
                    "__type": "com.amazon.coral.service#SerializationException",
                    "message": "the body is not a JSON object",
                }),
            );
        }
    };
    // SigV4: "AWS4-HMAC-SHA256 Credential=AKID/DATE/REGION/SERVICE/aws4_request, ...".
    let client = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split("Credential=").nth(1))
        .and_then(|v| v.split('/').next())
        .map(str::to_owned);
    let result = {
        let mut state = lock(&state);
        let (shard, result) = state.answer(op, &input);
        state.calls.push(Call {
            op,
            at: Instant::now(),
            shard,
            error: result.as_ref().err().map(ApiError::code),
            client,
        });
        result
    };
    match result {
        Ok(out) => reply_raw(200, out),
        Err(e) if e.fault == Some(Fault::Unanswered) => std::future::pending().await,
        Err(e) => reply(e.status, &json!({ "__type": e.kind, "message": e.message })),
    }
}

/// Options for [`FakeStreams`]; the defaults are the service's.
pub struct FakeStreamsBuilder {
    region: String,
    records_per_call: usize,
    shards_per_page: usize,
}

impl FakeStreamsBuilder {
    #[allow(
        dead_code,
        reason = "part of the fake's scripting API; not every script uses it"
    )]
    pub fn region(mut self, region: &str) -> Self {
        self.region = region.to_owned();
        self
    }

    /// At most this many records per GetRecords answer, whatever `Limit` asks.
    #[allow(
        dead_code,
        reason = "part of the fake's scripting API; not every script uses it"
    )]
    pub fn records_per_call(mut self, n: usize) -> Self {
        self.records_per_call = n.clamp(1, MAX_RECORDS_PER_CALL);
        self
    }

    /// At most this many shards per DescribeStream page (the service: 100).
    #[allow(
        dead_code,
        reason = "part of the fake's scripting API; not every script uses it"
    )]
    pub fn shards_per_page(mut self, n: usize) -> Self {
        self.shards_per_page = n.clamp(1, MAX_SHARDS_PER_PAGE);
        self
    }

    /// Serves on a free port of 127.0.0.1 until the fake is dropped.
    pub async fn start(self) -> FakeStreams {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind the fake Streams API");
        let port = listener.local_addr().expect("local addr").port();
        let state: Shared = Arc::new(Mutex::new(Service {
            region: self.region.clone(),
            records_per_call: self.records_per_call,
            shards_per_page: self.shards_per_page,
            tables: BTreeMap::new(),
            streams: HashMap::new(),
            shards: HashMap::new(),
            next_sequence: FIRST_SEQUENCE,
            next_id: 0,
            queued: HashMap::new(),
            windows: Vec::new(),
            calls: Vec::new(),
            iterator_requests: Vec::new(),
            first_reads: Vec::new(),
            read_before_parent_end: Vec::new(),
            hidden: HashMap::new(),
            empty_describes: 0,
            dropped_iterators: HashMap::new(),
        }));
        let app = Router::new().fallback(handle).with_state(state.clone());
        let stop = super::serve_until_stopped(listener, app);
        FakeStreams {
            endpoint: format!("http://127.0.0.1:{port}"),
            region: self.region,
            state,
            stop: Some(stop),
        }
    }
}

/// The fake service; every method takes effect at once for the next request.
pub struct FakeStreams {
    /// For `AWS_ENDPOINT_URL`.
    pub endpoint: String,
    pub region: String,
    state: Shared,
    stop: Option<oneshot::Sender<()>>,
}

impl FakeStreams {
    pub fn builder() -> FakeStreamsBuilder {
        FakeStreamsBuilder {
            region: "us-east-1".to_owned(),
            records_per_call: MAX_RECORDS_PER_CALL,
            shards_per_page: MAX_SHARDS_PER_PAGE,
        }
    }

    pub async fn start() -> FakeStreams {
        FakeStreams::builder().start().await
    }

    fn lock(&self) -> MutexGuard<'_, Service> {
        lock(&self.state)
    }

    /// The ARN the adapter's `ARN` setting names.
    pub fn table_arn(&self, table: &str) -> String {
        format!("arn:aws:dynamodb:{}:{ACCOUNT}:table/{table}", self.region)
    }

    /// A table with no stream: ListStreams lists nothing for it.
    pub fn create_table(&self, table: &str) {
        self.lock().tables.entry(table.to_owned()).or_default();
    }

    /// Enables a new stream on the table (creating the table if needed) and
    /// returns its ARN; ListStreams lists it from now on.
    pub fn enable_stream(&self, table: &str) -> String {
        let mut state = self.lock();
        let n = state.id();
        let label = format!("2024-01-01T00:00:00.{n:03}");
        let arn = format!("{}/stream/{label}", self.table_arn(table));
        state.streams.insert(
            arn.clone(),
            StreamState {
                table: table.to_owned(),
                label,
                shards: Vec::new(),
            },
        );
        state
            .tables
            .entry(table.to_owned())
            .or_default()
            .push(arn.clone());
        arn
    }

    /// A new open shard of `stream`, the child of `parent` if given.
    pub fn add_shard(&self, stream: &str, parent: Option<&str>) -> String {
        self.lock().add_shard(stream, parent)
    }

    /// Appends records to an open shard, in order; returns them as written.
    pub fn append(&self, shard: &str, changes: impl IntoIterator<Item = Change>) -> Vec<Written> {
        self.lock().append(shard, changes.into_iter().collect())
    }

    /// Appends one record to an open shard after `edit` changed its JSON as
    /// GetRecords will serve it, e.g. to leave out `Keys`, or `eventID` and
    /// `dynamodb.SequenceNumber` for a malformed record. The fake still places
    /// it at a sequence number of its own (the returned `sequence_number`),
    /// so iterators move past it; the returned `event_id` is what the served
    /// record carries (empty when the edit removed it).
    pub fn append_edited(
        &self,
        shard: &str,
        change: Change,
        edit: impl FnOnce(&mut Value),
    ) -> Written {
        self.lock().append_one(shard, change, edit)
    }

    /// Closes a shard: it gets an ending sequence number and takes no records.
    pub fn close(&self, shard: &str) {
        self.lock().close(shard);
    }

    /// Appends and closes in one step, so the next GetRecords of a reader at
    /// the shard's current end returns these records and no next iterator.
    pub fn append_and_close(
        &self,
        shard: &str,
        changes: impl IntoIterator<Item = Change>,
    ) -> Vec<Written> {
        let mut state = self.lock();
        let written = state.append(shard, changes.into_iter().collect());
        state.close(shard);
        written
    }

    /// Closes `shard` and creates `children` open shards whose parent it is,
    /// as DynamoDB does when it splits a shard.
    pub fn split(&self, shard: &str, children: usize) -> Vec<String> {
        let mut state = self.lock();
        state.close(shard);
        let stream = state.shard_mut(shard).stream.clone();
        (0..children)
            .map(|_| state.add_shard(&stream, Some(shard)))
            .collect()
    }

    /// Removes the shard's records with a sequence number below `keep_from`,
    /// as the 24-hour retention does. Positions before a removed record then
    /// answer TrimmedDataAccessException (GetShardIterator and GetRecords),
    /// and TRIM_HORIZON starts at the oldest record left. Returns how many
    /// records were removed.
    pub fn trim(&self, shard: &str, keep_from: &str) -> usize {
        let keep_from = parse_sequence(keep_from).expect("a sequence number");
        let mut state = self.lock();
        let shard = state.shard_mut(shard);
        let cut = shard.records.partition_point(|r| r.sequence < keep_from);
        if let Some(last) = shard.records.drain(..cut).next_back() {
            shard.trimmed_up_to = shard.trimmed_up_to.max(last.sequence);
        }
        cut
    }

    /// The next `n` calls of `op` answer `fault` (after any queued before).
    pub fn fail_next(&self, op: Op, n: usize, fault: Fault) {
        self.lock()
            .queued
            .entry(op)
            .or_default()
            .extend(std::iter::repeat_n(fault, n));
    }

    /// Every call of `op` answers `fault` for `period` from the first call of
    /// `op` that no queued fault ([`Self::fail_next`]) answers: the clock
    /// starts when the client is there, so a process slow to start on a loaded
    /// machine does not find the window already over.
    pub fn fail_for(&self, op: Op, period: Duration, fault: Fault) {
        self.lock().windows.push(Window {
            op,
            period,
            until: None,
            fault,
        });
    }

    /// Leaves `shard` out of the next `n` DescribeStream answers about its
    /// stream (faults do not count), though it exists and may be being read:
    /// the service's DescribeStream is eventually consistent.
    pub fn hide_from_describe(&self, shard: &str, n: usize) {
        let mut state = self.lock();
        state.shard_mut(shard);
        *state.hidden.entry(shard.to_owned()).or_default() += n;
    }

    /// DescribeStream answers `shard` is still to be left out of.
    pub fn hidden_from_describe(&self, shard: &str) -> usize {
        self.lock().hidden.get(shard).copied().unwrap_or_default()
    }

    /// The next `n` DescribeStream answers (faults do not count) say the
    /// stream is ENABLED and list no shard, as an eventually consistent
    /// answer can: nothing is gone, it is just not listed this time.
    pub fn describe_empty(&self, n: usize) {
        self.lock().empty_describes += n;
    }

    /// Empty DescribeStream answers still to come.
    pub fn pending_empty_describes(&self) -> usize {
        self.lock().empty_describes
    }

    /// The next `n` GetRecords answers on `shard` (faults do not count) carry
    /// no `NextShardIterator` even though the shard is open and not read to
    /// its end; the records they hold are served as usual. A reader must not
    /// take such an answer alone for the end of a shard that DescribeStream
    /// lists without an ending sequence number.
    pub fn drop_next_iterator(&self, shard: &str, n: usize) {
        let mut state = self.lock();
        state.shard_mut(shard);
        *state.dropped_iterators.entry(shard.to_owned()).or_default() += n;
    }

    /// GetRecords answers on `shard` still to come without a next iterator.
    pub fn pending_dropped_iterators(&self, shard: &str) -> usize {
        self.lock()
            .dropped_iterators
            .get(shard)
            .copied()
            .unwrap_or_default()
    }

    /// Queued faults of `op` not answered yet.
    pub fn pending_faults(&self, op: Op) -> usize {
        self.lock().queued.get(&op).map_or(0, VecDeque::len)
    }

    /// Requests of `op` answered so far, faults included.
    pub fn calls(&self, op: Op) -> usize {
        self.lock().calls.iter().filter(|c| c.op == op).count()
    }

    /// Every request answered so far, in order.
    pub fn call_log(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    /// Every GetShardIterator request, in order.
    pub fn iterator_requests(&self) -> Vec<IteratorRequest> {
        self.lock().iterator_requests.clone()
    }

    /// Shards in the order a GetRecords call first succeeded on them.
    pub fn first_reads(&self) -> Vec<String> {
        self.lock().first_reads.clone()
    }

    /// Shards read (GetRecords) while their parent, still listed, had not been
    /// read to its end: each is a lineage-order violation.
    pub fn read_before_parent_end(&self) -> Vec<String> {
        self.lock().read_before_parent_end.clone()
    }

    /// The records a shard holds now (trimmed ones excluded), in order.
    #[allow(
        dead_code,
        reason = "part of the fake's scripting API; not every script uses it"
    )]
    pub fn records(&self, shard: &str) -> Vec<Written> {
        let state = self.lock();
        state.shards[shard]
            .records
            .iter()
            .map(|r| r.written.clone())
            .collect()
    }

    /// Shards of `stream`, in creation order.
    pub fn shards(&self, stream: &str) -> Vec<String> {
        self.lock().streams[stream].shards.clone()
    }

    /// Requests of any operation answered so far; per operation for a report.
    pub fn call_counts(&self) -> BTreeMap<Op, usize> {
        let mut counts = BTreeMap::new();
        for call in &self.lock().calls {
            *counts.entry(call.op).or_default() += 1;
        }
        counts
    }

    /// Shards that have been read to their end.
    pub fn ended(&self) -> HashSet<String> {
        self.lock()
            .shards
            .iter()
            .filter(|(_, s)| s.end_served)
            .map(|(id, _)| id.clone())
            .collect()
    }
}

impl Drop for FakeStreams {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

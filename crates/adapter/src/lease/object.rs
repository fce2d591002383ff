//! The Lease object of one shard: its name, labels and annotations, and the
//! changes a replica makes to it. Pure.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use sha2::{Digest, Sha256};

use dynamodb_source_stream::ShardId;

/// Selects the shard Leases of one source (its name is the value).
pub(crate) const SOURCE_LABEL: &str = "sources.triggermesh.io/shard-lease-of";
/// The shard a Lease guards, as the Streams API spells it (names are lowercase).
pub(crate) const SHARD_ANNOTATION: &str = "sources.triggermesh.io/shard-id";
/// Written by a replica that asks the holder to hand the shard over to it.
pub(crate) const HANDOFF_ANNOTATION: &str = "sources.triggermesh.io/handoff-to";

/// The source the Leases belong to, and who this replica is.
#[derive(Debug, Clone)]
pub(crate) struct Owner {
    pub namespace: String,
    pub source: String,
    pub uid: String,
    pub identity: String,
    pub duration_seconds: i32,
}

/// The Lease name of `shard`: `SOURCE.SHARD` in lowercase, or a digest of
/// both when that is not a valid name.
pub(crate) fn name(source: &str, shard: &ShardId) -> String {
    let plain = format!("{source}.{}", shard.as_str().to_ascii_lowercase());
    let valid = plain.len() <= 253
        && plain
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && plain.starts_with(|c: char| c.is_ascii_alphanumeric())
        && plain.ends_with(|c: char| c.is_ascii_alphanumeric());
    if valid {
        return plain;
    }
    let digest = Sha256::digest(format!("{source}\n{}", shard.as_str()).as_bytes());
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("{}.{hex}", &source[..source.floor_char_boundary(200)])
}

/// The shard a listed Lease guards, if it is one of ours.
pub(crate) fn shard_of(lease: &Lease) -> Option<ShardId> {
    lease
        .metadata
        .annotations
        .as_ref()?
        .get(SHARD_ANNOTATION)
        .map(|s| ShardId::new(s.clone()))
}

pub(crate) fn holder(lease: &Lease) -> Option<&str> {
    lease
        .spec
        .as_ref()?
        .holder_identity
        .as_deref()
        .filter(|h| !h.is_empty())
}

pub(crate) fn handoff_to(lease: &Lease) -> Option<&str> {
    lease
        .metadata
        .annotations
        .as_ref()?
        .get(HANDOFF_ANNOTATION)
        .map(String::as_str)
}

/// How long the holder promised the Lease stays valid without renewal.
pub(crate) fn duration_seconds(lease: &Lease) -> Option<i32> {
    lease.spec.as_ref()?.lease_duration_seconds
}

/// A new Lease for `shard`, held by this replica, owned by the source so
/// that it goes with it.
pub(crate) fn new(owner: &Owner, shard: &ShardId, now: Timestamp) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some(name(&owner.source, shard)),
            namespace: Some(owner.namespace.clone()),
            labels: Some([(SOURCE_LABEL.to_owned(), owner.source.clone())].into()),
            annotations: Some([(SHARD_ANNOTATION.to_owned(), shard.as_str().to_owned())].into()),
            owner_references: Some(vec![OwnerReference {
                api_version: "sources.triggermesh.io/v1alpha1".to_owned(),
                kind: "AWSDynamoDBSource".to_owned(),
                name: owner.source.clone(),
                uid: owner.uid.clone(),
                controller: Some(false),
                block_owner_deletion: Some(false),
            }]),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(owner.identity.clone()),
            lease_duration_seconds: Some(owner.duration_seconds),
            acquire_time: Some(MicroTime(now)),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(0),
            ..LeaseSpec::default()
        }),
    }
}

/// `lease` passed to `holder` (`None`: released), with no hand-over asked.
pub(crate) fn pass(lease: &Lease, holder: Option<&str>, duration: i32, now: Timestamp) -> Lease {
    let mut next = lease.clone();
    next.metadata.managed_fields = None;
    if let Some(annotations) = next.metadata.annotations.as_mut() {
        annotations.remove(HANDOFF_ANNOTATION);
    }
    let spec = next.spec.get_or_insert_with(LeaseSpec::default);
    spec.holder_identity = holder.map(str::to_owned);
    spec.lease_duration_seconds = Some(duration);
    spec.acquire_time = holder.map(|_| MicroTime(now));
    spec.renew_time = holder.map(|_| MicroTime(now));
    spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
    next
}

/// `lease` renewed by its holder.
pub(crate) fn renewed(lease: &Lease, duration: i32, now: Timestamp) -> Lease {
    let mut next = lease.clone();
    next.metadata.managed_fields = None;
    let spec = next.spec.get_or_insert_with(LeaseSpec::default);
    spec.renew_time = Some(MicroTime(now));
    spec.lease_duration_seconds = Some(duration);
    next
}

/// The merge patch that asks a lease's holder to hand it over to `to`.
pub(crate) fn ask_patch(to: &str) -> serde_json::Value {
    serde_json::json!({"metadata": {"annotations": {HANDOFF_ANNOTATION: to}}})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner() -> Owner {
        Owner {
            namespace: "shop".into(),
            source: "orders".into(),
            uid: "u-1".into(),
            identity: "orders-adapter-abc".into(),
            duration_seconds: 30,
        }
    }

    #[test]
    fn names_are_valid_and_distinct() {
        let shard = ShardId::new("shardId-00000001700000000000-abcdef12");
        assert_eq!(
            name("orders", &shard),
            "orders.shardid-00000001700000000000-abcdef12"
        );
        let odd = ShardId::new("Shard_With_Underscores");
        let hashed = name("orders", &odd);
        assert!(hashed.starts_with("orders."));
        assert_ne!(
            hashed,
            name("orders", &ShardId::new("Shard_With_Underscore"))
        );
        let long = "a".repeat(253);
        assert!(name(&long, &shard).len() <= 253);
    }

    #[test]
    fn a_new_lease_names_its_shard_and_owner_and_is_held() {
        let shard = ShardId::new("shardId-1");
        let lease = new(&owner(), &shard, Timestamp::UNIX_EPOCH);
        assert_eq!(shard_of(&lease), Some(shard));
        assert_eq!(holder(&lease), Some("orders-adapter-abc"));
        assert_eq!(duration_seconds(&lease), Some(30));
        let owners = lease.metadata.owner_references.as_ref().expect("owned");
        assert_eq!(owners[0].uid, "u-1");
    }

    #[test]
    fn passing_clears_the_ask_and_counts_the_transition() {
        let lease = new(&owner(), &ShardId::new("s"), Timestamp::UNIX_EPOCH);
        let mut asked = lease.clone();
        asked
            .metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(HANDOFF_ANNOTATION.to_owned(), "other".to_owned());
        assert_eq!(handoff_to(&asked), Some("other"));
        assert_eq!(
            ask_patch("other")["metadata"]["annotations"][HANDOFF_ANNOTATION],
            "other"
        );
        let passed = pass(&asked, Some("other"), 30, Timestamp::UNIX_EPOCH);
        assert_eq!(holder(&passed), Some("other"));
        assert_eq!(handoff_to(&passed), None);
        assert_eq!(
            passed.spec.as_ref().and_then(|s| s.lease_transitions),
            Some(1)
        );
        let released = pass(&passed, None, 30, Timestamp::UNIX_EPOCH);
        assert_eq!(holder(&released), None);
    }
}

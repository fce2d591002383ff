//! Names and labels of the objects the controller makes for a source.

/// Labels every adapter object carries.
pub(crate) const LABEL_NAME: &str = "app.kubernetes.io/name";
pub(crate) const LABEL_INSTANCE: &str = "app.kubernetes.io/instance";
pub(crate) const LABEL_COMPONENT: &str = "app.kubernetes.io/component";
pub(crate) const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub(crate) const APP_NAME: &str = "awsdynamodbsource";
pub(crate) const MANAGER: &str = "dynamodb-source-controller";
/// The ClusterRole of the shard Lease verbs, as `config/rbac/` names it.
pub const ADAPTER_LEASES_CLUSTER_ROLE: &str = "dynamodb-source-adapter-leases";

/// Label values are at most 63 characters; longer source names keep a prefix
/// and a hash so they stay unique.
pub(crate) fn label_value(name: &str) -> String {
    if name.len() <= 63 {
        return name.to_owned();
    }
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let hash = format!("{hash:016x}");
    let prefix: String = name.chars().take(63 - 1 - hash.len()).collect();
    format!("{}-{hash}", prefix.trim_end_matches(['-', '.']))
}

/// The names of one source's objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Names {
    /// The Deployment, and the Role and RoleBinding of its ServiceAccount.
    pub adapter: String,
    /// The ServiceAccount the controller creates (unless the source names one).
    pub service_account: String,
    /// The ConfigMap holding the adapter's checkpoint.
    pub checkpoint: String,
    /// The Secret holding credentials given as literal values.
    pub credentials: String,
    /// The RoleBinding granting the adapter the shard Lease verbs.
    pub leases: String,
}

impl Names {
    /// TriggerMesh named adapters `awsdynamodbsource-{name}`; kept for familiarity.
    pub(crate) fn of(source: &str) -> Names {
        let adapter = format!("{APP_NAME}-{source}");
        Names {
            service_account: adapter.clone(),
            checkpoint: format!("{adapter}-checkpoint"),
            credentials: format!("{adapter}-credentials"),
            leases: format!("{adapter}-leases"),
            adapter,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_names_make_valid_unique_label_values() {
        let a = label_value(&"a".repeat(100));
        let b = label_value(&format!("{}b", "a".repeat(99)));
        assert!(a.len() <= 63 && b.len() <= 63);
        assert_ne!(a, b);
        assert_eq!(label_value("orders"), "orders");
    }
}

//! What the stream side counts: API calls by outcome, records read, trimmed
//! data, and how far behind each shard's reading is.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Declares an enum used as a metric label, encoded as the given snake_case
/// strings (the derive would use the Rust variant names).
#[macro_export]
macro_rules! label_enum {
    ($(#[$meta:meta])* $vis:vis enum $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
        $vis enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl prometheus_client::encoding::EncodeLabelValue for $name {
            fn encode(&self, encoder: &mut prometheus_client::encoding::LabelValueEncoder) -> Result<(), std::fmt::Error> {
                std::fmt::Write::write_str(encoder, self.as_str())
            }
        }
    };
}

label_enum! {
    /// The outcome of one GetRecords call.
    pub enum CallResult {
        Ok => "ok",
        Throttled => "throttled",
        Expired => "expired",
        Trimmed => "trimmed",
        NotFound => "not_found",
        Error => "error",
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    pub result: CallResult,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShardLabels {
    pub shard: String,
}

/// Handles to the stream metrics; cheap to clone, all clones count together.
#[derive(Debug, Clone, Default)]
pub struct StreamMetrics {
    pub get_records: Family<CallLabels, Counter>,
    pub records_read: Counter,
    pub trimmed: Counter,
    pub iterator_age_seconds: Family<ShardLabels, Gauge<f64, AtomicU64>>,
    /// Shards with a task reading them now.
    pub shards_read: Gauge,
    /// The iterator age of each shard being read, for the largest of them
    /// (a metric family cannot be read back as a whole).
    ages: Arc<Mutex<BTreeMap<String, f64>>>,
}

impl StreamMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "dynamodb_source_get_records",
            "GetRecords calls by result (ok, throttled, expired, trimmed, not_found, error)",
            self.get_records.clone(),
        );
        registry.register(
            "dynamodb_source_records_read",
            "Stream records read from all shards",
            self.records_read.clone(),
        );
        registry.register(
            "dynamodb_source_trimmed_data",
            "Times a shard position had been trimmed (records older than 24 hours were lost before they were read)",
            self.trimmed.clone(),
        );
        registry.register(
            "dynamodb_source_iterator_age_seconds",
            "Age of the newest record read from each shard when it was read",
            self.iterator_age_seconds.clone(),
        );
        registry.register(
            "dynamodb_source_shards_read",
            "Shards being read now (every shard the lineage allows)",
            self.shards_read.clone(),
        );
    }

    fn ages(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, f64>> {
        // Each update is one assignment: a poisoned map is still whole.
        self.ages.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets a shard's iterator age (the metric and the largest-age view).
    pub fn set_iterator_age(&self, shard: &str, seconds: f64) {
        self.iterator_age_seconds
            .get_or_create(&ShardLabels {
                shard: shard.to_owned(),
            })
            .set(seconds);
        self.ages().insert(shard.to_owned(), seconds);
    }

    /// A shard no longer read no longer counts towards the largest age.
    pub fn forget_iterator_age(&self, shard: &str) {
        self.ages().remove(shard);
    }

    /// The largest iterator age of the shards being read (0 with none).
    pub fn max_iterator_age(&self) -> f64 {
        self.ages().values().copied().fold(0.0, f64::max)
    }

    pub fn call(&self, result: CallResult) {
        self.get_records.get_or_create(&CallLabels { result }).inc();
    }
}

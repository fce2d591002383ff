//! Every end-to-end and integration test, in one binary: one link instead of
//! one per file, and support code compiled once, with the dead-code lint on.
//! Tests that need the Kubernetes control plane share one (`support::cluster`).

mod adapter_concurrency;
mod adapter_crash;
mod adapter_delivery;
mod adapter_discovery_faults;
mod adapter_filter_patterns;
mod adapter_leases;
mod adapter_moto;
mod adapter_record_age;
mod adapter_replay;
mod adapter_settings;
mod adapter_stream_faults;
mod adapter_summary;
mod adapter_tls;
mod chart;
mod checkpoint_configmap;
mod cluster_smoke;
mod config_reference;
mod controller;
mod controller_scale;
mod controller_webhook;
mod crd;
mod crd_admission;
mod demo;
mod iam_policy;
mod image;
mod real_node;
mod support;

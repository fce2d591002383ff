//! What the adapter's readiness waits for: the stream was described and the
//! sink answered once. The endpoints themselves are `dynamodb_source_ops`.

use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Debug, Default)]
pub struct Health {
    stream_described: AtomicBool,
    sink_reachable: AtomicBool,
}

impl Health {
    pub fn stream_described(&self, yes: bool) {
        self.stream_described.store(yes, Ordering::Relaxed);
    }

    pub fn sink_reachable(&self) {
        self.sink_reachable.store(true, Ordering::Relaxed);
    }

    /// `Ok` when ready, or why not.
    pub fn readiness(&self) -> Result<(), String> {
        if !self.stream_described.load(Ordering::Relaxed) {
            return Err("the table's stream has not been described yet".to_owned());
        }
        if !self.sink_reachable.load(Ordering::Relaxed) {
            return Err("the sink has not been reachable yet".to_owned());
        }
        Ok(())
    }
}

//! The thread that talks to the Streams API: shard discovery and reading
//! shards ahead of delivery.
//!
//! Delivery waits on the sink; reading (GetRecords, parsing, building and
//! encoding events) is CPU work. On one thread, that work kept running after
//! each request was written, so the sink's answer, and the sink itself on a
//! busy machine, waited for it, and each idle spell between the two paid a
//! CPU wake-up. Here delivery does nothing but send, like a bare POST loop,
//! and reading runs beside it on its own current-thread runtime. The two
//! meet once per batch, through each shard's batch channel, and each thread
//! frees what it allocated (see `shard_task::Freer`).
//!
//! # Assumptions
//! - Each thread frees what it allocated, and the reading thread has a
//!   malloc arena of its own: two threads sharing one wait on its lock at
//!   every allocation (BENCHMARKS.md has the measurement).
//!
//! # Guarantees
//! - The reading thread is started before anything else can start a thread
//!   and builds its runtime itself, so under glibc it takes an arena the main
//!   thread does not use, even when `MALLOC_ARENA_MAX` allows only two.

use std::thread::JoinHandle;

use tokio::runtime::{Builder, Handle};
use tokio_util::sync::CancellationToken;

/// A current-thread runtime on its own OS thread, running until dropped.
#[derive(Debug)]
pub(crate) struct ReadingThread {
    handle: Handle,
    stop: CancellationToken,
    thread: Option<JoinHandle<()>>,
}

impl ReadingThread {
    pub(crate) fn start() -> std::io::Result<Self> {
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let (handle_tx, handle_rx) = std::sync::mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("reading".to_owned())
            .spawn(move || {
                let runtime = match Builder::new_current_thread().enable_all().build() {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = handle_tx.send(Err(e));
                        return;
                    }
                };
                let _ = handle_tx.send(Ok(runtime.handle().clone()));
                runtime.block_on(stopped.cancelled());
            })?;
        let handle = handle_rx.recv().map_err(|_| {
            std::io::Error::other("the reading thread ended before its runtime ran")
        })??;
        Ok(ReadingThread {
            handle,
            stop,
            thread: Some(thread),
        })
    }

    /// Where discovery and shard readers run.
    pub(crate) fn handle(&self) -> &Handle {
        &self.handle
    }
}

impl Drop for ReadingThread {
    /// Stops the runtime; tasks still on it are dropped with it.
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tasks_run_on_the_reading_thread_and_stop_with_it() {
        let reading = ReadingThread::start().expect("reading thread");
        let name = reading
            .handle()
            .spawn(async { std::thread::current().name().map(str::to_owned) })
            .await
            .expect("task");
        assert_eq!(name.as_deref(), Some("reading"));
        let pending = reading.handle().spawn(std::future::pending::<()>());
        drop(reading);
        let ended = pending.await;
        assert!(
            ended.is_err_and(|e| e.is_cancelled()),
            "a task left on the thread is dropped with it"
        );
    }
}

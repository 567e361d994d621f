//! Group commit: verifications hand their events to one writer task, which
//! writes whatever has queued since its last commit in one transaction and
//! then tells each waiting verification. A burst of N verifications costs
//! one transaction, not N, and none is answered before its event is
//! committed.
//!
//! When the database cannot take a batch, its events wait in memory (up to
//! [`MAX_PENDING`]) and go first in the next transaction; the
//! verifications are answered at once with `history_unavailable`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::{Event, HistoryError, HistoryStore};

/// Events queued for the writer at most; a verification waits for room.
const QUEUE: usize = 16_384;
/// Events kept for a retry while the database is down, at most.
pub(crate) const MAX_PENDING: usize = 100_000;
/// The most events in one transaction.
const MAX_BATCH: usize = 2_048;
/// How often events waiting for a retry are tried while nothing else comes.
const RETRY: Duration = Duration::from_secs(1);

type Job = (Event, oneshot::Sender<Result<(), HistoryError>>);

/// Hands events to the writer task.
#[derive(Clone)]
pub struct Recorder {
    queue: mpsc::Sender<Job>,
    dropped: Arc<AtomicU64>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder").field("dropped", &self.dropped()).finish_non_exhaustive()
    }
}

impl Recorder {
    /// Starts the writer task on the current Tokio runtime.
    pub fn start(store: Arc<dyn HistoryStore>) -> Self {
        let (queue, jobs) = mpsc::channel(QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        tokio::spawn(write_loop(store, jobs, dropped.clone()));
        Self { queue, dropped }
    }

    /// Records `event`, returning once it is committed.
    ///
    /// # Errors
    /// When the database could not take it now (it is kept for a retry).
    pub async fn record(&self, event: Event) -> Result<(), HistoryError> {
        let (done, committed) = oneshot::channel();
        self.queue
            .send((event, done))
            .await
            .map_err(|_| HistoryError::Unavailable("the history writer has stopped".into()))?;
        committed.await.map_err(|_| HistoryError::Unavailable("the history writer has stopped".into()))?
    }

    /// Events lost because the database stayed down while more than
    /// [`MAX_PENDING`] waited.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

async fn write_loop(store: Arc<dyn HistoryStore>, mut jobs: mpsc::Receiver<Job>, dropped: Arc<AtomicU64>) {
    let mut pending: Vec<Event> = Vec::new();
    loop {
        let first = if pending.is_empty() {
            jobs.recv().await
        } else {
            match tokio::time::timeout(RETRY, jobs.recv()).await {
                Ok(job) => job,
                Err(_) => {
                    // Nothing new: try the waiting events on their own.
                    if store.record(pending.clone()).await.is_ok() {
                        tracing::info!(events = pending.len(), "history is back; waiting events written");
                        pending.clear();
                    }
                    continue;
                }
            }
        };
        let Some(first) = first else { break };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let (events, waiters): (Vec<Event>, Vec<_>) = batch.into_iter().unzip();
        let mut all = std::mem::take(&mut pending);
        let retried = all.len();
        all.extend(events);
        let result = store.record(all.clone()).await;
        match &result {
            Ok(()) if retried > 0 => {
                tracing::info!(events = retried, "history is back; waiting events written")
            }
            Ok(()) => {}
            Err(error) => {
                tracing::warn!(%error, "history write failed; events kept for a retry");
                pending = all;
                if pending.len() > MAX_PENDING {
                    let excess = pending.len() - MAX_PENDING;
                    pending.drain(..excess);
                    dropped.fetch_add(u64::try_from(excess).unwrap_or(u64::MAX), Ordering::Relaxed);
                    tracing::error!(events = excess, "history down too long: oldest events dropped");
                }
            }
        }
        for waiter in waiters {
            let _ = waiter.send(result.clone());
        }
    }
}

//! Group commit: verifications hand their events to one writer task, which
//! writes whatever has queued since its last commit in one transaction and
//! then tells each waiting verification. A burst of N verifications costs
//! one transaction, not N, and none is answered before its event is
//! committed.
//!
//! When the database cannot take a batch, its events wait in memory (up to
//! [`MAX_PENDING`]) and in a spool file beside the data, and go first in the
//! next transaction; the verifications are answered at once with
//! `history_unavailable`. A process that stops meanwhile finds the spool
//! when it starts again, so what was answered is written all the same.

use std::io::Write as _;
use std::path::PathBuf;
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
    /// Starts the writer task on the current Tokio runtime; events waiting
    /// for the database are kept in `spool` too (and read back from it now).
    pub fn start(store: Arc<dyn HistoryStore>, spool: Option<PathBuf>) -> Self {
        let (queue, jobs) = mpsc::channel(QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        tokio::spawn(write_loop(store, jobs, dropped.clone(), Spool(spool)));
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

/// The file of events waiting for the database: JSON lines, replaced whole
/// (written beside, synced, renamed) whenever the waiting set changes.
struct Spool(Option<PathBuf>);

impl Spool {
    /// The events a stopped process left waiting.
    fn load(&self) -> Vec<Event> {
        let Some(path) = &self.0 else { return Vec::new() };
        let Ok(text) = std::fs::read_to_string(path) else { return Vec::new() };
        let events: Vec<Event> = text.lines().filter_map(|line| serde_json::from_str(line).ok()).collect();
        if !events.is_empty() {
            tracing::info!(events = events.len(), spool = %path.display(), "history: events left waiting by the last run");
        }
        events
    }

    /// Keeps `events` as the waiting set.
    fn save(&self, events: &[Event]) {
        let Some(path) = &self.0 else { return };
        let write = || -> std::io::Result<()> {
            let part = path.with_extension("part");
            let mut file = std::fs::File::create(&part)?;
            for event in events {
                serde_json::to_writer(&mut file, event)?;
                file.write_all(b"\n")?;
            }
            file.sync_all()?;
            std::fs::rename(&part, path)
        };
        if let Err(error) = write() {
            tracing::error!(%error, spool = %path.display(), "history: cannot keep waiting events on disk");
        }
    }

    /// Nothing waits any more.
    fn clear(&self) {
        if let Some(path) = &self.0
            && let Err(error) = std::fs::remove_file(path)
            && error.kind() != std::io::ErrorKind::NotFound
        {
            tracing::error!(%error, spool = %path.display(), "history: cannot remove the spool");
        }
    }
}

async fn write_loop(
    store: Arc<dyn HistoryStore>,
    mut jobs: mpsc::Receiver<Job>,
    dropped: Arc<AtomicU64>,
    spool: Spool,
) {
    let mut pending: Vec<Event> = spool.load();
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
                        spool.clear();
                    }
                    continue;
                }
            }
        };
        let Some(first) = first else { break };
        // Let the verifications that are running now finish and queue their
        // events, so one transaction takes them all.
        tokio::task::yield_now().await;
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
                spool.save(&pending);
            }
        }
        for waiter in waiters {
            let _ = waiter.send(result.clone());
        }
    }
}

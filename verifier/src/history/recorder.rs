//! Getting events into the database without making verifications wait for
//! it.
//!
//! - **The journal.** A verification appends its event to a local
//!   append-only file (one `write` of one JSON line, under a lock) and is
//!   answered; one writer task then commits whatever has been appended since
//!   its last commit in one transaction. The answer waits for the kernel
//!   to have the line, not for the database: a crash of the process loses
//!   nothing answered (the line is in the page cache; like SQLite's own WAL
//!   with `synchronous = NORMAL`, a power loss can).
//! - **Exactly once.** Each process numbers its events in a journal of its
//!   own (a random origin); every transaction also stores how far that
//!   journal is committed ([`JournalMark`]). A process that starts finds
//!   the journals left behind, asks the database how far each got, and
//!   writes the rest. Segments are deleted once committed.
//! - **A database that is down.** Its events wait in memory (up to
//!   [`MAX_PENDING`]) and in the journal and go first in the next
//!   transaction. Past that bound the oldest leave memory but stay in the
//!   journal, which then is kept whole until the next start replays it.
//! - **Without a journal** (a history with no data directory: tests and
//!   embedders), a verification waits for its event's commit instead.

use std::collections::VecDeque;
use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use super::{Event, HistoryError, HistoryStore, JournalMark};

/// Events kept in memory for a retry while the database is down, at most.
pub(crate) const MAX_PENDING: usize = 100_000;
/// The most events in one transaction.
const MAX_BATCH: usize = 2_048;
/// How often events waiting for a retry are tried while nothing else comes.
const RETRY: Duration = Duration::from_secs(1);
/// With a journal, how long the writer gathers events before a commit: no
/// answer waits for it, and a transaction of many events writes each index
/// page once instead of once per event.
const GATHER: Duration = Duration::from_millis(100);
/// A journal segment is closed, and a new one begun, past this size.
const SEGMENT_BYTES: u64 = 16 << 20;

/// One event on its way to the database.
struct Job {
    /// Its number in this process's journal (0 without a journal).
    seq: u64,
    /// The journal segment that holds it.
    segment: u64,
    event: Event,
    /// Told the outcome of the commit (only without a journal).
    done: Option<oneshot::Sender<Result<(), HistoryError>>>,
}

/// What the writer shares with the verifications.
struct Shared {
    /// Events lost from memory because the database stayed down.
    dropped: AtomicU64,
    /// Whether the last transaction succeeded.
    healthy: AtomicBool,
    /// The last journal number committed.
    committed: watch::Sender<u64>,
    /// Whether the journals stopped processes left are written.
    left_written: AtomicBool,
}

/// Hands events to the writer task.
#[derive(Clone)]
pub struct Recorder {
    queue: mpsc::UnboundedSender<Job>,
    journal: Option<Arc<Journal>>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("journal", &self.journal.as_ref().map(|j| j.dir.display().to_string()))
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}

impl Recorder {
    /// Starts the writer task on the current Tokio runtime; a verification
    /// then waits for its event's commit.
    pub fn start(store: Arc<dyn HistoryStore>) -> Self {
        Self::spawn(store, None, Vec::new())
    }

    /// Starts the writer task with a journal in `dir`: events are answered
    /// once journaled, and the journals a stopped process left there are
    /// written first.
    ///
    /// # Errors
    /// When the journal directory cannot be read or written.
    pub fn with_journal(store: Arc<dyn HistoryStore>, dir: &Path) -> Result<Self, HistoryError> {
        let (journal, left) = Journal::open(dir)?;
        Ok(Self::spawn(store, Some(Arc::new(journal)), left))
    }

    fn spawn(store: Arc<dyn HistoryStore>, journal: Option<Arc<Journal>>, left: Vec<LeftJournal>) -> Self {
        let (queue, jobs) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            dropped: AtomicU64::new(0),
            healthy: AtomicBool::new(true),
            committed: watch::Sender::new(0),
            left_written: AtomicBool::new(left.is_empty()),
        });
        let writer = Writer {
            store,
            jobs,
            shared: shared.clone(),
            journal: journal.clone(),
            pending: VecDeque::new(),
            left,
            oldest_segment: 0,
            dropped_from: None,
        };
        tokio::spawn(writer.run());
        Self { queue, journal, shared }
    }

    /// Records `event`: returns once it is journaled, or without a journal
    /// once it is committed.
    ///
    /// # Errors
    /// When the journal cannot be written, or (without a journal) the
    /// database could not take the event now (it is kept for a retry).
    pub async fn record(&self, event: Event) -> Result<(), HistoryError> {
        let stopped = || HistoryError::Unavailable("the history writer has stopped".into());
        match &self.journal {
            Some(journal) => journal.append(event, &self.queue),
            None => {
                let (done, committed) = oneshot::channel();
                self.queue
                    .send(Job { seq: 0, segment: 0, event, done: Some(done) })
                    .map_err(|_| stopped())?;
                committed.await.map_err(|_| stopped())?
            }
        }
    }

    /// Returns once every event recorded so far, and every event a stopped
    /// process left in the journal, is committed.
    ///
    /// # Errors
    /// When the database is not taking writes, or the writer has stopped.
    pub async fn flush(&self) -> Result<(), HistoryError> {
        let Some(journal) = &self.journal else { return Ok(()) };
        let target = journal.last_seq();
        let mut committed = self.shared.committed.subscribe();
        let shared = &self.shared;
        let through = *committed
            .wait_for(|&through| {
                (through >= target && shared.left_written.load(Ordering::Relaxed))
                    || !shared.healthy.load(Ordering::Relaxed)
            })
            .await
            .map_err(|_| HistoryError::Unavailable("the history writer has stopped".into()))?;
        if through < target || !shared.left_written.load(Ordering::Relaxed) {
            return Err(HistoryError::Unavailable("the history database is not taking writes".into()));
        }
        Ok(())
    }

    /// Whether the database took the last transaction.
    pub fn healthy(&self) -> bool {
        self.shared.healthy.load(Ordering::Relaxed)
    }

    /// Events that left memory because the database stayed down while
    /// more than [`MAX_PENDING`] waited (with a journal they are still on
    /// disk, and written at the next start).
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }
}

/// This process's journal: numbered JSON lines in segment files
/// `journal-<origin>-<segment>.jsonl`.
struct Journal {
    dir: PathBuf,
    origin: String,
    state: Mutex<JournalState>,
    /// Held locked while the journal is in use.
    _lock: File,
}

struct JournalState {
    file: File,
    segment: u64,
    bytes: u64,
    /// The number of the last event appended (0: none yet).
    last_seq: u64,
}

/// A journal a stopped process left behind.
struct LeftJournal {
    origin: String,
    files: Vec<PathBuf>,
    events: Vec<(u64, Event)>,
}

impl Journal {
    /// Opens a new journal in `dir`, returning the ones already there.
    fn open(dir: &Path) -> Result<(Self, Vec<LeftJournal>), HistoryError> {
        let fail = |what: &str, e: std::io::Error| {
            HistoryError::Config(format!("history journal {}: {what}: {e}", dir.display()))
        };
        std::fs::create_dir_all(dir).map_err(|e| fail("cannot create", e))?;
        let lock = lock_dir(dir).map_err(|e| fail("cannot lock", e))?;
        let left = read_left(dir).map_err(|e| fail("cannot read", e))?;
        let mut origin = [0u8; 9];
        crate::random_bytes(&mut origin).map_err(|e| HistoryError::Config(e.to_string()))?;
        let origin = meridian_protocol::base64url_encode(&origin);
        let file = open_segment(dir, &origin, 0).map_err(|e| fail("cannot create a segment", e))?;
        let state = Mutex::new(JournalState { file, segment: 0, bytes: 0, last_seq: 0 });
        Ok((Self { dir: dir.to_owned(), origin, state, _lock: lock }, left))
    }

    fn segment_path(&self, segment: u64) -> PathBuf {
        segment_path(&self.dir, &self.origin, segment)
    }

    fn last_seq(&self) -> u64 {
        self.state.lock().map_or(0, |state| state.last_seq)
    }

    /// Writes `event` to the journal and queues it, in one step so the
    /// queue keeps the journal's order.
    fn append(&self, event: Event, queue: &mpsc::UnboundedSender<Job>) -> Result<(), HistoryError> {
        let failed = |e: &dyn std::fmt::Display| HistoryError::Unavailable(format!("history journal: {e}"));
        let mut state = self.state.lock().map_err(|_| failed(&"a writer panicked"))?;
        let seq = state.last_seq + 1;
        let mut line = serde_json::to_vec(&(seq, &event)).map_err(|e| failed(&e))?;
        line.push(b'\n');
        state.file.write_all(&line).map_err(|e| failed(&e))?;
        state.last_seq = seq;
        state.bytes += line.len() as u64;
        let segment = state.segment;
        if state.bytes >= SEGMENT_BYTES {
            let next = state.segment + 1;
            match open_segment(&self.dir, &self.origin, next) {
                Ok(file) => (state.file, state.segment, state.bytes) = (file, next, 0),
                Err(error) => {
                    tracing::warn!(%error, "history journal: cannot begin a new segment; the current one grows")
                }
            }
        }
        queue
            .send(Job { seq, segment, event, done: None })
            .map_err(|_| HistoryError::Unavailable("the history writer has stopped".into()))
    }

    /// Empties the current segment when everything in it is committed
    /// (checked under the lock, so no append slips in between).
    fn truncate_if_committed(&self, through: u64) {
        let Ok(mut state) = self.state.lock() else { return };
        if state.last_seq == through && state.bytes > 0 {
            match state.file.set_len(0) {
                Ok(()) => state.bytes = 0,
                Err(error) => tracing::warn!(%error, "history journal: cannot empty a committed segment"),
            }
        }
    }

    /// Deletes this journal's segments before `segment`, from `from` on.
    fn delete_segments(&self, from: u64, segment: u64) {
        for old in from..segment {
            let path = self.segment_path(old);
            if let Err(error) = std::fs::remove_file(&path)
                && error.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(%error, segment = %path.display(), "history journal: cannot delete a committed segment");
            }
        }
    }
}

/// Locks `dir` for this process: a second process on the same data
/// directory would write the first one's journal to the database as its
/// own and delete it.
fn lock_dir(dir: &Path) -> std::io::Result<File> {
    let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(dir.join("lock"))?;
    #[cfg(target_os = "linux")]
    rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive).map_err(|e| {
        if e == rustix::io::Errno::WOULDBLOCK {
            std::io::Error::other("another Meridian process uses this data directory (data_dir)")
        } else {
            e.into()
        }
    })?;
    Ok(file)
}

fn segment_path(dir: &Path, origin: &str, segment: u64) -> PathBuf {
    dir.join(format!("journal-{origin}-{segment:08}.jsonl"))
}

fn open_segment(dir: &Path, origin: &str, segment: u64) -> std::io::Result<File> {
    std::fs::OpenOptions::new().create_new(true).append(true).open(segment_path(dir, origin, segment))
}

/// The journals in `dir`, by origin, their events in order. A line that
/// does not parse (the last one of a process killed mid-write) is skipped.
fn read_left(dir: &Path) -> std::io::Result<Vec<LeftJournal>> {
    let mut files: Vec<(String, u64, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
        let Some(stem) = name.strip_prefix("journal-").and_then(|n| n.strip_suffix(".jsonl")) else {
            continue;
        };
        let Some((origin, segment)) = stem.rsplit_once('-') else { continue };
        let Ok(segment) = segment.parse() else { continue };
        files.push((origin.to_owned(), segment, path));
    }
    files.sort();
    let mut left: Vec<LeftJournal> = Vec::new();
    for (origin, _, path) in files {
        if left.last().is_none_or(|journal| journal.origin != origin) {
            left.push(LeftJournal { origin: origin.clone(), files: Vec::new(), events: Vec::new() });
        }
        let Some(journal) = left.last_mut() else { continue };
        let text = std::fs::read_to_string(&path)?;
        let mut torn = 0;
        for line in text.lines() {
            match serde_json::from_str::<(u64, Event)>(line) {
                Ok(numbered) => journal.events.push(numbered),
                Err(_) => torn += 1,
            }
        }
        if torn > 0 {
            tracing::warn!(lines = torn, segment = %path.display(), "history journal: unreadable lines skipped");
        }
        journal.files.push(path);
    }
    let events: usize = left.iter().map(|journal| journal.events.len()).sum();
    if events > 0 {
        tracing::info!(
            events,
            journals = left.len(),
            "history: journals left by the last run are written first"
        );
    }
    Ok(left)
}

/// The writer task's state.
struct Writer {
    store: Arc<dyn HistoryStore>,
    jobs: mpsc::UnboundedReceiver<Job>,
    shared: Arc<Shared>,
    journal: Option<Arc<Journal>>,
    /// Events received, not yet committed, oldest first.
    pending: VecDeque<Job>,
    /// Journals of stopped processes, not yet written.
    left: Vec<LeftJournal>,
    /// This journal's oldest segment not yet deleted.
    oldest_segment: u64,
    /// The first event that left memory uncommitted: the journal is kept
    /// from there and the mark stays below it.
    dropped_from: Option<u64>,
}

impl Writer {
    async fn run(mut self) {
        let mut failed = false;
        loop {
            if failed {
                // Events wait for the database: try again when more come,
                // or after a while when none do.
                match tokio::time::timeout(RETRY, self.jobs.recv()).await {
                    Ok(Some(job)) => self.pending.push_back(job),
                    Ok(None) => break,
                    Err(_) => {}
                }
            } else if self.pending.is_empty() && self.left.is_empty() {
                match self.jobs.recv().await {
                    Some(job) => self.pending.push_back(job),
                    None => break,
                }
            }
            if !self.gather().await {
                // The history is gone. With a journal, what waits is in it
                // for the next start; without, this is the last try.
                if self.journal.is_some() {
                    break;
                }
                while !self.pending.is_empty() && self.commit_batch().await {}
                break;
            }
            self.bound_pending();
            failed = !self.write_left().await;
            while !failed && !self.pending.is_empty() {
                failed = !self.commit_batch().await;
            }
        }
    }

    /// Takes the events the verifications running now queue, so one
    /// transaction takes them all: with a journal for [`GATHER`], without
    /// for one turn of the scheduler. False once every handle is gone.
    async fn gather(&mut self) -> bool {
        if self.journal.is_none() {
            tokio::task::yield_now().await;
        } else {
            let until = tokio::time::Instant::now() + GATHER;
            loop {
                tokio::select! {
                    () = tokio::time::sleep_until(until) => break,
                    job = self.jobs.recv() => match job {
                        Some(job) => self.pending.push_back(job),
                        None => return false,
                    },
                }
            }
        }
        loop {
            match self.jobs.try_recv() {
                Ok(job) => self.pending.push_back(job),
                Err(mpsc::error::TryRecvError::Empty) => return true,
                Err(mpsc::error::TryRecvError::Disconnected) => return false,
            }
        }
    }

    /// Keeps at most [`MAX_PENDING`] events in memory.
    fn bound_pending(&mut self) {
        if self.pending.len() <= MAX_PENDING {
            return;
        }
        let excess = self.pending.len() - MAX_PENDING;
        for job in self.pending.drain(..excess) {
            if job.done.is_none() {
                self.dropped_from = Some(self.dropped_from.map_or(job.seq, |from| from.min(job.seq)));
            }
            if let Some(done) = job.done {
                let _ = done.send(Err(HistoryError::Unavailable("the history database is down".into())));
            }
        }
        self.shared.dropped.fetch_add(excess as u64, Ordering::Relaxed);
        if self.journal.is_some() {
            tracing::error!(
                events = excess,
                "history down too long: the oldest waiting events left memory; the journal keeps them for the next start"
            );
        } else {
            tracing::error!(events = excess, "history down too long: oldest events dropped");
        }
    }

    /// Writes the journals stopped processes left; false while the
    /// database cannot take them.
    async fn write_left(&mut self) -> bool {
        while let Some(journal) = self.left.first() {
            let done = if journal.events.is_empty() {
                Ok(0)
            } else {
                match self.store.journal_mark(&journal.origin).await {
                    Ok(through) => {
                        let through = through.unwrap_or(0);
                        let missing: Vec<&(u64, Event)> =
                            journal.events.iter().filter(|(seq, _)| *seq > through).collect();
                        let mut written = Ok(());
                        for chunk in missing.chunks(MAX_BATCH) {
                            let Some((last, _)) = chunk.last() else { continue };
                            let mark = JournalMark { origin: journal.origin.clone(), through: *last };
                            let events = chunk.iter().map(|(_, event)| event.clone()).collect();
                            written = self.store.record(events, Some(mark)).await;
                            if written.is_err() {
                                break;
                            }
                        }
                        written.map(|()| missing.len())
                    }
                    Err(error) => Err(error),
                }
            };
            match done {
                Ok(written) => {
                    if written > 0 {
                        tracing::info!(events = written, "history: a stopped process's journal is written");
                    }
                    for file in &journal.files {
                        if let Err(error) = std::fs::remove_file(file) {
                            tracing::warn!(%error, segment = %file.display(), "history journal: cannot delete a written segment");
                        }
                    }
                    self.left.remove(0);
                    if self.left.is_empty() {
                        self.shared.left_written.store(true, Ordering::Relaxed);
                        self.shared.committed.send_modify(|_| {});
                    }
                }
                Err(error) => {
                    self.set_healthy(false, &error);
                    return false;
                }
            }
        }
        true
    }

    /// Commits the oldest pending events (up to [`MAX_BATCH`]); false when
    /// the database failed.
    async fn commit_batch(&mut self) -> bool {
        let take = self.pending.len().min(MAX_BATCH);
        let events: Vec<Event> = self.pending.iter().take(take).map(|job| job.event.clone()).collect();
        let last = self.pending.get(take - 1).map_or((0, 0), |job| (job.seq, job.segment));
        let mark = self.journal.as_ref().map(|journal| JournalMark {
            origin: journal.origin.clone(),
            through: self.dropped_from.map_or(last.0, |from| from.saturating_sub(1)),
        });
        match self.store.record(events, mark).await {
            Ok(()) => {
                if !self.shared.healthy.load(Ordering::Relaxed) {
                    tracing::info!("history is back; waiting events written");
                }
                self.shared.healthy.store(true, Ordering::Relaxed);
                for job in self.pending.drain(..take) {
                    if let Some(done) = job.done {
                        let _ = done.send(Ok(()));
                    }
                }
                if let Some(journal) = &self.journal {
                    self.shared.committed.send_replace(last.0);
                    if self.dropped_from.is_none() {
                        journal.delete_segments(self.oldest_segment, last.1);
                        self.oldest_segment = self.oldest_segment.max(last.1);
                        if self.pending.is_empty() {
                            journal.truncate_if_committed(last.0);
                        }
                    }
                }
                true
            }
            Err(error) => {
                self.set_healthy(false, &error);
                self.fail_waiters(&error.to_string());
                false
            }
        }
    }

    /// Tells verifications waiting for a commit (no journal) that it failed;
    /// their events stay for the retry.
    fn fail_waiters(&mut self, why: &str) {
        for job in &mut self.pending {
            if let Some(done) = job.done.take() {
                let _ = done.send(Err(HistoryError::Unavailable(why.to_owned())));
            }
        }
    }

    fn set_healthy(&self, healthy: bool, error: &HistoryError) {
        if self.shared.healthy.swap(healthy, Ordering::Relaxed) {
            tracing::warn!(%error, events = self.pending.len(), "history write failed; events kept for a retry");
        }
        // Whoever waits for a commit stops waiting.
        self.shared.committed.send_modify(|_| {});
    }
}

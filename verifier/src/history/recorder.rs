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
//!   transaction. Past that bound they leave memory: the journal so far is
//!   set aside whole (the process goes on with a new origin) and written
//!   from disk, like a stopped process's, once the database is back.
//! - **A commit whose outcome is unknown** (a timeout while the database
//!   may still have committed): before trying again the writer asks the
//!   database how far the journal got, and drops what it already has.
//! - **An event the database will not store** (a value it cannot hold, a
//!   constraint of its own): a transaction it refuses for its content is
//!   halved until the events it refuses stand alone. Those are set aside
//!   in `unstorable.jsonl` beside the journal and counted; the rest are
//!   committed, so no one event can stop the history for every sign-in
//!   after it. At the next start they go back in as a journal of their
//!   own: a database that refused them for a cause since mended (a
//!   constraint, an instance still on an older schema) takes them then.
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
    /// The journal origin it was numbered in (its generation; events of
    /// an origin set aside are written from disk).
    generation: u32,
    event: Event,
    /// Told the outcome of the commit (only without a journal).
    done: Option<oneshot::Sender<Result<(), HistoryError>>>,
}

/// What the writer shares with the verifications.
struct Shared {
    /// Events lost from memory because the database stayed down.
    dropped: AtomicU64,
    /// Events the database refused for their content.
    unstorable: AtomicU64,
    /// When an unstorable event was last logged.
    unstorable_logged: Mutex<Option<std::time::Instant>>,
    /// Held while `unstorable.jsonl` is appended to or rewritten.
    set_aside_file: Mutex<()>,
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
        Self::with_journal_keeping(store, dir, MAX_PENDING)
    }

    /// [`Self::with_journal`], keeping at most `max_pending` events in
    /// memory while the database is down.
    fn with_journal_keeping(
        store: Arc<dyn HistoryStore>,
        dir: &Path,
        max_pending: usize,
    ) -> Result<Self, HistoryError> {
        let (journal, left) = Journal::open(dir)?;
        Ok(Self::spawn_keeping(store, Some(Arc::new(journal)), left, max_pending))
    }

    fn spawn(store: Arc<dyn HistoryStore>, journal: Option<Arc<Journal>>, left: Vec<LeftJournal>) -> Self {
        Self::spawn_keeping(store, journal, left, MAX_PENDING)
    }

    fn spawn_keeping(
        store: Arc<dyn HistoryStore>,
        journal: Option<Arc<Journal>>,
        left: Vec<LeftJournal>,
        max_pending: usize,
    ) -> Self {
        let (queue, jobs) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            dropped: AtomicU64::new(0),
            unstorable: AtomicU64::new(0),
            unstorable_logged: Mutex::new(None),
            set_aside_file: Mutex::new(()),
            healthy: AtomicBool::new(true),
            committed: watch::Sender::new(0),
            left_written: AtomicBool::new(left.is_empty()),
        });
        let writer = Writer {
            store,
            jobs,
            set_aside: SetAside::new(journal.as_deref(), &shared),
            shared: shared.clone(),
            journal: journal.clone(),
            pending: VecDeque::new(),
            left,
            oldest_segment: 0,
            generation: 0,
            uncertain: false,
            max_pending,
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
                    .send(Job { seq: 0, segment: 0, generation: 0, event, done: Some(done) })
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

    /// Whether every journal left waiting (by a stopped process, or set
    /// aside while the database was down) is written.
    pub fn left_written(&self) -> bool {
        self.shared.left_written.load(Ordering::Relaxed)
    }

    /// Whether the database took the last transaction.
    pub fn healthy(&self) -> bool {
        self.shared.healthy.load(Ordering::Relaxed)
    }

    /// Events that left memory because the database stayed down while
    /// more than [`MAX_PENDING`] waited: lost without a journal; with one,
    /// written from it once the database is back.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Events the database refused for their content: set aside in
    /// `unstorable.jsonl` with a journal, lost without one.
    pub fn unstorable(&self) -> u64 {
        self.shared.unstorable.load(Ordering::Relaxed)
    }

    /// Takes the events `forget` picks out of those set aside, so the
    /// retention and erasures reach them too; returns how many went.
    ///
    /// # Errors
    /// When the file cannot be read or rewritten.
    pub fn forget_set_aside(&self, forget: impl Fn(&Event) -> bool) -> Result<usize, HistoryError> {
        self.set_aside_file().forget(forget)
    }

    /// The events set aside, without a hold on the writer.
    pub(crate) fn set_aside_file(&self) -> SetAside {
        SetAside::new(self.journal.as_deref(), &self.shared)
    }
}

/// Where events the database refuses are kept, in the journal's folder.
const UNSTORABLE_FILE: &str = "unstorable.jsonl";

/// The events the database will not store: kept one JSON line each with
/// when and why, counted, and taken out again by the retention and
/// erasures.
#[derive(Clone)]
pub(crate) struct SetAside {
    /// `unstorable.jsonl` in the journal's folder (none without a journal).
    file: Option<PathBuf>,
    shared: Arc<Shared>,
}

impl SetAside {
    fn new(journal: Option<&Journal>, shared: &Arc<Shared>) -> Self {
        Self { file: journal.map(|journal| journal.dir.join(UNSTORABLE_FILE)), shared: shared.clone() }
    }

    /// [`Recorder::forget_set_aside`].
    pub(crate) fn forget(&self, forget: impl Fn(&Event) -> bool) -> Result<usize, HistoryError> {
        let Some(path) = &self.file else { return Ok(0) };
        let failed = |e: std::io::Error| HistoryError::Unavailable(format!("{}: {e}", path.display()));
        let _file = self.shared.set_aside_file.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(error) => return Err(failed(error)),
        };
        let mut kept = Vec::with_capacity(bytes.len());
        let mut forgotten = 0;
        for line in bytes.split(|&b| b == b'\n').filter(|line| !line.is_empty()) {
            match serde_json::from_slice::<SetAsideLine>(line) {
                Ok(SetAsideLine { event, .. }) if forget(&event) => forgotten += 1,
                // A torn line stays, for the reading at the next start.
                _ => {
                    kept.extend_from_slice(line);
                    kept.push(b'\n');
                }
            }
        }
        if forgotten > 0 {
            crate::fs::replace(path, &kept).map_err(failed)?;
        }
        Ok(forgotten)
    }

    /// Keeps `event`, number `seq` of journal `origin` (when it has one: a
    /// line kept twice, by a retry after an outage, is read back once).
    fn keep(&self, event: &Event, origin: Option<&str>, seq: u64, why: &HistoryError) {
        self.shared.unstorable.fetch_add(1, Ordering::Relaxed);
        let kept = self.file.as_ref().map(|path| {
            let line = serde_json::json!({
                "at_ms": super::now_ms(),
                "why": why.to_string(),
                "origin": origin,
                "seq": seq,
                "event": event,
            });
            let _file = self.shared.set_aside_file.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .and_then(|mut file| file.write_all(format!("{line}\n").as_bytes()))
                .map(|()| path)
        });
        // One line a minute at most: a page's script can send such values
        // at every sign-in.
        let mut logged =
            self.shared.unstorable_logged.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if logged.is_some_and(|at| at.elapsed() < Duration::from_secs(60)) {
            return;
        }
        *logged = Some(std::time::Instant::now());
        let total = self.shared.unstorable.load(Ordering::Relaxed);
        match kept {
            Some(Ok(path)) => tracing::error!(
                %why, total, kept = %path.display(),
                "history: the database refused an event for its content; it is set aside and the rest are written"
            ),
            Some(Err(error)) => tracing::error!(
                %why, %error, total,
                "history: the database refused an event for its content, and it cannot be set aside; it is lost"
            ),
            None => tracing::error!(
                %why, total,
                "history: the database refused an event for its content; it is lost (no data directory)"
            ),
        }
    }
}

/// What [`commit_storable`] did with a run of events.
struct Stored {
    /// How many of them, from the first, are done with: committed or set
    /// aside.
    through: usize,
    /// Which of those were set aside.
    unstorable: Vec<usize>,
    /// What stopped it short of the end (the database down, a timeout).
    failed: Option<HistoryError>,
}

/// Commits `events` (each with its journal number) in order, moving the
/// mark of `origin`'s journal with them. A transaction the database
/// refuses for its content is halved until each event it refuses stands
/// alone; the mark moves past each of those on its own, then it goes to
/// `set_aside`.
async fn commit_storable(
    store: &dyn HistoryStore,
    events: &[(u64, Event)],
    origin: Option<&str>,
    set_aside: &SetAside,
) -> Stored {
    let mark = |through| origin.map(|origin| JournalMark { origin: origin.to_owned(), through });
    let mut stored = Stored { through: 0, unstorable: Vec::new(), failed: None };
    let mut size = events.len();
    while stored.through < events.len() {
        let end = (stored.through + size.max(1)).min(events.len());
        let run = &events[stored.through..end];
        let last = run.last().map_or(0, |(seq, _)| *seq);
        match store.record(run.iter().map(|(_, event)| event.clone()).collect(), mark(last)).await {
            // Back towards whole transactions, a doubling at a time: when
            // the database refuses every event, each costs one transaction
            // or two, not a halving from the whole rest each time.
            Ok(()) => size = size.saturating_mul(2),
            Err(HistoryError::Unstorable(_)) if run.len() > 1 => {
                size = run.len() / 2;
                continue;
            }
            Err(why @ HistoryError::Unstorable(_)) => {
                // The mark moves past it first, then it is kept: a retry
                // after an outage or a restart never meets it again, so it
                // is kept once (a process killed between the two loses it).
                if origin.is_some()
                    && let Err(error) = store.record(Vec::new(), mark(last)).await
                {
                    stored.failed = Some(error);
                    return stored;
                }
                set_aside.keep(&run[0].1, origin, last, &why);
                stored.unstorable.push(stored.through);
                stored.through = end;
                continue;
            }
            Err(error) => {
                stored.failed = Some(error);
                return stored;
            }
        }
        stored.through = end;
    }
    stored
}

/// This process's journal: numbered JSON lines in segment files
/// `journal-<origin>-<segment>.jsonl`.
struct Journal {
    dir: PathBuf,
    state: Mutex<JournalState>,
    /// Held locked while the journal is in use.
    _lock: File,
}

struct JournalState {
    /// The origin events are numbered in now.
    origin: String,
    /// Counts the origins this process has had.
    generation: u32,
    file: File,
    segment: u64,
    bytes: u64,
    /// The number of the last event appended (0: none yet), across
    /// origins.
    last_seq: u64,
}

/// A journal whose events are written from disk: one a stopped process
/// left, or one of this process's set aside.
#[derive(Clone)]
struct LeftJournal {
    origin: String,
    files: Vec<PathBuf>,
    /// This process's own (numbered as its current events are).
    own: bool,
}

/// A fresh random origin.
fn new_origin() -> Result<String, HistoryError> {
    let mut origin = [0u8; 9];
    crate::random_bytes(&mut origin).map_err(|e| HistoryError::Unavailable(e.to_string()))?;
    Ok(meridian_protocol::base64url_encode(&origin))
}

impl Journal {
    /// Opens a new journal in `dir`, returning the ones already there.
    fn open(dir: &Path) -> Result<(Self, Vec<LeftJournal>), HistoryError> {
        let fail = |what: &str, e: std::io::Error| {
            HistoryError::Config(format!("history journal {}: {what}: {e}", dir.display()))
        };
        std::fs::create_dir_all(dir).map_err(|e| fail("cannot create", e))?;
        let lock = lock_dir(dir).map_err(|e| fail("cannot lock", e))?;
        requeue_unstorable(dir).map_err(|e| fail("cannot requeue the events set aside", e))?;
        let left = read_left(dir).map_err(|e| fail("cannot read", e))?;
        let origin = new_origin().map_err(|e| HistoryError::Config(e.to_string()))?;
        let file = open_segment(dir, &origin, 0).map_err(|e| fail("cannot create a segment", e))?;
        let state = JournalState { origin, generation: 0, file, segment: 0, bytes: 0, last_seq: 0 };
        Ok((Self { dir: dir.to_owned(), state: Mutex::new(state), _lock: lock }, left))
    }

    fn last_seq(&self) -> u64 {
        self.state.lock().map_or(0, |state| state.last_seq)
    }

    /// The origin events are numbered in now, and its generation.
    fn origin(&self) -> Option<(String, u32)> {
        self.state.lock().ok().map(|state| (state.origin.clone(), state.generation))
    }

    /// Writes `event` to the journal and queues it, in one step so the
    /// queue keeps the journal's order.
    fn append(&self, event: Event, queue: &mpsc::UnboundedSender<Job>) -> Result<(), HistoryError> {
        let failed = |e: &dyn std::fmt::Display| HistoryError::Unavailable(format!("history journal: {e}"));
        let mut state = self.state.lock().map_err(|_| failed(&"a writer panicked"))?;
        let seq = state.last_seq + 1;
        let mut line = serde_json::to_vec(&(seq, &event)).map_err(|e| failed(&e))?;
        line.push(b'\n');
        if let Err(error) = state.file.write_all(&line) {
            // Cut a partial line off, so the next one starts clean.
            let _ = state.file.set_len(state.bytes);
            return Err(failed(&error));
        }
        state.last_seq = seq;
        state.bytes += line.len() as u64;
        let (segment, generation) = (state.segment, state.generation);
        if state.bytes >= SEGMENT_BYTES {
            let next = state.segment + 1;
            match open_segment(&self.dir, &state.origin, next) {
                Ok(file) => (state.file, state.segment, state.bytes) = (file, next, 0),
                Err(error) => {
                    tracing::warn!(%error, "history journal: cannot begin a new segment; the current one grows")
                }
            }
        }
        queue
            .send(Job { seq, segment, generation, event, done: None })
            .map_err(|_| HistoryError::Unavailable("the history writer has stopped".into()))
    }

    /// Sets the journal so far aside (segments `from` to the current one)
    /// and goes on with a new origin; returns what was set aside.
    fn set_aside(&self, from: u64) -> Result<LeftJournal, HistoryError> {
        let failed = |e: &dyn std::fmt::Display| HistoryError::Unavailable(format!("history journal: {e}"));
        let mut state = self.state.lock().map_err(|_| failed(&"a writer panicked"))?;
        let origin = new_origin()?;
        let file = open_segment(&self.dir, &origin, 0).map_err(|e| failed(&e))?;
        let old = std::mem::replace(&mut state.origin, origin);
        let files = (from..=state.segment).map(|segment| segment_path(&self.dir, &old, segment)).collect();
        (state.file, state.segment, state.bytes) = (file, 0, 0);
        state.generation += 1;
        Ok(LeftJournal { origin: old, files, own: true })
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

    /// Deletes the current origin's segments before `segment`, from `from` on.
    fn delete_segments(&self, from: u64, segment: u64) {
        let Some((origin, _)) = self.origin() else { return };
        for old in from..segment {
            let path = segment_path(&self.dir, &origin, old);
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
    #[cfg(unix)]
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

/// Events set aside that one start tries again, at most; the rest wait for
/// the next. A file grown while the database refused every event then
/// neither fills memory at start nor holds the live sign-ins back long
/// (the journals left waiting are written before them).
const REQUEUE_AT_MOST: u64 = 10_000;

/// One line of `unstorable.jsonl`, as far as it is read back.
#[derive(serde::Deserialize)]
struct SetAsideLine {
    #[serde(default)]
    origin: Option<String>,
    #[serde(default)]
    seq: u64,
    event: Event,
}

/// Turns the events set aside in `dir` by an earlier run into a journal
/// left waiting, so they are tried again like any other: written once,
/// and set aside again if the database still refuses them. The journal is
/// named after the file's content, so converting it twice (a crash between
/// the last two steps) makes the same journal, which its mark writes once.
fn requeue_unstorable(dir: &Path) -> std::io::Result<()> {
    use std::io::BufRead as _;

    use sha2::Digest as _;
    let path = dir.join(UNSTORABLE_FILE);
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(error),
    };
    let mut journal = Vec::new();
    let mut digest = sha2::Sha256::new();
    let mut seq = 0u64;
    let mut seen = std::collections::HashSet::new();
    // What stays for the next start: lines past the bound, and lines that
    // do not read (a torn last line, another version's): kept, not lost.
    let rest_path = path.with_extension("rest");
    let mut rest: Option<std::io::BufWriter<File>> = None;
    let mut unreadable = 0u64;
    for line in std::io::BufReader::new(file).split(b'\n') {
        let line = line?;
        if line.is_empty() {
            continue;
        }
        match serde_json::from_slice::<SetAsideLine>(&line) {
            Ok(SetAsideLine { origin, seq: number, event }) if seq < REQUEUE_AT_MOST => {
                // A line kept twice (a retry after an outage) is read once.
                if origin.is_none() || seen.insert((origin, number)) {
                    seq += 1;
                    digest.update(&line);
                    serde_json::to_writer(&mut journal, &(seq, event)).map_err(std::io::Error::other)?;
                    journal.push(b'\n');
                }
            }
            parsed => {
                unreadable += u64::from(parsed.is_err());
                let rest = match &mut rest {
                    Some(rest) => rest,
                    None => rest.insert(std::io::BufWriter::new(File::create(&rest_path)?)),
                };
                rest.write_all(&line)?;
                rest.write_all(b"\n")?;
            }
        }
    }
    if seq > 0 {
        // Named after what it holds: made twice (a crash before the last
        // step), it is the same journal, which its mark writes once.
        let origin = format!("unstorable-{}", meridian_protocol::base64url_encode(&digest.finalize()[..9]));
        crate::fs::replace(&segment_path(dir, &origin, 0), &journal)?;
        tracing::info!(events = seq, "history: events set aside by an earlier run are tried again");
    }
    if unreadable > 0 {
        tracing::warn!(lines = unreadable, file = %path.display(), "history: set-aside lines that do not read are kept");
    }
    match rest {
        Some(rest) => {
            rest.into_inner().map_err(std::io::IntoInnerError::into_error)?.sync_all()?;
            std::fs::rename(&rest_path, &path)
        }
        None => std::fs::remove_file(&path),
    }
}

/// The journals in `dir`, by origin, their segments in order.
fn read_left(dir: &Path) -> std::io::Result<Vec<LeftJournal>> {
    let mut files: Vec<(String, u64, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
        let Some(stem) = name.strip_prefix("journal-").and_then(|n| n.strip_suffix(".jsonl")) else {
            continue;
        };
        let Some((origin, segment)) = stem.rsplit_once('-') else { continue };
        let Ok(segment) = segment.parse::<u64>() else { continue };
        files.push((origin.to_owned(), segment, path));
    }
    files.sort();
    let mut left: Vec<LeftJournal> = Vec::new();
    for (origin, _, path) in files {
        match left.last_mut() {
            Some(journal) if journal.origin == origin => journal.files.push(path),
            _ => left.push(LeftJournal { origin, files: vec![path], own: false }),
        }
    }
    if !left.is_empty() {
        tracing::info!(journals = left.len(), "history: journals left by the last run are written first");
    }
    Ok(left)
}

/// The numbered events of one segment file. A line that does not parse
/// (the last one of a process killed mid-write) is skipped.
fn read_segment(path: &Path) -> std::io::Result<Vec<(u64, Event)>> {
    let bytes = std::fs::read(path)?;
    let mut events = Vec::new();
    let mut torn = 0;
    for line in bytes.split(|&b| b == b'\n').filter(|line| !line.is_empty()) {
        match serde_json::from_slice::<(u64, Event)>(line) {
            Ok(numbered) => events.push(numbered),
            Err(_) => torn += 1,
        }
    }
    if torn > 0 {
        tracing::warn!(lines = torn, segment = %path.display(), "history journal: unreadable lines skipped");
    }
    Ok(events)
}

/// Writes what `journal` holds beyond the database's mark for its origin,
/// in transactions of [`MAX_BATCH`] that move the mark on; returns how many
/// events were written and the highest event number it held.
async fn write_journal(
    store: &dyn HistoryStore,
    journal: &LeftJournal,
    set_aside: &SetAside,
    between: &mut (dyn FnMut() + Send),
) -> Result<(usize, u64), HistoryError> {
    let mut through = None;
    let mut written = 0;
    let mut highest = 0;
    for file in &journal.files {
        let events = match read_segment(file) {
            Ok(events) => events,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
            Err(error) => return Err(HistoryError::Unavailable(format!("{}: {error}", file.display()))),
        };
        if events.is_empty() {
            continue;
        }
        highest = events.iter().map(|(seq, _)| *seq).fold(highest, u64::max);
        let mark = match through {
            Some(mark) => mark,
            None => *through.insert(store.journal_mark(&journal.origin).await?.unwrap_or(0)),
        };
        let missing: Vec<(u64, Event)> = events.into_iter().filter(|(seq, _)| *seq > mark).collect();
        for chunk in missing.chunks(MAX_BATCH) {
            let Some((last, _)) = chunk.last() else { continue };
            let stored = commit_storable(store, chunk, Some(&journal.origin), set_aside).await;
            if let Some(error) = stored.failed {
                return Err(error);
            }
            through = Some(*last);
            written += chunk.len() - stored.unstorable.len();
            between();
        }
    }
    Ok((written, highest))
}

/// The writer task's state.
struct Writer {
    store: Arc<dyn HistoryStore>,
    jobs: mpsc::UnboundedReceiver<Job>,
    /// Where events the database refuses go.
    set_aside: SetAside,
    shared: Arc<Shared>,
    journal: Option<Arc<Journal>>,
    /// Events received, not yet committed, oldest first.
    pending: VecDeque<Job>,
    /// Journals of stopped processes, not yet written.
    left: Vec<LeftJournal>,
    /// This journal's oldest segment not yet deleted.
    oldest_segment: u64,
    /// The current origin's generation: queued events of older ones are
    /// written from disk.
    generation: u32,
    /// Whether the last commit's outcome is unknown (it failed, and the
    /// database may have committed it all the same).
    uncertain: bool,
    /// Events kept in memory at most ([`MAX_PENDING`]).
    max_pending: usize,
}

impl Writer {
    async fn run(mut self) {
        let mut failed = false;
        loop {
            if failed {
                // Events wait for the database: try again when more come,
                // or after a while when none do.
                match tokio::time::timeout(RETRY, self.jobs.recv()).await {
                    Ok(Some(job)) => self.take(job),
                    Ok(None) => break,
                    Err(_) => {}
                }
            } else if self.pending.is_empty() && self.left.is_empty() {
                match self.jobs.recv().await {
                    Some(job) => self.take(job),
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
                // A backlog of several batches (after an outage): take in
                // what arrives meanwhile between them. Otherwise the next
                // events wait for the next gathering, in one transaction.
                let backlog = self.pending.len() > MAX_BATCH;
                failed = !self.commit_batch().await;
                if backlog {
                    self.keep_up();
                }
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
                        Some(job) => self.take(job),
                        None => return false,
                    },
                }
            }
        }
        loop {
            match self.jobs.try_recv() {
                Ok(job) => self.take(job),
                Err(mpsc::error::TryRecvError::Empty) => return true,
                Err(mpsc::error::TryRecvError::Disconnected) => return false,
            }
        }
    }

    /// Between the steps of a long catch-up (journals left waiting, a
    /// backlog of batches): takes what the verifications queued meanwhile
    /// and keeps memory bounded, so events do not pile up in the queue
    /// while the writer is busy.
    fn keep_up(&mut self) {
        while let Ok(job) = self.jobs.try_recv() {
            self.take(job);
        }
        self.bound_pending();
    }

    /// Adds a job to the pending ones (unless its origin was set aside:
    /// then it is written from disk).
    fn take(&mut self, job: Job) {
        if self.journal.is_none() || job.generation == self.generation {
            self.pending.push_back(job);
        }
    }

    /// Keeps at most [`MAX_PENDING`] events in memory.
    fn bound_pending(&mut self) {
        if self.pending.len() <= self.max_pending {
            return;
        }
        let Some(journal) = &self.journal else {
            let excess = self.pending.len() - self.max_pending;
            for job in self.pending.drain(..excess) {
                if let Some(done) = job.done {
                    let _ = done.send(Err(HistoryError::Unavailable("the history database is down".into())));
                }
            }
            self.shared.dropped.fetch_add(excess as u64, Ordering::Relaxed);
            tracing::error!(
                events = excess,
                "history: too many events waiting for the database (down, or slower than the sign-ins); the oldest are dropped"
            );
            return;
        };
        // Everything waiting is in the journal: set it aside and write it
        // from disk once the database is back.
        match journal.set_aside(self.oldest_segment) {
            Ok(left) => {
                let events = self.pending.len();
                self.pending.clear();
                self.left.push(left);
                self.oldest_segment = 0;
                self.generation += 1;
                self.uncertain = false;
                self.shared.left_written.store(false, Ordering::Relaxed);
                self.shared.dropped.fetch_add(events as u64, Ordering::Relaxed);
                tracing::error!(
                    events,
                    "history: too many events waiting for the database (down, or slower than the sign-ins); they left memory and are written from the journal as it catches up"
                );
            }
            Err(error) => {
                tracing::error!(%error, "history journal: cannot set the journal aside; events stay in memory")
            }
        }
    }

    /// Writes the journals stopped processes left (and this one's set
    /// aside), segment by segment; false while the database cannot take
    /// them.
    async fn write_left(&mut self) -> bool {
        while let Some(journal) = self.left.first().cloned() {
            let store = self.store.clone();
            let set_aside = self.set_aside.clone();
            match write_journal(store.as_ref(), &journal, &set_aside, &mut || self.keep_up()).await {
                Ok((written, highest)) => {
                    if written > 0 {
                        tracing::info!(events = written, "history: a journal left waiting is written");
                    }
                    // This process's own events set aside are committed now.
                    if journal.own {
                        self.shared.committed.send_modify(|committed| *committed = (*committed).max(highest));
                    }
                    for file in &journal.files {
                        if let Err(error) = std::fs::remove_file(file)
                            && error.kind() != std::io::ErrorKind::NotFound
                        {
                            tracing::warn!(%error, segment = %file.display(), "history journal: cannot delete a written segment");
                        }
                    }
                    self.left.remove(0);
                    self.shared.healthy.store(true, Ordering::Relaxed);
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

    /// Before retrying a commit whose outcome is unknown, drops the pending
    /// events the database has after all; false when it cannot say.
    async fn settle(&mut self) -> bool {
        let Some((origin, _)) = self.journal.as_ref().and_then(|journal| journal.origin()) else {
            return true;
        };
        match self.store.journal_mark(&origin).await {
            Ok(through) => {
                let through = through.unwrap_or(0);
                let mut settled = 0;
                while self.pending.front().is_some_and(|job| job.seq <= through) {
                    self.pending.pop_front();
                    settled += 1;
                }
                if settled > 0 {
                    tracing::info!(
                        events = settled,
                        "history: a commit that seemed to fail had gone through"
                    );
                    self.shared.committed.send_modify(|committed| *committed = (*committed).max(through));
                }
                self.uncertain = false;
                true
            }
            Err(error) => {
                self.set_healthy(false, &error);
                false
            }
        }
    }

    /// Commits the oldest pending events (up to [`MAX_BATCH`]); false when
    /// the database failed.
    async fn commit_batch(&mut self) -> bool {
        if self.uncertain && !self.settle().await {
            return false;
        }
        if self.pending.is_empty() {
            return true;
        }
        let take = self.pending.len().min(MAX_BATCH);
        let events: Vec<(u64, Event)> =
            self.pending.iter().take(take).map(|job| (job.seq, job.event.clone())).collect();
        let origin = self.journal.as_ref().and_then(|journal| journal.origin()).map(|(origin, _)| origin);
        let stored = commit_storable(self.store.as_ref(), &events, origin.as_deref(), &self.set_aside).await;
        if stored.through > 0 {
            let last = self.pending.get(stored.through - 1).map_or((0, 0), |job| (job.seq, job.segment));
            let mut unstorable = stored.unstorable.iter().peekable();
            for (index, job) in self.pending.drain(..stored.through).enumerate() {
                let outcome = if unstorable.next_if_eq(&&index).is_some() {
                    Err(HistoryError::Unstorable("the history database refused this event".into()))
                } else {
                    Ok(())
                };
                if let Some(done) = job.done {
                    let _ = done.send(outcome);
                }
            }
            if let Some(journal) = &self.journal {
                self.shared.committed.send_replace(last.0);
                journal.delete_segments(self.oldest_segment, last.1);
                self.oldest_segment = self.oldest_segment.max(last.1);
                if self.pending.is_empty() {
                    journal.truncate_if_committed(last.0);
                }
            }
        }
        match stored.failed {
            None => {
                if !self.shared.healthy.load(Ordering::Relaxed) {
                    tracing::info!("history is back; waiting events written");
                }
                self.shared.healthy.store(true, Ordering::Relaxed);
                true
            }
            Some(error) => {
                self.set_healthy(false, &error);
                self.fail_waiters(&error.to_string());
                self.uncertain = self.journal.is_some();
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic, reason = "tests fail by panicking")]
mod tests {
    use std::sync::atomic::AtomicU32;

    use super::*;
    use crate::history::{HistoryFuture, OrganizationShare, Sighting, SqliteHistory, Subject};

    /// SQLite that is down while `down` is set, that reports the next
    /// `lie` commits as failed after making them, and that refuses any
    /// transaction holding an event in the zone `refuses`.
    struct Unreliable {
        inner: SqliteHistory,
        down: AtomicBool,
        lie: AtomicU32,
        refuses: Option<&'static str>,
    }

    fn unreliable(
        inner: &SqliteHistory,
        down: bool,
        lie: u32,
        refuses: Option<&'static str>,
    ) -> Arc<Unreliable> {
        Arc::new(Unreliable {
            inner: inner.clone(),
            down: AtomicBool::new(down),
            lie: AtomicU32::new(lie),
            refuses,
        })
    }

    impl HistoryStore for Unreliable {
        fn record(&self, events: Vec<Event>, mark: Option<JournalMark>) -> HistoryFuture<'_, ()> {
            if self.down.load(Ordering::SeqCst) {
                return Box::pin(std::future::ready(Err(HistoryError::Unavailable("down".into()))));
            }
            if let Some(zone) = self.refuses
                && events.iter().any(|event| event.zone.as_deref() == Some(zone))
            {
                return Box::pin(std::future::ready(Err(HistoryError::Unstorable(format!(
                    "no {zone} here"
                )))));
            }
            let lie = self.lie.load(Ordering::SeqCst) > 0;
            Box::pin(async move {
                self.inner.record(events, mark).await?;
                if lie {
                    self.lie.fetch_sub(1, Ordering::SeqCst);
                    return Err(HistoryError::Unavailable("timed out (but committed)".into()));
                }
                Ok(())
            })
        }
        fn journal_mark(&self, origin: &str) -> HistoryFuture<'_, Option<u64>> {
            if self.down.load(Ordering::SeqCst) {
                return Box::pin(std::future::ready(Err(HistoryError::Unavailable("down".into()))));
            }
            self.inner.journal_mark(origin)
        }
        fn recent(&self, a: &Subject, s: i64, l: u32) -> HistoryFuture<'_, Vec<Event>> {
            self.inner.recent(a, s, l)
        }
        fn sightings(&self, a: &Subject, s: i64, l: u32) -> HistoryFuture<'_, Vec<Sighting>> {
            self.inner.sightings(a, s, l)
        }
        fn organization(&self, o: &Subject, s: i64) -> HistoryFuture<'_, OrganizationShare> {
            self.inner.organization(o, s)
        }
        fn organization_recent(&self, o: &Subject, s: i64, l: u32) -> HistoryFuture<'_, Vec<Event>> {
            self.inner.organization_recent(o, s, l)
        }
        fn scan(&self, after: i64, s: i64, l: u32) -> HistoryFuture<'_, Vec<(i64, Event)>> {
            self.inner.scan(after, s, l)
        }
        fn erase_account(&self, a: &Subject) -> HistoryFuture<'_, u64> {
            self.inner.erase_account(a)
        }
        fn purge(&self, before: i64) -> HistoryFuture<'_, u64> {
            self.inner.purge(before)
        }
        fn counts(&self, s: i64, b: i64) -> HistoryFuture<'_, crate::history::Counts> {
            self.inner.counts(s, b)
        }
        fn summaries(
            &self,
            k: crate::history::SubjectKind,
            f: bool,
            l: u32,
        ) -> HistoryFuture<'_, Vec<crate::history::report::Summary>> {
            self.inner.summaries(k, f, l)
        }
        fn latest(&self, l: u32) -> HistoryFuture<'_, Vec<Event>> {
            self.inner.latest(l)
        }
        fn kind(&self) -> &'static str {
            "unreliable"
        }
    }

    fn event(n: i64) -> Event {
        Event {
            at_ms: 1_800_000_000_000 + n,
            account: None,
            organization: None,
            network: "192.0.2.0/24".into(),
            country: None,
            asn: None,
            zone: Some(format!("Zone/{n}")),
            locale: Some("é-ü".into()),
            restricted_device: false,
            verdict: crate::verdict::Verdict::Allow,
            score: 0,
            reasons: Vec::new(),
            error: None,
        }
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("meridian-recorder-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    async fn stored(store: &SqliteHistory) -> Vec<i64> {
        let mut at: Vec<i64> =
            store.scan(0, 0, 1_000).await.unwrap().into_iter().map(|(_, e)| e.at_ms).collect();
        at.sort_unstable();
        at
    }

    #[tokio::test]
    async fn events_past_the_memory_bound_are_written_from_the_journal_once_each() {
        let dir = scratch("bound");
        let inner = SqliteHistory::in_memory().unwrap();
        let store = unreliable(&inner, true, 0, None);
        let recorder = Recorder::with_journal_keeping(store.clone(), &dir, 3).unwrap();
        for n in 0..8 {
            recorder.record(event(n)).await.unwrap();
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        tokio::time::sleep(GATHER * 3).await;
        assert!(recorder.dropped() > 0, "memory was bounded");
        store.down.store(false, Ordering::SeqCst);
        recorder.record(event(8)).await.unwrap();
        let started = std::time::Instant::now();
        while recorder.flush().await.is_err() && started.elapsed() < Duration::from_secs(10) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        recorder.flush().await.unwrap();
        assert_eq!(stored(&inner).await, (0..9).map(|n| 1_800_000_000_000 + n).collect::<Vec<_>>());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_commit_that_seemed_to_fail_is_not_written_twice() {
        let dir = scratch("uncertain");
        let inner = SqliteHistory::in_memory().unwrap();
        let store = unreliable(&inner, false, 1, None);
        let recorder = Recorder::with_journal(store, &dir).unwrap();
        for n in 0..3 {
            recorder.record(event(n)).await.unwrap();
        }
        tokio::time::sleep(GATHER * 2).await;
        assert!(!recorder.healthy(), "the commit was reported as failed");
        recorder.record(event(3)).await.unwrap();
        let started = std::time::Instant::now();
        while recorder.flush().await.is_err() && started.elapsed() < Duration::from_secs(10) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(stored(&inner).await, (0..4).map(|n| 1_800_000_000_000 + n).collect::<Vec<_>>());
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Events 0 to 9, those in `poisoned` in the zone the store refuses.
    fn with_poison(poisoned: &[i64]) -> Vec<Event> {
        (0..10)
            .map(|n| {
                let mut event = event(n);
                if poisoned.contains(&n) {
                    event.zone = Some("Poison/Zone".into());
                }
                event
            })
            .collect()
    }

    fn at(numbers: &[i64]) -> Vec<i64> {
        numbers.iter().map(|n| 1_800_000_000_000 + n).collect()
    }

    /// The lines of `unstorable.jsonl` in `dir`.
    fn set_aside_in(dir: &Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(dir.join(UNSTORABLE_FILE))
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    async fn flushed(recorder: &Recorder) {
        let started = std::time::Instant::now();
        while recorder.flush().await.is_err() && started.elapsed() < Duration::from_secs(10) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        recorder.flush().await.unwrap();
    }

    #[tokio::test]
    async fn events_the_database_refuses_are_set_aside_and_the_rest_written() {
        // One transaction holds all ten; the first, a middle and the last
        // event are refused. Before, the transaction failed at every try
        // and nothing after it was ever written.
        let dir = scratch("unstorable");
        let inner = SqliteHistory::in_memory().unwrap();
        let store = unreliable(&inner, false, 0, Some("Poison/Zone"));
        let recorder = Recorder::with_journal(store.clone(), &dir).unwrap();
        for event in with_poison(&[0, 5, 9]) {
            recorder.record(event).await.unwrap();
        }
        flushed(&recorder).await;
        assert_eq!(stored(&inner).await, at(&[1, 2, 3, 4, 6, 7, 8]));
        assert_eq!(recorder.unstorable(), 3);
        let kept = set_aside_in(&dir);
        let kept_at: Vec<i64> = kept.iter().map(|line| line["event"]["at_ms"].as_i64().unwrap()).collect();
        assert_eq!(kept_at, at(&[0, 5, 9]), "{kept:?}");
        assert!(kept[0]["why"].as_str().unwrap().contains("no Poison/Zone here"), "{kept:?}");
        // The journal's mark moved past the last one, refused too: a
        // process killed now would replay nothing.
        let (origin, _) = recorder.journal.as_ref().unwrap().origin().unwrap();
        assert_eq!(store.journal_mark(&origin).await.unwrap(), Some(10));
        // The retention and erasures reach them too.
        assert_eq!(recorder.forget_set_aside(|event| event.at_ms < at(&[5])[0]).unwrap(), 1);
        let kept_at: Vec<i64> =
            set_aside_in(&dir).iter().map(|line| line["event"]["at_ms"].as_i64().unwrap()).collect();
        assert_eq!(kept_at, at(&[5, 9]));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_journal_left_waiting_is_written_past_the_events_the_database_refuses() {
        let dir = scratch("unstorable-left");
        let inner = SqliteHistory::in_memory().unwrap();
        let store = unreliable(&inner, true, 0, None);
        let recorder = Recorder::with_journal(store, &dir).unwrap();
        for event in with_poison(&[2, 3]) {
            recorder.record(event).await.unwrap();
        }
        drop(recorder);
        tokio::time::sleep(GATHER * 3).await;
        let recorder =
            Recorder::with_journal(unreliable(&inner, false, 0, Some("Poison/Zone")), &dir).unwrap();
        flushed(&recorder).await;
        assert_eq!(stored(&inner).await, at(&[0, 1, 4, 5, 6, 7, 8, 9]));
        assert_eq!(set_aside_in(&dir).len(), 2);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn events_set_aside_are_tried_again_at_the_next_start_and_written_once() {
        let dir = scratch("unstorable-again");
        let inner = SqliteHistory::in_memory().unwrap();
        let refusing = unreliable(&inner, false, 0, Some("Poison/Zone"));
        let recorder = Recorder::with_journal(refusing.clone(), &dir).unwrap();
        for event in with_poison(&[3, 7]) {
            recorder.record(event).await.unwrap();
        }
        flushed(&recorder).await;
        assert_eq!(set_aside_in(&dir).len(), 2);
        drop(recorder);
        tokio::time::sleep(GATHER * 3).await;
        // Still refused: set aside again, nothing written twice.
        let recorder = Recorder::with_journal(refusing, &dir).unwrap();
        flushed(&recorder).await;
        assert_eq!((stored(&inner).await.len(), set_aside_in(&dir).len()), (8, 2));
        drop(recorder);
        tokio::time::sleep(GATHER * 3).await;
        // The cause is mended (the constraint dropped): they go in, once.
        for _ in 0..2 {
            let recorder = Recorder::with_journal(unreliable(&inner, false, 0, None), &dir).unwrap();
            flushed(&recorder).await;
            assert_eq!(stored(&inner).await, at(&[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]));
            assert!(!dir.join(UNSTORABLE_FILE).exists());
            drop(recorder);
            tokio::time::sleep(GATHER * 3).await;
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn converting_the_events_set_aside_twice_makes_the_same_journal() {
        // A crash after the journal is made, before the file is removed.
        let dir = scratch("unstorable-twice");
        std::fs::create_dir_all(&dir).unwrap();
        let line =
            serde_json::json!({ "at_ms": 1, "why": "refused", "origin": "o", "seq": 4, "event": event(4) })
                .to_string();
        // Kept twice (a retry after an outage met it again), then a torn line.
        std::fs::write(dir.join(UNSTORABLE_FILE), format!("{line}\n{line}\n{{\"torn")).unwrap();
        let kept = std::fs::read(dir.join(UNSTORABLE_FILE)).unwrap();
        requeue_unstorable(&dir).unwrap();
        std::fs::write(dir.join(UNSTORABLE_FILE), kept).unwrap();
        requeue_unstorable(&dir).unwrap();
        let left = read_left(&dir).unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].files.len(), 1);
        let events = read_segment(&left[0].files[0]).unwrap();
        assert_eq!(events.len(), 1, "the line kept twice is read once");
        assert_eq!((events[0].0, events[0].1.at_ms), (1, 1_800_000_000_004));
        assert_eq!(
            std::fs::read_to_string(dir.join(UNSTORABLE_FILE)).unwrap(),
            "{\"torn\n",
            "kept, not lost"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn one_start_tries_a_bounded_number_of_events_set_aside_again() {
        let dir = scratch("unstorable-bound");
        std::fs::create_dir_all(&dir).unwrap();
        let count = REQUEUE_AT_MOST + 5;
        let lines: String = (0..count)
            .map(|n| {
                let line =
                    serde_json::json!({ "origin": "o", "seq": n, "event": event(i64::try_from(n).unwrap()) });
                format!("{line}\n")
            })
            .collect();
        std::fs::write(dir.join(UNSTORABLE_FILE), lines).unwrap();
        requeue_unstorable(&dir).unwrap();
        let left = read_left(&dir).unwrap();
        assert_eq!(read_segment(&left[0].files[0]).unwrap().len(), usize::try_from(REQUEUE_AT_MOST).unwrap());
        assert_eq!(set_aside_in(&dir).len(), 5, "the rest wait for the next start");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn without_a_journal_only_the_refused_events_fail() {
        let inner = SqliteHistory::in_memory().unwrap();
        let recorder = Recorder::start(unreliable(&inner, false, 0, Some("Poison/Zone")));
        let outcomes: Vec<_> =
            futures_util::future::join_all(with_poison(&[4]).into_iter().map(|event| recorder.record(event)))
                .await;
        let refused: Vec<usize> =
            outcomes.iter().enumerate().filter(|(_, outcome)| outcome.is_err()).map(|(n, _)| n).collect();
        assert_eq!(refused, [4]);
        assert!(matches!(outcomes[4], Err(HistoryError::Unstorable(_))));
        assert_eq!(stored(&inner).await, at(&[0, 1, 2, 3, 5, 6, 7, 8, 9]));
        assert_eq!(recorder.unstorable(), 1);
    }

    #[test]
    fn torn_and_non_utf8_lines_are_skipped_not_fatal() {
        let dir = scratch("torn");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("journal-x-00000000.jsonl");
        let mut bytes = serde_json::to_vec(&(1u64, event(1))).unwrap();
        bytes.push(b'\n');
        let second = serde_json::to_vec(&(2u64, event(2))).unwrap();
        // Cut inside the two-byte "é" of the second line.
        let cut = second.iter().position(|&b| b == 0xc3).unwrap() + 1;
        bytes.extend_from_slice(&second[..cut]);
        std::fs::write(&path, bytes).unwrap();
        let events = read_segment(&path).unwrap();
        assert_eq!(events.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(), [1]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

//! The embedded history: one SQLite file in WAL mode, created and migrated
//! on first use. Writes go through one connection, reads through another
//! (WAL lets them run side by side); both run on Tokio's blocking pool.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension as _, params};

use super::{
    Event, HistoryError, HistoryFuture, HistoryStore, JournalMark, OrganizationShare, Sighting, Subject,
    now_ms,
};
use crate::ErrorCode;
use crate::geo::Country;
use crate::verdict::{ReasonCode, Verdict};

/// The schema, one entry per version; a database at version N runs the
/// entries after N, each in its own transaction, and records the new
/// version in `PRAGMA user_version`. Entries are never edited, only added.
const MIGRATIONS: &[&str] = &[
    // 1: events, looked up by account, by organisation and by age.
    "CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        at_ms INTEGER NOT NULL,
        account TEXT,
        organization TEXT,
        network TEXT NOT NULL,
        country TEXT,
        asn INTEGER,
        zone TEXT,
        locale TEXT,
        restricted_device INTEGER NOT NULL,
        verdict TEXT NOT NULL,
        score INTEGER NOT NULL,
        reasons TEXT NOT NULL,
        error TEXT
    );
    CREATE INDEX events_account ON events (account, at_ms) WHERE account IS NOT NULL;
    CREATE INDEX events_organization ON events (organization, at_ms) WHERE organization IS NOT NULL;
    CREATE INDEX events_at ON events (at_ms);",
    // 2: how far each writer's journal is committed.
    "CREATE TABLE journal_marks (
        origin TEXT PRIMARY KEY,
        through INTEGER NOT NULL,
        at_ms INTEGER NOT NULL
    );",
];

/// Work for the writer thread.
type WriteJob = Box<dyn FnOnce(&mut Connection) + Send>;

/// The writer thread's nice value, the lowest priority there is: its
/// commits take the CPU the answers leave (at 10 a half-loaded server's
/// p99 was 6–7 ms, at 19 about 5 ms; docs/BENCHMARKS.md).
#[cfg(target_os = "linux")]
const WRITER_NICE: i32 = 19;

/// The SQLite history.
#[derive(Clone)]
pub struct SqliteHistory {
    /// The writer connection's own thread.
    writer: std::sync::mpsc::Sender<WriteJob>,
    reader: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for SqliteHistory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteHistory").finish_non_exhaustive()
    }
}

fn unavailable(e: impl std::fmt::Display) -> HistoryError {
    HistoryError::Unavailable(e.to_string())
}

impl SqliteHistory {
    /// Opens (creating when absent) the database at `path` and brings its
    /// schema up to date.
    ///
    /// # Errors
    /// When the file cannot be opened or migrated.
    pub fn open(path: &Path) -> Result<Self, HistoryError> {
        let open = || -> Result<Connection, HistoryError> {
            let connection = Connection::open(path)
                .map_err(|e| HistoryError::Config(format!("history database {}: {e}", path.display())))?;
            // WAL: readers never wait for the writer; NORMAL: a commit
            // survives the process crashing (not the machine losing power);
            // 32 MiB of page cache each keeps the indexes' hot pages in memory.
            connection
                .execute_batch(
                    "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000;
                     PRAGMA cache_size = -32768;",
                )
                .map_err(unavailable)?;
            Ok(connection)
        };
        let mut writer = open()?;
        migrate(&mut writer)?;
        let reader = open()?;
        Ok(Self { writer: spawn_writer(writer)?, reader: Arc::new(Mutex::new(reader)) })
    }

    /// An in-memory database (tests).
    ///
    /// # Errors
    /// When SQLite cannot allocate it.
    pub fn in_memory() -> Result<Self, HistoryError> {
        // One shared-cache database seen by both connections.
        let mut name = [0u8; 8];
        crate::random_bytes(&mut name).map_err(unavailable)?;
        let uri =
            format!("file:meridian-{}?mode=memory&cache=shared", meridian_protocol::base64url_encode(&name));
        let flags = rusqlite::OpenFlags::default() | rusqlite::OpenFlags::SQLITE_OPEN_URI;
        let mut writer = Connection::open_with_flags(&uri, flags).map_err(unavailable)?;
        migrate(&mut writer)?;
        let reader = Connection::open_with_flags(&uri, flags).map_err(unavailable)?;
        Ok(Self { writer: spawn_writer(writer)?, reader: Arc::new(Mutex::new(reader)) })
    }

    /// Runs `work` on one connection on the blocking pool.
    fn with<T: Send + 'static>(
        connection: &Arc<Mutex<Connection>>,
        work: impl FnOnce(&mut Connection) -> Result<T, HistoryError> + Send + 'static,
    ) -> HistoryFuture<'static, T> {
        let connection = connection.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let mut guard = connection.lock().map_err(|_| unavailable("a history query panicked"))?;
                work(&mut guard)
            })
            .await
            .map_err(unavailable)?
        })
    }
}

impl SqliteHistory {
    /// Runs `work` on the writer thread.
    fn write<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<T, HistoryError> + Send + 'static,
    ) -> HistoryFuture<'static, T> {
        let (done, result) = tokio::sync::oneshot::channel();
        let job: WriteJob = Box::new(move |connection| {
            let _ = done.send(work(connection));
        });
        let sent = self.writer.send(job);
        Box::pin(async move {
            sent.map_err(|_| unavailable("the history writer thread has stopped"))?;
            result.await.map_err(|_| unavailable("a history write panicked"))?
        })
    }
}

/// Starts the thread that owns the writer connection.
fn spawn_writer(mut connection: Connection) -> Result<std::sync::mpsc::Sender<WriteJob>, HistoryError> {
    let (jobs, queue) = std::sync::mpsc::channel::<WriteJob>();
    std::thread::Builder::new()
        .name("meridian-history-writer".into())
        .spawn(move || {
            lower_priority();
            // Ends when every handle to the history is gone.
            while let Ok(job) = queue.recv() {
                // A write that panics fails alone (its caller hears so);
                // the thread goes on with the next.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&mut connection)));
            }
        })
        .map_err(unavailable)?;
    Ok(jobs)
}

/// Lowers the calling thread's priority (on Linux a nice value is per
/// thread); elsewhere the writer runs at the process's priority.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    if let Err(error) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), WRITER_NICE) {
        tracing::debug!(%error, "history writer: cannot lower its priority");
    }
}

/// Brings the schema to the newest version.
fn migrate(connection: &mut Connection) -> Result<(), HistoryError> {
    let version: usize = connection
        .query_row("PRAGMA user_version", [], |row| row.get::<_, i64>(0))
        .map_err(unavailable)?
        .try_into()
        .unwrap_or(0);
    if version > MIGRATIONS.len() {
        return Err(HistoryError::Config(format!(
            "the history database is at schema version {version}, newer than this Meridian knows ({}); upgrade Meridian",
            MIGRATIONS.len()
        )));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        let transaction = connection.transaction().map_err(unavailable)?;
        transaction.execute_batch(sql).map_err(unavailable)?;
        transaction.pragma_update(None, "user_version", index + 1).map_err(unavailable)?;
        transaction.commit().map_err(unavailable)?;
    }
    Ok(())
}

/// The reason codes as stored: comma-separated names.
fn reasons_text(reasons: &[ReasonCode]) -> String {
    reasons.iter().map(|code| code.as_str()).collect::<Vec<_>>().join(",")
}

fn event_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Event> {
    let reasons: String = row.get("reasons")?;
    let verdict: String = row.get("verdict")?;
    Ok(Event {
        at_ms: row.get("at_ms")?,
        account: row.get::<_, Option<String>>("account")?.map(Subject::from_stored),
        organization: row.get::<_, Option<String>>("organization")?.map(Subject::from_stored),
        network: row.get("network")?,
        country: row.get::<_, Option<String>>("country")?.as_deref().and_then(Country::parse),
        asn: row.get("asn")?,
        zone: row.get("zone")?,
        locale: row.get("locale")?,
        restricted_device: row.get("restricted_device")?,
        verdict: Verdict::from_name(&verdict).unwrap_or(Verdict::Deny),
        score: row.get("score")?,
        reasons: reasons.split(',').filter_map(ReasonCode::from_name).collect(),
        error: row.get::<_, Option<String>>("error")?.as_deref().and_then(ErrorCode::from_name),
    })
}

impl HistoryStore for SqliteHistory {
    fn record(&self, events: Vec<Event>, mark: Option<JournalMark>) -> HistoryFuture<'_, ()> {
        self.write(move |connection| {
            let transaction = connection.transaction().map_err(unavailable)?;
            {
                let mut insert = transaction
                    .prepare_cached(
                        "INSERT INTO events (at_ms, account, organization, network, country, asn, zone, locale,
                            restricted_device, verdict, score, reasons, error)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                    )
                    .map_err(unavailable)?;
                for event in &events {
                    insert
                        .execute(params![
                            event.at_ms,
                            event.account.as_ref().map(Subject::as_str),
                            event.organization.as_ref().map(Subject::as_str),
                            event.network,
                            event.country.map(|c| c.as_str().to_owned()),
                            event.asn,
                            event.zone,
                            event.locale,
                            event.restricted_device,
                            event.verdict.as_str(),
                            event.score,
                            reasons_text(&event.reasons),
                            event.error.map(ErrorCode::as_str),
                        ])
                        .map_err(unavailable)?;
                }
            }
            if let Some(mark) = mark {
                transaction
                    .execute(
                        "INSERT INTO journal_marks (origin, through, at_ms) VALUES (?1, ?2, ?3)
                         ON CONFLICT (origin) DO UPDATE SET through = excluded.through, at_ms = excluded.at_ms",
                        params![mark.origin, i64::try_from(mark.through).unwrap_or(i64::MAX), now_ms()],
                    )
                    .map_err(unavailable)?;
            }
            transaction.commit().map_err(unavailable)
        })
    }

    fn journal_mark(&self, origin: &str) -> HistoryFuture<'_, Option<u64>> {
        let origin = origin.to_owned();
        Self::with(&self.reader, move |connection| {
            let through: Option<i64> = connection
                .prepare_cached("SELECT through FROM journal_marks WHERE origin = ?1")
                .and_then(|mut query| query.query_row(params![origin], |row| row.get(0)).optional())
                .map_err(unavailable)?;
            Ok(through.map(|through| u64::try_from(through).unwrap_or(0)))
        })
    }

    fn recent(&self, account: &Subject, since_ms: i64, limit: u32) -> HistoryFuture<'_, Vec<Event>> {
        let account = account.clone();
        Self::with(&self.reader, move |connection| {
            let mut query = connection
                .prepare_cached(
                    "SELECT * FROM events WHERE account = ?1 AND at_ms >= ?2 ORDER BY at_ms DESC, id DESC LIMIT ?3",
                )
                .map_err(unavailable)?;
            let rows = query
                .query_map(params![account.as_str(), since_ms, limit], event_from_row)
                .map_err(unavailable)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(unavailable)
        })
    }

    fn sightings(&self, account: &Subject, since_ms: i64, limit: u32) -> HistoryFuture<'_, Vec<Sighting>> {
        let account = account.clone();
        Self::with(&self.reader, move |connection| {
            let mut query = connection
                .prepare_cached(
                    "SELECT at_ms, error IS NULL, network, country, zone, locale, restricted_device FROM events
                     WHERE account = ?1 AND at_ms >= ?2 ORDER BY at_ms DESC, id DESC LIMIT ?3",
                )
                .map_err(unavailable)?;
            let rows = query
                .query_map(params![account.as_str(), since_ms, limit], |row| {
                    Ok(Sighting {
                        at_ms: row.get(0)?,
                        accepted: row.get(1)?,
                        network: row.get(2)?,
                        country: row.get::<_, Option<String>>(3)?.as_deref().and_then(Country::parse),
                        zone: row.get(4)?,
                        locale: row.get(5)?,
                        restricted_device: row.get(6)?,
                    })
                })
                .map_err(unavailable)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(unavailable)
        })
    }

    fn organization(&self, organization: &Subject, since_ms: i64) -> HistoryFuture<'_, OrganizationShare> {
        let organization = organization.clone();
        Self::with(&self.reader, move |connection| {
            let mut query = connection
                .prepare_cached(
                    "SELECT COUNT(*), COALESCE(SUM(restricted * 2 > total), 0) FROM (
                        SELECT SUM(restricted_device) AS restricted, COUNT(*) AS total FROM events
                        WHERE organization = ?1 AND at_ms >= ?2 AND account IS NOT NULL AND error IS NULL
                        GROUP BY account)",
                )
                .map_err(unavailable)?;
            let share = query
                .query_row(params![organization.as_str(), since_ms], |row| {
                    Ok(OrganizationShare { accounts: row.get(0)?, restricted_accounts: row.get(1)? })
                })
                .optional()
                .map_err(unavailable)?;
            Ok(share.unwrap_or_default())
        })
    }

    fn organization_recent(
        &self,
        organization: &Subject,
        since_ms: i64,
        limit: u32,
    ) -> HistoryFuture<'_, Vec<Event>> {
        let organization = organization.clone();
        Self::with(&self.reader, move |connection| {
            let mut query = connection
                .prepare_cached(
                    "SELECT * FROM events WHERE organization = ?1 AND at_ms >= ?2 ORDER BY at_ms DESC, id DESC LIMIT ?3",
                )
                .map_err(unavailable)?;
            let rows = query
                .query_map(params![organization.as_str(), since_ms, limit], event_from_row)
                .map_err(unavailable)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(unavailable)
        })
    }

    fn scan(&self, after: i64, since_ms: i64, limit: u32) -> HistoryFuture<'_, Vec<(i64, Event)>> {
        Self::with(&self.reader, move |connection| {
            let mut query = connection
                .prepare_cached("SELECT * FROM events WHERE id > ?1 AND at_ms >= ?2 ORDER BY id LIMIT ?3")
                .map_err(unavailable)?;
            let rows = query
                .query_map(params![after, since_ms, limit], |row| Ok((row.get("id")?, event_from_row(row)?)))
                .map_err(unavailable)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(unavailable)
        })
    }

    fn erase_account(&self, account: &Subject) -> HistoryFuture<'_, u64> {
        let account = account.clone();
        self.write(move |connection| {
            let erased = connection
                .execute("DELETE FROM events WHERE account = ?1", params![account.as_str()])
                .map_err(unavailable)?;
            Ok(u64::try_from(erased).unwrap_or(u64::MAX))
        })
    }

    fn purge(&self, before_ms: i64) -> HistoryFuture<'_, u64> {
        self.write(move |connection| {
            let purged = connection
                .execute("DELETE FROM events WHERE at_ms < ?1", params![before_ms])
                .map_err(unavailable)?;
            connection
                .execute("DELETE FROM journal_marks WHERE at_ms < ?1", params![before_ms])
                .map_err(unavailable)?;
            Ok(u64::try_from(purged).unwrap_or(u64::MAX))
        })
    }

    fn kind(&self) -> &'static str {
        "sqlite"
    }
}

//! The embedded history: one SQLite file in WAL mode, created and migrated
//! on first use. Writes go through one connection, reads through another
//! (WAL lets them run side by side), each on a thread of its own that the
//! queries queue for.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension as _, params};

use super::report::{FLAGGED_SQL, STRONGEST_FIRST_SQL, Summary};
use super::rollup::{ACCOUNT, HOUR_MS, MEMBER, ORGANIZATION, Rollup, stored_subject};
use super::{
    Counts, Event, HistoryError, HistoryFuture, HistoryStore, JournalMark, OrganizationShare, Sighting,
    Subject, SubjectKind, now_ms,
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
    // 3: the console's running counts (`rollup.rs`) and the last event
    // counted in them; the writer counts the events after it (`fold`).
    "CREATE TABLE tallies (
        reason TEXT NOT NULL,
        hour INTEGER NOT NULL,
        country TEXT NOT NULL,
        verdict TEXT NOT NULL,
        n INTEGER NOT NULL,
        PRIMARY KEY (reason, hour, country, verdict)
    ) WITHOUT ROWID;
    CREATE TABLE subjects (
        kind TEXT NOT NULL,
        subject TEXT NOT NULL,
        organization TEXT,
        logins INTEGER NOT NULL,
        accepted INTEGER NOT NULL,
        restricted INTEGER NOT NULL,
        held INTEGER NOT NULL,
        claim INTEGER NOT NULL,
        ip INTEGER NOT NULL,
        account_history INTEGER NOT NULL,
        organization_share INTEGER NOT NULL,
        travel INTEGER NOT NULL,
        last_ms INTEGER NOT NULL,
        PRIMARY KEY (kind, subject)
    ) WITHOUT ROWID;
    CREATE INDEX subjects_organization ON subjects (organization) WHERE organization IS NOT NULL;
    CREATE TABLE rollup_mark (id INTEGER NOT NULL);
    INSERT INTO rollup_mark VALUES (0);",
    // 4: an account's and an organisation's events by whether their token
    // was accepted, then by time: the signals read the most recent accepted
    // ones, however many refused attempts came after them, in one range of
    // the index (each event is still in one account and one organisation
    // index only), and a report reads each kind newest first in its own.
    "CREATE INDEX events_account_outcome ON events (account, error IS NULL, at_ms) WHERE account IS NOT NULL;
    DROP INDEX events_account;
    CREATE INDEX events_organization_outcome ON events (organization, error IS NULL, at_ms)
        WHERE organization IS NOT NULL;
    DROP INDEX events_organization;",
];

/// The events of one account (`?1`) or organisation since `?2`, newest
/// first: the newest `?3` accepted and the newest `?3` refused, each read in
/// order from its own range of the `…_outcome` index. However many refused
/// attempts there are, they neither crowd the accepted sign-ins out nor
/// make the read longer.
fn newest_first(column: &str) -> String {
    let part = |accepted: u8| {
        format!(
            "SELECT * FROM (SELECT * FROM events WHERE {column} = ?1 AND (error IS NULL) = {accepted} AND at_ms >= ?2
                ORDER BY at_ms DESC, id DESC LIMIT ?3)"
        )
    };
    format!("{} UNION ALL {} ORDER BY at_ms DESC, id DESC", part(1), part(0))
}

/// What an organisation's accounts show: accepted sign-ins only, read in
/// one range of `events_organization_outcome`.
const ORGANIZATION_SHARE_SQL: &str = "SELECT COUNT(*), COALESCE(SUM(restricted * 2 > total), 0), COALESCE(SUM(total), 0)
    FROM (SELECT SUM(restricted_device) AS restricted, COUNT(*) AS total FROM events
        WHERE organization = ?1 AND (error IS NULL) = 1 AND at_ms >= ?2 AND account IS NOT NULL GROUP BY account)";

/// An account's most recent accepted sign-ins, read in one range of
/// `events_account_outcome` (`(error IS NULL) = 1` is how SQLite matches the
/// index's expression), so refused attempts after them cost nothing to skip.
const SIGHTINGS_SQL: &str = "SELECT at_ms, error IS NULL, network, country, zone, locale, restricted_device
    FROM events WHERE account = ?1 AND (error IS NULL) = 1 AND at_ms >= ?2 ORDER BY at_ms DESC, id DESC LIMIT ?3";

/// How often the writer adds newly committed events to the running counts
/// when it is not asked sooner (a console page asks first). Counting many
/// events at once touches each account's row once, not once per commit.
const FOLD_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Events counted per transaction at most (a first count of a large
/// history goes in steps, each kept).
const FOLD_PAGE: i64 = 50_000;

/// Queries waiting for one connection's thread, at most: past that the
/// history is reported unavailable (verifications answer without it)
/// instead of queueing work whose callers will have given up.
const QUEUE: usize = 1024;

/// Work for a connection's thread.
type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// The writer thread's nice value, the lowest priority there is: its
/// commits take the CPU the answers leave (at 10 a half-loaded server's
/// p99 was 6–7 ms, at 19 about 5 ms; docs/BENCHMARKS.md).
#[cfg(target_os = "linux")]
const WRITER_NICE: i32 = 19;

/// The SQLite history.
#[derive(Clone)]
pub struct SqliteHistory {
    /// The writer connection's own thread.
    writer: std::sync::mpsc::SyncSender<Job>,
    /// The reader connection's own thread: reads queue for it instead of
    /// each taking a thread of the blocking pool to wait on one connection
    /// (a burst of first sign-ins used to start hundreds).
    reader: std::sync::mpsc::SyncSender<Job>,
}

impl std::fmt::Debug for SqliteHistory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteHistory").finish_non_exhaustive()
    }
}

fn unavailable(e: impl std::fmt::Display) -> HistoryError {
    HistoryError::Unavailable(e.to_string())
}

/// An insert that failed for the values it carried (too big, a
/// constraint, a type the column refuses) rather than for the database.
fn insert_failed(e: rusqlite::Error) -> HistoryError {
    use rusqlite::ErrorCode::{ConstraintViolation, TooBig, TypeMismatch};
    match &e {
        rusqlite::Error::SqliteFailure(failure, _)
            if matches!(failure.code, ConstraintViolation | TooBig | TypeMismatch) =>
        {
            HistoryError::Unstorable(e.to_string())
        }
        rusqlite::Error::ToSqlConversionFailure(_) | rusqlite::Error::IntegralValueOutOfRange(..) => {
            HistoryError::Unstorable(e.to_string())
        }
        _ => unavailable(e),
    }
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
        Ok(Self { writer: spawn_writer(writer)?, reader: spawn_reader(reader)? })
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
        Ok(Self { writer: spawn_writer(writer)?, reader: spawn_reader(reader)? })
    }

    /// Runs `work` on the thread that owns a connection (the writer's or
    /// the reader's), and hands back its result. A read whose caller has
    /// given up by its turn (a verification answers without the history
    /// after its timeout) is skipped: it would help no one. A write always
    /// runs (an erasure asked for is carried out).
    fn on_thread<T: Send + 'static>(
        thread: &std::sync::mpsc::SyncSender<Job>,
        skip_abandoned: bool,
        work: impl FnOnce(&mut Connection) -> Result<T, HistoryError> + Send + 'static,
    ) -> HistoryFuture<'static, T> {
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |connection| {
            if !(skip_abandoned && done.is_closed()) {
                let _ = done.send(work(connection));
            }
        });
        let sent = thread.try_send(job).map_err(|error| match error {
            std::sync::mpsc::TrySendError::Full(_) => {
                unavailable(format!("the history is busy: {QUEUE} queries wait for it"))
            }
            std::sync::mpsc::TrySendError::Disconnected(_) => unavailable("a history thread has stopped"),
        });
        Box::pin(async move {
            sent?;
            result.await.map_err(|_| unavailable("a history query panicked"))?
        })
    }

    /// Runs `read` on the reader thread.
    fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&mut Connection) -> Result<T, HistoryError> + Send + 'static,
    ) -> HistoryFuture<'static, T> {
        Self::on_thread(&self.reader, true, read)
    }
}

impl SqliteHistory {
    /// Runs `work` on the writer thread.
    fn write<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<T, HistoryError> + Send + 'static,
    ) -> HistoryFuture<'static, T> {
        Self::on_thread(&self.writer, false, work)
    }
}

impl SqliteHistory {
    /// Brings the running counts up to every committed event, then runs
    /// `read` on the reader connection.
    fn counted_then<T: Send + 'static>(
        &self,
        read: impl FnOnce(&mut Connection) -> Result<T, HistoryError> + Send + 'static,
    ) -> HistoryFuture<'static, T> {
        let counted = self.write(|connection| fold(connection).map(drop));
        let reader = self.reader.clone();
        Box::pin(async move {
            counted.await?;
            Self::on_thread(&reader, true, read).await
        })
    }
}

/// Starts the thread that owns the writer connection.
fn spawn_writer(mut connection: Connection) -> Result<std::sync::mpsc::SyncSender<Job>, HistoryError> {
    let (jobs, queue) = std::sync::mpsc::sync_channel::<Job>(QUEUE);
    std::thread::Builder::new()
        .name("meridian-history-writer".into())
        .spawn(move || {
            lower_priority();
            let mut folded = std::time::Instant::now();
            // Ends when every handle to the history is gone.
            loop {
                match queue.recv_timeout(FOLD_EVERY) {
                    // A write that panics fails alone (its caller hears so);
                    // the thread goes on with the next.
                    Ok(job) => {
                        let _ =
                            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&mut connection)));
                    }
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                }
                if folded.elapsed() >= FOLD_EVERY {
                    folded = std::time::Instant::now();
                    if let Err(error) = fold(&mut connection) {
                        tracing::debug!(%error, "history: counting for the console failed; retried");
                    }
                }
            }
        })
        .map_err(unavailable)?;
    Ok(jobs)
}

/// Starts the thread that owns the reader connection.
fn spawn_reader(mut connection: Connection) -> Result<std::sync::mpsc::SyncSender<Job>, HistoryError> {
    let (jobs, queue) = std::sync::mpsc::sync_channel::<Job>(QUEUE);
    std::thread::Builder::new()
        .name("meridian-history-reader".into())
        .spawn(move || {
            // Ends when every handle to the history is gone.
            while let Ok(job) = queue.recv() {
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

/// Adds the events committed since the last count to the running counts,
/// a page per transaction; returns how many.
fn fold(connection: &mut Connection) -> Result<u64, HistoryError> {
    let mut done = 0u64;
    loop {
        let transaction = connection.transaction().map_err(unavailable)?;
        let mark: i64 =
            transaction.query_row("SELECT id FROM rollup_mark", [], |row| row.get(0)).map_err(unavailable)?;
        let page = {
            // What the counts need of each event, and no more.
            let mut query = transaction
                .prepare_cached(
                    "SELECT id, at_ms, account, organization, country, restricted_device, verdict, reasons, error
                     FROM events WHERE id > ?1 ORDER BY id LIMIT ?2",
                )
                .map_err(unavailable)?;
            query
                .query_map(params![mark, FOLD_PAGE], |row| {
                    Ok((row.get::<_, i64>(0)?, counted_from_row(row)?))
                })
                .map_err(unavailable)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(unavailable)?
        };
        let Some(&(last, _)) = page.last() else { return Ok(done) };
        let events: Vec<Event> = page.into_iter().map(|(_, event)| event).collect();
        apply(&transaction, &Rollup::of(&events, 1))?;
        transaction.execute("UPDATE rollup_mark SET id = ?1", params![last]).map_err(unavailable)?;
        transaction.commit().map_err(unavailable)?;
        done += events.len() as u64;
        if done >= FOLD_PAGE as u64 {
            tracing::info!(events = done, "history: counting recorded events for the console");
        }
    }
}

/// The columns of an event the counts read (`fold`), as an event.
fn counted_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Event> {
    let reasons: String = row.get(7)?;
    let verdict: String = row.get(6)?;
    Ok(Event {
        at_ms: row.get(1)?,
        account: row.get::<_, Option<String>>(2)?.map(Subject::from_stored),
        organization: row.get::<_, Option<String>>(3)?.map(Subject::from_stored),
        network: String::new(),
        country: row.get::<_, Option<String>>(4)?.as_deref().and_then(Country::parse),
        asn: None,
        zone: None,
        locale: None,
        restricted_device: row.get(5)?,
        verdict: Verdict::from_name(&verdict).unwrap_or(Verdict::Deny),
        score: 0,
        reasons: reasons.split(',').filter_map(ReasonCode::from_name).collect(),
        error: row.get::<_, Option<String>>(8)?.as_deref().and_then(ErrorCode::from_name),
    })
}

/// Adds a rollup to the running counts; drops rows counted down to zero.
fn apply(connection: &Connection, rollup: &Rollup) -> Result<(), HistoryError> {
    let mut tally = connection
        .prepare_cached(
            "INSERT INTO tallies (reason, hour, country, verdict, n) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (reason, hour, country, verdict) DO UPDATE SET n = n + excluded.n",
        )
        .map_err(unavailable)?;
    let mut emptied = false;
    for ((hour, country, verdict, reason), n) in &rollup.tallies {
        let country = country.as_ref().map_or("??", |c| c.as_str());
        tally.execute(params![reason, hour, country, verdict, n]).map_err(unavailable)?;
        emptied |= *n < 0;
    }
    let mut subject = connection
        .prepare_cached(
            "INSERT INTO subjects (kind, subject, organization, logins, accepted, restricted, held,
                claim, ip, account_history, organization_share, travel, last_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
             ON CONFLICT (kind, subject) DO UPDATE SET
                organization = CASE WHEN excluded.organization IS NOT NULL AND excluded.last_ms >= last_ms
                    THEN excluded.organization ELSE organization END,
                logins = logins + excluded.logins, accepted = accepted + excluded.accepted,
                restricted = restricted + excluded.restricted, held = held + excluded.held,
                claim = claim + excluded.claim, ip = ip + excluded.ip,
                account_history = account_history + excluded.account_history,
                organization_share = organization_share + excluded.organization_share,
                travel = travel + excluded.travel, last_ms = MAX(last_ms, excluded.last_ms)",
        )
        .map_err(unavailable)?;
    for (key, delta) in &rollup.subjects {
        let [claim, ip, account_history, organization_share, travel] = delta.region;
        subject
            .execute(params![
                key.0,
                stored_subject(key),
                delta.organization,
                delta.logins,
                delta.accepted,
                delta.restricted,
                delta.held,
                claim,
                ip,
                account_history,
                organization_share,
                travel,
                delta.last_ms
            ])
            .map_err(unavailable)?;
        emptied |= delta.logins < 0;
    }
    if emptied {
        connection
            .execute_batch("DELETE FROM tallies WHERE n <= 0; DELETE FROM subjects WHERE logins <= 0;")
            .map_err(unavailable)?;
    }
    Ok(())
}

/// Takes the events `filter` selects (`WHERE …` with `?1`) out of the
/// running counts and the events table; returns how many there were.
fn erase_where(
    connection: &mut Connection,
    filter: &str,
    value: &dyn rusqlite::ToSql,
) -> Result<u64, HistoryError> {
    let transaction = connection.transaction().map_err(unavailable)?;
    let events = {
        let mut query =
            transaction.prepare(&format!("SELECT * FROM events WHERE {filter}")).map_err(unavailable)?;
        query
            .query_map([value], event_from_row)
            .map_err(unavailable)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(unavailable)?
    };
    apply(&transaction, &Rollup::of(&events, -1))?;
    let erased =
        transaction.execute(&format!("DELETE FROM events WHERE {filter}"), [value]).map_err(unavailable)?;
    transaction.commit().map_err(unavailable)?;
    Ok(u64::try_from(erased).unwrap_or(u64::MAX))
}

/// A summary row of `subjects` (with the organisation's share columns,
/// when asked).
fn summary_from_row(row: &rusqlite::Row<'_>, with_share: bool) -> rusqlite::Result<Summary> {
    Summary::from_row(
        row.get("subject")?,
        row.get("organization")?,
        row.get("last_ms")?,
        with_share,
        |name| row.get(name),
    )
}

/// Rows of (key, verdict, count) from a grouping query over `tallies`.
fn grouped<K: rusqlite::types::FromSql>(
    connection: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<(K, Verdict, u64)>, HistoryError> {
    let mut query = connection.prepare_cached(sql).map_err(unavailable)?;
    let rows = query
        .query_map(params, |row| {
            let verdict: String = row.get(1)?;
            let n: i64 = row.get(2)?;
            Ok((
                row.get(0)?,
                Verdict::from_name(&verdict).unwrap_or(Verdict::Deny),
                u64::try_from(n).unwrap_or(0),
            ))
        })
        .map_err(unavailable)?;
    rows.collect::<Result<_, _>>().map_err(unavailable)
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
                // Every new event is numbered after both the newest event and
                // the last one counted (SQLite would reuse the number of an
                // erased newest event, which the counts then never see).
                let mut id: i64 = transaction
                    .query_row(
                        "SELECT MAX(COALESCE((SELECT MAX(id) FROM events), 0), (SELECT id FROM rollup_mark))",
                        [],
                        |row| row.get(0),
                    )
                    .map_err(unavailable)?;
                let mut insert = transaction
                    .prepare_cached(
                        "INSERT INTO events (id, at_ms, account, organization, network, country, asn, zone, locale,
                            restricted_device, verdict, score, reasons, error)
                         VALUES (?14, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                    )
                    .map_err(unavailable)?;
                for event in &events {
                    id += 1;
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
                            id,
                        ])
                        .map_err(insert_failed)?;
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
        self.read(move |connection| {
            let through: Option<i64> = connection
                .prepare_cached("SELECT through FROM journal_marks WHERE origin = ?1")
                .and_then(|mut query| query.query_row(params![origin], |row| row.get(0)).optional())
                .map_err(unavailable)?;
            Ok(through.map(|through| u64::try_from(through).unwrap_or(0)))
        })
    }

    fn recent(&self, account: &Subject, since_ms: i64, limit: u32) -> HistoryFuture<'_, Vec<Event>> {
        let account = account.clone();
        self.read(move |connection| {
            let mut query = connection.prepare_cached(&newest_first("account")).map_err(unavailable)?;
            let rows = query
                .query_map(params![account.as_str(), since_ms, limit], event_from_row)
                .map_err(unavailable)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(unavailable)
        })
    }

    fn sightings(&self, account: &Subject, since_ms: i64, limit: u32) -> HistoryFuture<'_, Vec<Sighting>> {
        let account = account.clone();
        self.read(move |connection| {
            let mut query = connection.prepare_cached(SIGHTINGS_SQL).map_err(unavailable)?;
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
        self.read(move |connection| {
            let mut query = connection.prepare_cached(ORGANIZATION_SHARE_SQL).map_err(unavailable)?;
            let share = query
                .query_row(params![organization.as_str(), since_ms], |row| {
                    Ok(OrganizationShare {
                        accounts: row.get(0)?,
                        restricted_accounts: row.get(1)?,
                        sign_ins: row.get::<_, i64>(2)?.try_into().unwrap_or(u32::MAX),
                    })
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
        self.read(move |connection| {
            let mut query = connection.prepare_cached(&newest_first("organization")).map_err(unavailable)?;
            let rows = query
                .query_map(params![organization.as_str(), since_ms, limit], event_from_row)
                .map_err(unavailable)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(unavailable)
        })
    }

    fn scan(&self, after: i64, since_ms: i64, limit: u32) -> HistoryFuture<'_, Vec<(i64, Event)>> {
        self.read(move |connection| {
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
        self.write(move |connection| erase_where(connection, "account = ?1", &account.as_str()))
    }

    fn purge(&self, before_ms: i64) -> HistoryFuture<'_, u64> {
        self.write(move |connection| {
            let purged = erase_where(connection, "at_ms < ?1", &before_ms)?;
            connection
                .execute("DELETE FROM journal_marks WHERE at_ms < ?1", params![before_ms])
                .map_err(unavailable)?;
            Ok(purged)
        })
    }

    fn counts(&self, since_ms: i64, bucket_ms: i64) -> HistoryFuture<'_, Counts> {
        self.counted_then(move |connection| {
            let since = since_ms.div_euclid(HOUR_MS);
            let bucket = (bucket_ms / HOUR_MS).max(1);
            let series = grouped(
                connection,
                "SELECT hour / ?2 * ?2 * 3600000, verdict, SUM(n) FROM tallies WHERE reason = '' AND hour >= ?1 GROUP BY 1, 2",
                params![since, bucket],
            )?;
            let countries = grouped(
                connection,
                "SELECT country, verdict, SUM(n) FROM tallies WHERE reason = '' AND hour >= ?1 GROUP BY 1, 2",
                params![since],
            )?;
            let reasons: Vec<(String, Verdict, u64)> = grouped(
                connection,
                "SELECT reason, verdict, SUM(n) FROM tallies WHERE reason > '' AND hour >= ?1 GROUP BY 1, 2",
                params![since],
            )?;
            let reasons = reasons
                .into_iter()
                .filter_map(|(reason, verdict, n)| Some((ReasonCode::from_name(&reason)?, verdict, n)))
                .collect();
            let counts = Counts { series, countries, reasons };
            Ok(counts)
        })
    }

    fn summaries(&self, kind: SubjectKind, flagged: bool, limit: u32) -> HistoryFuture<'_, Vec<Summary>> {
        self.counted_then(move |connection| {
            let order = if flagged { STRONGEST_FIRST_SQL } else { "last_ms DESC" };
            let filter = if flagged { FLAGGED_SQL } else { "1" };
            let sql = match kind {
                SubjectKind::Account => format!(
                    "SELECT * FROM subjects WHERE kind = '{ACCOUNT}' AND {filter} ORDER BY {order} LIMIT ?1"
                ),
                SubjectKind::Organization => format!(
                    "SELECT * FROM (SELECT s.*, COALESCE(m.accounts, 0) AS member_accounts,
                        COALESCE(m.restricted, 0) AS member_restricted
                     FROM subjects s LEFT JOIN (
                        SELECT organization, SUM(accepted > 0) AS accounts,
                            SUM(accepted > 0 AND restricted * 2 > accepted) AS restricted
                        FROM subjects WHERE kind = '{MEMBER}' GROUP BY organization
                     ) m ON m.organization = s.subject
                     WHERE s.kind = '{ORGANIZATION}')
                     WHERE {filter} OR member_restricted > 0 ORDER BY member_restricted DESC, {order} LIMIT ?1"
                ),
            };
            let mut query = connection.prepare_cached(&sql).map_err(unavailable)?;
            let with_share = kind == SubjectKind::Organization;
            let rows = query
                .query_map(params![limit], |row| summary_from_row(row, with_share))
                .map_err(unavailable)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(unavailable)
        })
    }

    fn latest(&self, limit: u32) -> HistoryFuture<'_, Vec<Event>> {
        self.read(move |connection| {
            let mut query = connection
                .prepare_cached("SELECT * FROM events ORDER BY id DESC LIMIT ?1")
                .map_err(unavailable)?;
            let rows = query.query_map(params![limit], event_from_row).map_err(unavailable)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(unavailable)
        })
    }

    fn kind(&self) -> &'static str {
        "sqlite"
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail by panicking")]
mod tests {
    use super::*;

    /// What SQLite's planner does with `sql`, one line a step.
    fn plan(sql: &str, params: impl rusqlite::Params) -> Vec<String> {
        let mut connection = Connection::open_in_memory().unwrap();
        migrate(&mut connection).unwrap();
        let mut query = connection.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        query.query_map(params, |row| row.get::<_, String>(3)).unwrap().collect::<Result<_, _>>().unwrap()
    }

    #[test]
    fn reads_by_account_or_organisation_skip_refused_attempts_in_the_index() {
        let range = |index: &str, column: &str| {
            format!("SEARCH events USING INDEX {index} ({column}=? AND <expr>=? AND at_ms>?)")
        };
        // The signals' read and the organisation's share: one range each.
        assert_eq!(plan(SIGHTINGS_SQL, params!["acct", 0, 32]), [range("events_account_outcome", "account")]);
        let share = plan(ORGANIZATION_SHARE_SQL, params!["org", 0]);
        assert!(share.contains(&range("events_organization_outcome", "organization")), "{share:?}");
        // A report's newest first: a range of each kind, never all of them.
        for column in ["account", "organization"] {
            let steps = plan(&newest_first(column), params!["x", 0, 100]);
            let searches: Vec<&String> = steps.iter().filter(|s| s.starts_with("SEARCH")).collect();
            let expected = range(&format!("events_{column}_outcome"), column);
            assert!(searches.len() == 2 && searches.iter().all(|s| **s == expected), "{steps:?}");
        }
    }

    #[tokio::test]
    async fn a_database_from_before_the_running_counts_is_counted_when_upgraded() {
        let dir = std::env::temp_dir().join(format!("meridian-upgrade-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("history.sqlite");
        let _ = std::fs::remove_file(&path);
        {
            // A version-2 database with two events in it.
            let connection = Connection::open(&path).unwrap();
            for sql in &MIGRATIONS[..2] {
                connection.execute_batch(sql).unwrap();
            }
            connection.pragma_update(None, "user_version", 2).unwrap();
            for (at, verdict, reasons) in
                [(HOUR_MS * 5, "deny", "restricted_region_claim"), (HOUR_MS * 5 + 1, "allow", "")]
            {
                connection
                    .execute(
                        "INSERT INTO events (at_ms, account, network, country, restricted_device, verdict, score,
                            reasons) VALUES (?1, 'acct', '192.0.2.0/24', 'SG', 0, ?2, 0, ?3)",
                        params![at, verdict, reasons],
                    )
                    .unwrap();
            }
        }
        let store = SqliteHistory::open(&path).unwrap();
        let counts = store.counts(0, HOUR_MS).await.unwrap();
        let mut series = counts.series.clone();
        series.sort_by_key(|(_, verdict, _)| verdict.as_str());
        assert_eq!(series, vec![(HOUR_MS * 5, Verdict::Allow, 1), (HOUR_MS * 5, Verdict::Deny, 1)]);
        assert_eq!(counts.reasons, vec![(ReasonCode::RestrictedRegionClaim, Verdict::Deny, 1)]);
        let accounts = store.summaries(SubjectKind::Account, false, 10).await.unwrap();
        assert_eq!((accounts.len(), accounts[0].evidence.logins, accounts[0].evidence.held), (1, 2, 1));
        drop(store);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn reads_need_no_thread_of_the_blocking_pool() {
        // A runtime whose one blocking thread is taken: a read that waited
        // for the pool (as reads once did, a thread each) would never end.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .max_blocking_threads(1)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let (release, held) = std::sync::mpsc::channel::<()>();
            let occupied = tokio::task::spawn_blocking(move || held.recv());
            let store = SqliteHistory::in_memory().unwrap();
            let count = |connection: &mut Connection| {
                connection
                    .query_row("SELECT count(*) FROM events", [], |row| row.get::<_, i64>(0))
                    .map_err(unavailable)
            };
            let reads: Vec<_> = (0..64).map(|_| tokio::spawn(store.read(count))).collect();
            let all = async {
                for read in reads {
                    assert_eq!(read.await.unwrap().unwrap(), 0);
                }
            };
            tokio::time::timeout(std::time::Duration::from_secs(10), all)
                .await
                .expect("reads finish with the blocking pool taken");
            release.send(()).unwrap();
            occupied.await.unwrap().unwrap();
        });
    }

    #[tokio::test]
    async fn a_read_nobody_waits_for_any_more_is_skipped() {
        let store = SqliteHistory::in_memory().unwrap();
        // The reader thread is busy until released.
        let (release, held) = std::sync::mpsc::channel::<()>();
        let busy = store.read(move |_| held.recv().map_err(unavailable));
        let ran = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = ran.clone();
        // A read whose caller gives up while it waits its turn.
        drop(store.read(move |_| {
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
            Ok(())
        }));
        release.send(()).unwrap();
        busy.await.unwrap();
        // The thread takes jobs in order: once this one is answered, the
        // abandoned one has had its turn.
        store.read(|_| Ok(())).await.unwrap();
        assert!(!ran.load(std::sync::atomic::Ordering::SeqCst));
    }
}

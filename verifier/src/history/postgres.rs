//! The shared history: PostgreSQL, for several instances that should see
//! each other's verifications. Two connections, each pipelined: one for
//! writes (the batches, erasures, the purge) and one for everything read, so
//! a verification's read never waits behind a batch being written. Each is
//! made again when the server went away (at most once a second while it
//! stays away); no
//! statement runs on in the server past the time Meridian waits for it
//! (`statement_timeout`); migrations under an advisory lock, so instances
//! starting together migrate once.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio_postgres::{Client, NoTls, Row};

use super::report::{
    FLAGGED_SQL, REGION_COLUMNS_FROM, REGION_EVIDENCE, STRONGEST_FIRST_SQL, SUMMARY_COLUMNS, Summary,
};
use super::{
    Counts, ERASURE_MARGIN_MS, Event, HistoryError, HistoryFuture, HistoryStore, JournalMark,
    OrganizationShare, OtherSignIn, OthersSince, Sighting, Subject, SubjectKind, now_ms,
};
use crate::ErrorCode;
use crate::geo::Country;
use crate::verdict::{ReasonCode, Verdict};

/// The schema, one entry per version (see the SQLite store's); recorded in
/// `meridian_schema`.
const MIGRATIONS: &[&str] = &[
    // 1: events, looked up by account, by organisation and by age.
    "CREATE TABLE events (
        id BIGSERIAL PRIMARY KEY,
        at_ms BIGINT NOT NULL,
        account TEXT,
        organization TEXT,
        network TEXT NOT NULL,
        country TEXT,
        asn BIGINT,
        zone TEXT,
        locale TEXT,
        restricted_device BOOLEAN NOT NULL,
        verdict TEXT NOT NULL,
        score SMALLINT NOT NULL,
        reasons TEXT NOT NULL,
        error TEXT
    );
    CREATE INDEX events_account ON events (account, at_ms) WHERE account IS NOT NULL;
    CREATE INDEX events_organization ON events (organization, at_ms) WHERE organization IS NOT NULL;
    CREATE INDEX events_at ON events (at_ms);",
    // 2: how far each writer's journal is committed.
    "CREATE TABLE journal_marks (
        origin TEXT PRIMARY KEY,
        through BIGINT NOT NULL,
        at_ms BIGINT NOT NULL
    );",
    // 3: which process wrote each event, so each instance can follow the
    // others' (NULL for events written before).
    "ALTER TABLE events ADD COLUMN writer BIGINT",
    // 4: erasures, kept for the retention window: an event answered
    // before an account's erasure but committed after it (by another
    // instance, or from a journal) is not written, and the other instances
    // forget what they remember of the account.
    "CREATE TABLE erasures (
        id BIGSERIAL PRIMARY KEY,
        account TEXT NOT NULL,
        at_ms BIGINT NOT NULL,
        noted_ms BIGINT NOT NULL,
        writer BIGINT
    );
    CREATE INDEX erasures_account ON erasures (account);
    CREATE INDEX erasures_noted ON erasures (noted_ms);",
    // 5: an account's and an organisation's events by whether their token
    // was accepted, then by time (see the SQLite store's 4). Writes to
    // `events` wait while they are built; their journals keep them meanwhile.
    "CREATE INDEX events_account_outcome ON events (account, (error IS NULL), at_ms) WHERE account IS NOT NULL;
    DROP INDEX events_account;
    CREATE INDEX events_organization_outcome ON events (organization, (error IS NULL), at_ms)
        WHERE organization IS NOT NULL;
    DROP INDEX events_organization",
];

/// The events of one account (`$1`) or organisation since `$2`, newest
/// first: the newest `$3` accepted and the newest `$3` refused, each read in
/// order from its own range of the `…_outcome` index (see the SQLite
/// store's).
/// (PostgreSQL matches `error IS NULL` to the index's column as true, and
/// `(error IS NULL) IS FALSE` as false; `error IS NOT NULL` it would not.)
fn newest_first(column: &str) -> String {
    let part = |accepted: &str| {
        format!(
            "SELECT * FROM (SELECT * FROM events WHERE {column} = $1 AND {accepted} AND at_ms >= $2
                ORDER BY at_ms DESC, id DESC LIMIT $3) AS part"
        )
    };
    format!(
        "{} UNION ALL {} ORDER BY at_ms DESC, id DESC",
        part("error IS NULL"),
        part("(error IS NULL) IS FALSE")
    )
}

/// How long after it is noted the feed still looks for an erasure below the
/// newest it has seen (one whose commit showed after a later one's).
const ERASURE_FEED_WINDOW_MS: i64 = 10_000;

/// An arbitrary constant naming Meridian's migration lock.
const MIGRATION_LOCK: i64 = 0x6d65_7269_6469_616e;

/// Events erased per statement by the retention purge, at most: each
/// statement stays well within the store's timeout however much is due.
const PURGE_BATCH: i64 = 10_000;

/// After a failed connection, how long queries fail at once with its error
/// instead of each trying to connect again.
const RECONNECT_PAUSE: Duration = Duration::from_secs(1);

/// The connection, and the last failure to make one.
#[derive(Default)]
struct Slot {
    client: Option<Arc<Client>>,
    failed: Option<(tokio::time::Instant, String)>,
}

/// The PostgreSQL history.
#[derive(Clone)]
pub struct PostgresHistory {
    /// Parsed from `database_url`, with `statement_timeout` added.
    config: Arc<tokio_postgres::Config>,
    /// The connection everything read goes through.
    reads: Arc<Mutex<Slot>>,
    /// The connection the writes go through.
    writes: Arc<Mutex<Slot>>,
    timeout: Duration,
    /// This process's writer id, random: its events carry it, and it
    /// follows the events of every other.
    writer: i64,
}

impl std::fmt::Debug for PostgresHistory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password.
        f.debug_struct("PostgresHistory").field("timeout", &self.timeout).finish_non_exhaustive()
    }
}

fn unavailable(e: impl std::fmt::Display) -> HistoryError {
    HistoryError::Unavailable(e.to_string())
}

/// A driver error with the server's own message, when it sent one. Data
/// exceptions (SQLSTATE class 22), constraint violations (23) and limits
/// exceeded (54) come from what the statement carried, not from the
/// server's state: the same statement would fail again.
fn query_failed(e: &tokio_postgres::Error) -> HistoryError {
    match e.as_db_error() {
        Some(db) => {
            let code = db.code().code();
            let why = format!("PostgreSQL {code}: {}", db.message());
            if ["22", "23", "54"].iter().any(|class| code.starts_with(class)) {
                HistoryError::Unstorable(why)
            } else {
                HistoryError::Unavailable(why)
            }
        }
        None => unavailable(e),
    }
}

impl PostgresHistory {
    /// Connects to `url` (`postgres://user:password@host:port/db`), brings
    /// the schema up to date, and gives every later query `timeout`.
    ///
    /// # Errors
    /// When the URL does not parse, the server cannot be reached or the
    /// schema cannot be migrated.
    pub async fn connect(url: &str, timeout: Duration) -> Result<Self, HistoryError> {
        let mut config = url
            .parse::<tokio_postgres::Config>()
            .map_err(|e| HistoryError::Config(format!("database_url: {e}")))?;
        // A statement Meridian stopped waiting for is stopped in the server
        // too, instead of running on while the next ones queue behind it.
        let limit = format!("-c statement_timeout={}", timeout.as_millis());
        let options = config.get_options().map_or(limit.clone(), |given| format!("{given} {limit}"));
        config.options(options);
        let mut writer = [0u8; 8];
        crate::random_bytes(&mut writer)
            .map_err(|e| HistoryError::Config(format!("no secure randomness: {e}")))?;
        let writer = i64::from_le_bytes(writer);
        let history =
            Self { config: Arc::new(config), reads: Arc::default(), writes: Arc::default(), timeout, writer };
        let client = history.client(&history.reads).await?;
        check_encoding(&client).await?;
        migrate(&client).await?;
        Ok(history)
    }

    /// The connection in `slot`, made when there is none or it has closed
    /// (within a second of a failed attempt, that attempt's error instead).
    async fn client(&self, slot: &Mutex<Slot>) -> Result<Arc<Client>, HistoryError> {
        let mut slot = slot.lock().await;
        if let Some(client) = slot.client.as_ref().filter(|c| !c.is_closed()) {
            return Ok(client.clone());
        }
        if let Some((at, error)) = &slot.failed
            && at.elapsed() < RECONNECT_PAUSE
        {
            return Err(unavailable(error));
        }
        let connected = match tokio::time::timeout(self.timeout, self.config.connect(NoTls)).await {
            Ok(Ok(connected)) => connected,
            failed => {
                let error = match failed {
                    Ok(Err(error)) => error.to_string(),
                    _ => "connecting to PostgreSQL timed out".to_owned(),
                };
                slot.failed = Some((tokio::time::Instant::now(), error.clone()));
                return Err(unavailable(error));
            }
        };
        let (client, connection) = connected;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::warn!(%error, "history: PostgreSQL connection closed");
            }
        });
        let client = Arc::new(client);
        *slot = Slot { client: Some(client.clone()), failed: None };
        Ok(client)
    }

    /// Runs `work` with the connection in `slot` (`reads` or `writes`),
    /// within the timeout.
    fn with<'a, T: Send + 'a, F>(
        &'a self,
        slot: &'a Mutex<Slot>,
        work: impl FnOnce(Arc<Client>) -> F + Send + 'a,
    ) -> HistoryFuture<'a, T>
    where
        F: std::future::Future<Output = Result<T, tokio_postgres::Error>> + Send + 'a,
    {
        Box::pin(async move {
            let client = self.client(slot).await?;
            tokio::time::timeout(self.timeout, work(client))
                .await
                .map_err(|_| unavailable("PostgreSQL did not answer in time"))?
                .map_err(|e| query_failed(&e))
        })
    }
}

/// Refuses a database that cannot hold every character: account ids,
/// zones and locales are Unicode, and a page's script picks the last two.
/// In a `LATIN1` database one zone written in Chinese would be refused, and
/// every sign-in of an account named in Japanese.
async fn check_encoding(client: &Client) -> Result<(), HistoryError> {
    let encoding: String =
        client.query_one("SELECT current_setting('server_encoding')", &[]).await.map_err(unavailable)?.get(0);
    // `SQL_ASCII` stores the bytes it is sent, unchecked.
    if encoding == "UTF8" || encoding == "SQL_ASCII" {
        return Ok(());
    }
    Err(HistoryError::Config(format!(
        "database_url: the history database's encoding is {encoding}, which cannot hold every account id, zone and \
         locale; create it with ENCODING 'UTF8' (CREATE DATABASE … ENCODING 'UTF8' TEMPLATE template0)"
    )))
}

/// Brings the schema to the newest version, one instance at a time.
async fn migrate(client: &Client) -> Result<(), HistoryError> {
    // Waiting for another instance's migration, or building an index on a
    // large table, may take longer than any query should.
    client.batch_execute("SET statement_timeout = 0").await.map_err(unavailable)?;
    client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK]).await.map_err(unavailable)?;
    let result = async {
        client
            .batch_execute("CREATE TABLE IF NOT EXISTS meridian_schema (version INTEGER NOT NULL)")
            .await
            .map_err(unavailable)?;
        let version: i32 = client
            .query_opt("SELECT version FROM meridian_schema", &[])
            .await
            .map_err(unavailable)?
            .map_or(0, |row| row.get(0));
        let version = usize::try_from(version).unwrap_or(0);
        if version > MIGRATIONS.len() {
            return Err(HistoryError::Config(format!(
                "the history database is at schema version {version}, newer than this Meridian knows ({}); upgrade Meridian",
                MIGRATIONS.len()
            )));
        }
        for (index, sql) in MIGRATIONS.iter().enumerate().skip(version) {
            let next = i32::try_from(index + 1).unwrap_or(i32::MAX);
            let update = format!(
                "BEGIN; {sql}; DELETE FROM meridian_schema; INSERT INTO meridian_schema VALUES ({next}); COMMIT;"
            );
            client.batch_execute(&update).await.map_err(unavailable)?;
        }
        Ok(())
    }
    .await;
    let unlocked = client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]).await;
    // Back to the connection's own limit.
    let reset = client.batch_execute("RESET statement_timeout").await;
    result?;
    unlocked.map(drop).map_err(unavailable)?;
    reset.map_err(unavailable)
}

fn event_from_row(row: &Row) -> Result<Event, tokio_postgres::Error> {
    let reasons: String = row.try_get("reasons")?;
    let verdict: String = row.try_get("verdict")?;
    let score: i16 = row.try_get("score")?;
    let asn: Option<i64> = row.try_get("asn")?;
    Ok(Event {
        at_ms: row.try_get("at_ms")?,
        account: row.try_get::<_, Option<String>>("account")?.map(Subject::from_stored),
        organization: row.try_get::<_, Option<String>>("organization")?.map(Subject::from_stored),
        network: row.try_get("network")?,
        country: row.try_get::<_, Option<String>>("country")?.as_deref().and_then(Country::parse),
        asn: asn.and_then(|asn| u32::try_from(asn).ok()),
        zone: row.try_get("zone")?,
        locale: row.try_get("locale")?,
        restricted_device: row.try_get("restricted_device")?,
        verdict: Verdict::from_name(&verdict).unwrap_or(Verdict::Deny),
        score: u8::try_from(score).unwrap_or(100),
        reasons: reasons.split(',').filter_map(ReasonCode::from_name).collect(),
        error: row.try_get::<_, Option<String>>("error")?.as_deref().and_then(ErrorCode::from_name),
    })
}

/// A sighting from the first seven columns of `row` (as
/// [`HistoryStore::sightings`] selects them).
fn sighting_from_row(row: &Row) -> Result<Sighting, tokio_postgres::Error> {
    Ok(Sighting {
        at_ms: row.try_get(0)?,
        accepted: row.try_get(1)?,
        network: row.try_get(2)?,
        country: row.try_get::<_, Option<String>>(3)?.as_deref().and_then(Country::parse),
        zone: row.try_get(4)?,
        locale: row.try_get(5)?,
        restricted_device: row.try_get(6)?,
    })
}

fn events(rows: &[Row]) -> Result<Vec<Event>, tokio_postgres::Error> {
    rows.iter().map(event_from_row).collect()
}

/// The counts a summary is judged on, summed over `events` grouped by
/// `column` (`account` or `organization`). PostgreSQL sums the events
/// themselves: it does in parallel what SQLite's running counts save.
fn summary_sql(column: &str) -> String {
    let region: String = REGION_EVIDENCE
        .iter()
        .enumerate()
        .map(|(i, code)| {
            format!(
                ", COUNT(*) FILTER (WHERE position(',{},' IN ',' || reasons || ',') > 0) AS {}",
                code.as_str(),
                SUMMARY_COLUMNS[i + REGION_COLUMNS_FROM]
            )
        })
        .collect();
    format!(
        "SELECT {column} AS subject,
            (array_agg(organization ORDER BY at_ms DESC) FILTER (WHERE organization IS NOT NULL))[1] AS organization,
            COUNT(*) AS logins, COUNT(*) FILTER (WHERE error IS NULL) AS accepted,
            COUNT(*) FILTER (WHERE restricted_device) AS restricted,
            COUNT(*) FILTER (WHERE verdict IN ('deny', 'review')) AS held{region}, MAX(at_ms) AS last_ms
         FROM events WHERE {column} IS NOT NULL GROUP BY {column}"
    )
}

fn summary_from_row(row: &Row, with_share: bool) -> Result<Summary, tokio_postgres::Error> {
    Summary::from_row(
        row.try_get("subject")?,
        row.try_get("organization")?,
        row.try_get("last_ms")?,
        with_share,
        |name| row.try_get(name),
    )
}

impl HistoryStore for PostgresHistory {
    fn record(&self, batch: Vec<Event>, mark: Option<JournalMark>) -> HistoryFuture<'_, ()> {
        self.with(&self.writes, move |client| async move {
            // One statement for the whole batch: a column per array.
            let at: Vec<i64> = batch.iter().map(|e| e.at_ms).collect();
            let account: Vec<Option<&str>> =
                batch.iter().map(|e| e.account.as_ref().map(Subject::as_str)).collect();
            let organization: Vec<Option<&str>> =
                batch.iter().map(|e| e.organization.as_ref().map(Subject::as_str)).collect();
            let network: Vec<&str> = batch.iter().map(|e| e.network.as_str()).collect();
            let country: Vec<Option<&str>> =
                batch.iter().map(|e| e.country.as_ref().map(Country::as_str)).collect();
            let asn: Vec<Option<i64>> = batch.iter().map(|e| e.asn.map(i64::from)).collect();
            let zone: Vec<Option<&str>> = batch.iter().map(|e| e.zone.as_deref()).collect();
            let locale: Vec<Option<&str>> = batch.iter().map(|e| e.locale.as_deref()).collect();
            let restricted: Vec<bool> = batch.iter().map(|e| e.restricted_device).collect();
            let verdict: Vec<&str> = batch.iter().map(|e| e.verdict.as_str()).collect();
            let score: Vec<i16> = batch.iter().map(|e| i16::from(e.score)).collect();
            let reasons: Vec<String> = batch
                .iter()
                .map(|e| e.reasons.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(","))
                .collect();
            let error: Vec<Option<&str>> = batch.iter().map(|e| e.error.map(ErrorCode::as_str)).collect();
            let origin = mark.as_ref().map(|m| m.origin.as_str());
            let through = mark.as_ref().map(|m| i64::try_from(m.through).unwrap_or(i64::MAX));
            let now = now_ms();
            // One statement, so one transaction: the events and the mark.
            client
                .execute(
                    "WITH inserted AS (
                        INSERT INTO events (at_ms, account, organization, network, country, asn, zone, locale,
                            restricted_device, verdict, score, reasons, error, writer)
                        SELECT batch.*, $17::BIGINT FROM UNNEST($1::BIGINT[], $2::TEXT[], $3::TEXT[], $4::TEXT[],
                            $5::TEXT[], $6::BIGINT[], $7::TEXT[], $8::TEXT[], $9::BOOLEAN[], $10::TEXT[],
                            $11::SMALLINT[], $12::TEXT[], $13::TEXT[]) AS batch (at_ms, account, organization,
                            network, country, asn, zone, locale, restricted_device, verdict, score, reasons, error)
                        -- Nothing an erasure covers: answered before it, written after.
                        WHERE batch.account IS NULL OR NOT EXISTS (SELECT 1 FROM erasures
                            WHERE erasures.account = batch.account AND erasures.at_ms >= batch.at_ms)
                        RETURNING 1)
                     INSERT INTO journal_marks (origin, through, at_ms)
                     SELECT $14::TEXT, $15::BIGINT, $16::BIGINT WHERE $14::TEXT IS NOT NULL
                     ON CONFLICT (origin) DO UPDATE SET through = EXCLUDED.through, at_ms = EXCLUDED.at_ms",
                    &[
                        &at,
                        &account,
                        &organization,
                        &network,
                        &country,
                        &asn,
                        &zone,
                        &locale,
                        &restricted,
                        &verdict,
                        &score,
                        &reasons,
                        &error,
                        &origin,
                        &through,
                        &now,
                        &self.writer,
                    ],
                )
                .await
                .map(drop)
        })
    }

    fn journal_mark(&self, origin: &str) -> HistoryFuture<'_, Option<u64>> {
        let origin = origin.to_owned();
        self.with(&self.reads, move |client| async move {
            let row =
                client.query_opt("SELECT through FROM journal_marks WHERE origin = $1", &[&origin]).await?;
            Ok(row.map(|row| u64::try_from(row.get::<_, i64>(0)).unwrap_or(0)))
        })
    }

    fn shared(&self) -> bool {
        true
    }

    fn recent(&self, account: &Subject, since_ms: i64, limit: u32) -> HistoryFuture<'_, Vec<Event>> {
        let account = account.clone();
        self.with(&self.reads, move |client| async move {
            let rows = client
                .query(&newest_first("account"), &[&account.as_str(), &since_ms, &i64::from(limit)])
                .await?;
            events(&rows)
        })
    }

    fn others_since(
        &self,
        after: Option<i64>,
        taken: &[(i64, i64)],
        erasures_after: Option<i64>,
        limit: u32,
    ) -> HistoryFuture<'_, OthersSince> {
        let writer = self.writer;
        let (writers, positions): (Vec<i64>, Vec<i64>) = taken.iter().copied().unzip();
        self.with(&self.reads, move |client| async move {
            let newest = client
                .query_one(
                    "SELECT (SELECT COALESCE(MAX(id), 0) FROM events), (SELECT COALESCE(MAX(id), 0) FROM erasures)",
                    &[],
                )
                .await?;
            let (newest, erasures_newest): (i64, i64) = (newest.try_get(0)?, newest.try_get(1)?);
            // Past the last one seen, and (for one that committed after a
            // later id was seen) whatever was noted in the last seconds.
            let erased = client
                .query(
                    "SELECT id, account, at_ms FROM erasures WHERE (id > $1 OR noted_ms >= $2)
                        AND writer IS DISTINCT FROM $3 ORDER BY id",
                    &[
                        &erasures_after.unwrap_or(i64::MAX),
                        &now_ms().saturating_sub(ERASURE_FEED_WINDOW_MS),
                        &writer,
                    ],
                )
                .await?
                .iter()
                .map(|row| Ok((row.try_get(0)?, Subject::from_stored(row.try_get(1)?), row.try_get(2)?)))
                .collect::<Result<_, tokio_postgres::Error>>()?;
            let Some(after) = after else {
                return Ok(OthersSince { newest, erasures_newest, erased, sign_ins: Vec::new() });
            };
            let rows = client
                .query(
                    "SELECT at_ms, error IS NULL, network, country, zone, locale, restricted_device, id, account,
                        events.writer
                     FROM events LEFT JOIN UNNEST($4::BIGINT[], $5::BIGINT[]) AS taken (writer, position)
                        ON taken.writer = events.writer
                     WHERE id > $1 AND id <= $2 AND account IS NOT NULL AND error IS NULL
                        AND events.writer IS DISTINCT FROM $3
                        AND id > COALESCE(taken.position, 0)
                     ORDER BY id LIMIT $6",
                    &[&after, &newest, &writer, &writers, &positions, &i64::from(limit)],
                )
                .await?;
            let sign_ins = rows
                .iter()
                .map(|row| {
                    Ok(OtherSignIn {
                        position: row.try_get(7)?,
                        account: Subject::from_stored(row.try_get(8)?),
                        writer: row.try_get(9)?,
                        sighting: sighting_from_row(row)?,
                    })
                })
                .collect::<Result<_, tokio_postgres::Error>>()?;
            Ok(OthersSince { newest, sign_ins, erased, erasures_newest })
        })
    }

    fn sightings(&self, account: &Subject, since_ms: i64, limit: u32) -> HistoryFuture<'_, Vec<Sighting>> {
        let account = account.clone();
        self.with(&self.reads, move |client| async move {
            let rows = client
                .query(
                    "SELECT at_ms, error IS NULL, network, country, zone, locale, restricted_device FROM events
                     WHERE account = $1 AND error IS NULL AND at_ms >= $2 ORDER BY at_ms DESC, id DESC LIMIT $3",
                    &[&account.as_str(), &since_ms, &i64::from(limit)],
                )
                .await?;
            rows.iter().map(sighting_from_row).collect()
        })
    }

    fn organization(&self, organization: &Subject, since_ms: i64) -> HistoryFuture<'_, OrganizationShare> {
        let organization = organization.clone();
        self.with(&self.reads, move |client| async move {
            let row = client
                .query_one(
                    "SELECT COUNT(*), COUNT(*) FILTER (WHERE restricted * 2 > total), COALESCE(SUM(total), 0)::BIGINT FROM (
                        SELECT SUM(restricted_device::INT) AS restricted, COUNT(*) AS total FROM events
                        WHERE organization = $1 AND at_ms >= $2 AND account IS NOT NULL AND error IS NULL
                        GROUP BY account) AS accounts",
                    &[&organization.as_str(), &since_ms],
                )
                .await?;
            let count = |index: usize| row.get::<_, i64>(index).try_into().unwrap_or(u32::MAX);
            Ok(OrganizationShare { accounts: count(0), restricted_accounts: count(1), sign_ins: count(2) })
        })
    }

    fn organization_recent(
        &self,
        organization: &Subject,
        since_ms: i64,
        limit: u32,
    ) -> HistoryFuture<'_, Vec<Event>> {
        let organization = organization.clone();
        self.with(&self.reads, move |client| async move {
            let rows = client
                .query(&newest_first("organization"), &[&organization.as_str(), &since_ms, &i64::from(limit)])
                .await?;
            events(&rows)
        })
    }

    fn scan(&self, after: i64, since_ms: i64, limit: u32) -> HistoryFuture<'_, Vec<(i64, Event)>> {
        self.with(&self.reads, move |client| async move {
            let rows = client
                .query(
                    "SELECT * FROM events WHERE id > $1 AND at_ms >= $2 ORDER BY id LIMIT $3",
                    &[&after, &since_ms, &i64::from(limit)],
                )
                .await?;
            rows.iter().map(|row| Ok((row.try_get("id")?, event_from_row(row)?))).collect()
        })
    }

    fn erase_account(&self, account: &Subject) -> HistoryFuture<'_, u64> {
        let account = account.clone();
        let writer = self.writer;
        self.with(&self.writes, move |client| async move {
            // One statement, so one transaction: the events go, and the
            // erasure is noted for the other instances and for events
            // answered before it that are still to be written.
            let now = now_ms();
            let row = client
                .query_one(
                    "WITH gone AS (DELETE FROM events WHERE account = $1 RETURNING 1),
                     noted AS (INSERT INTO erasures (account, at_ms, noted_ms, writer)
                        VALUES ($1, $2, $3, $4) RETURNING 1)
                     SELECT COUNT(*) FROM gone, (SELECT COUNT(*) FROM noted) AS n",
                    &[&account.as_str(), &now.saturating_add(ERASURE_MARGIN_MS), &now, &writer],
                )
                .await?;
            Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0))
        })
    }

    fn forget_erased(&self, account: &Subject, at_ms: i64) -> HistoryFuture<'_, u64> {
        let account = account.clone();
        let writer = self.writer;
        self.with(&self.writes, move |client| async move {
            client
                .execute(
                    "DELETE FROM events WHERE account = $1 AND at_ms <= $2 AND writer = $3",
                    &[&account.as_str(), &at_ms, &writer],
                )
                .await
        })
    }

    fn purge(&self, before_ms: i64) -> HistoryFuture<'_, u64> {
        Box::pin(async move {
            // In batches: a first purge (or one after a long outage) may be
            // due millions of events, more than one statement can erase
            // within the timeout.
            let mut purged = 0;
            loop {
                let erased = self
                    .with(&self.writes, move |client| async move {
                        client
                            .execute(
                                "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE at_ms < $1 LIMIT $2)",
                                &[&before_ms, &PURGE_BATCH],
                            )
                            .await
                    })
                    .await?;
                purged += erased;
                if erased < PURGE_BATCH.unsigned_abs() {
                    break;
                }
            }
            self.with(&self.writes, move |client| async move {
                client.execute("DELETE FROM journal_marks WHERE at_ms < $1", &[&before_ms]).await?;
                client.execute("DELETE FROM erasures WHERE noted_ms < $1", &[&before_ms]).await
            })
            .await?;
            Ok(purged)
        })
    }

    fn counts(&self, since_ms: i64, bucket_ms: i64) -> HistoryFuture<'_, Counts> {
        let since = since_ms.div_euclid(super::rollup::HOUR_MS) * super::rollup::HOUR_MS;
        let bucket = (bucket_ms / super::rollup::HOUR_MS).max(1) * super::rollup::HOUR_MS;
        self.with(&self.reads, move |client| async move {
            let verdict = |row: &Row| {
                Verdict::from_name(&row.get::<_, String>(1)).unwrap_or(Verdict::Deny)
            };
            let total = |row: &Row| u64::try_from(row.get::<_, i64>(2)).unwrap_or(0);
            let series = client
                .query(
                    "SELECT (at_ms / $2) * $2, verdict, COUNT(*) FROM events WHERE at_ms >= $1 GROUP BY 1, 2",
                    &[&since, &bucket],
                )
                .await?;
            let countries = client
                .query(
                    "SELECT COALESCE(country, '??'), verdict, COUNT(*) FROM events WHERE at_ms >= $1 GROUP BY 1, 2",
                    &[&since],
                )
                .await?;
            let reasons = client
                .query(
                    "SELECT reason, verdict, COUNT(*) FROM events,
                        unnest(string_to_array(NULLIF(reasons, ''), ',')) AS reason
                     WHERE at_ms >= $1 GROUP BY 1, 2",
                    &[&since],
                )
                .await?;
            Ok(Counts {
                series: series.iter().map(|row| (row.get(0), verdict(row), total(row))).collect(),
                countries: countries.iter().map(|row| (row.get(0), verdict(row), total(row))).collect(),
                reasons: reasons
                    .iter()
                    .filter_map(|row| {
                        Some((ReasonCode::from_name(&row.get::<_, String>(0))?, verdict(row), total(row)))
                    })
                    .collect(),
            })
        })
    }

    fn summaries(&self, kind: SubjectKind, flagged: bool, limit: u32) -> HistoryFuture<'_, Vec<Summary>> {
        let order = if flagged { STRONGEST_FIRST_SQL } else { "last_ms DESC" };
        let filter = if flagged { FLAGGED_SQL } else { "TRUE" };
        let sql = match kind {
            SubjectKind::Account => {
                format!("SELECT * FROM ({}) s WHERE {filter} ORDER BY {order} LIMIT $1", summary_sql("account"))
            }
            SubjectKind::Organization => format!(
                "SELECT s.*, COALESCE(m.n_accounts, 0) AS member_accounts, COALESCE(m.n_restricted, 0) AS member_restricted
                 FROM ({}) s LEFT JOIN (
                    SELECT organization, COUNT(*) AS n_accounts, COUNT(*) FILTER (WHERE r * 2 > a) AS n_restricted FROM (
                        SELECT organization, account, COUNT(*) FILTER (WHERE restricted_device) AS r, COUNT(*) AS a
                        FROM events WHERE organization IS NOT NULL AND account IS NOT NULL AND error IS NULL
                        GROUP BY 1, 2) x GROUP BY organization
                 ) m ON m.organization = s.subject
                 WHERE {filter} OR COALESCE(m.n_restricted, 0) > 0
                 ORDER BY COALESCE(m.n_restricted, 0) DESC, {order} LIMIT $1",
                summary_sql("organization")
            ),
        };
        let with_share = kind == SubjectKind::Organization;
        self.with(&self.reads, move |client| async move {
            let rows = client.query(&sql, &[&i64::from(limit)]).await?;
            rows.iter().map(|row| summary_from_row(row, with_share)).collect()
        })
    }

    fn latest(&self, limit: u32) -> HistoryFuture<'_, Vec<Event>> {
        self.with(&self.reads, move |client| async move {
            let rows =
                client.query("SELECT * FROM events ORDER BY id DESC LIMIT $1", &[&i64::from(limit)]).await?;
            events(&rows)
        })
    }

    fn kind(&self) -> &'static str {
        "postgres"
    }
}

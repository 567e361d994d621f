//! The memory of verifications (feature `history`): every answer is
//! recorded, and an account's and an organisation's past become evidence.
//!
//! - **What is kept.** Per verification: the time, the account and
//!   organisation as keyed hashes ([`SubjectKey`], never the ids), the
//!   client network truncated to /24 or /48 with its country and AS, the
//!   device's zone and locale, the verdict, score and reason codes.
//! - **Where.** An embedded SQLite file by default (WAL, created on first
//!   run; [`SqliteHistory`]); PostgreSQL when `database_url` is set, so
//!   several instances share one history ([`PostgresHistory`]).
//! - **When.** Off the verification's hot path: a verification appends its
//!   event to a local journal and is answered; one writer commits whatever
//!   has been journaled since its last commit in one transaction, and a
//!   process that starts writes what a stopped one left ([`Recorder`]).
//!   What the signals read of an account is kept in memory, read from the
//!   database once and updated with each sign-in; with a shared store, the
//!   other instances' sign-ins come in through a feed ([`feed`]).
//! - **What it tells.** [`signals`] turns an account's recent logins and its
//!   organisation's accounts into reasons (`impossible_travel`,
//!   `account_region_history`, `zone_flip`, `organization_region_share`);
//!   a history that cannot answer gives `history_unavailable` instead.

#[cfg(feature = "history")]
mod feed;
#[cfg(feature = "history")]
mod postgres;
#[cfg(feature = "history")]
mod recorder;
pub mod report;
#[cfg(feature = "history")]
mod rollup;
pub mod signals;
#[cfg(feature = "history")]
mod sqlite;

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;

use hmac::{Hmac, Mac as _};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::geo::Country;
use crate::verdict::{ReasonCode, Verdict};

#[cfg(feature = "history")]
pub use postgres::PostgresHistory;
#[cfg(feature = "history")]
pub use recorder::Recorder;

/// The time now, Unix ms.
#[cfg(feature = "history")]
pub(crate) fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}
#[cfg(feature = "history")]
pub use sqlite::SqliteHistory;

/// The longest account or organisation id accepted, in bytes.
pub const MAX_SUBJECT_BYTES: usize = 256;

/// The key that turns account and organisation ids into the hashes the
/// history stores: HMAC-SHA-256. Instances that share a history share it.
#[derive(Clone)]
pub struct SubjectKey([u8; 32]);

impl std::fmt::Debug for SubjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SubjectKey(<redacted>)")
    }
}

impl SubjectKey {
    /// A key from 32 bytes.
    pub fn new(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// A key from its base64url text (32 bytes).
    ///
    /// # Errors
    /// When the text is not 32 bytes of base64url.
    pub fn from_base64url(text: &str) -> Result<Self, HistoryError> {
        meridian_protocol::base64url_decode(text.trim())
            .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
            .map(Self)
            .ok_or_else(|| HistoryError::Config("history_key: not 32 bytes of base64url".into()))
    }

    /// A random key, as base64url text and key.
    ///
    /// # Errors
    /// When the system has no secure randomness.
    pub fn generate() -> Result<(String, Self), HistoryError> {
        let mut bytes = [0u8; 32];
        crate::random_bytes(&mut bytes)
            .map_err(|e| HistoryError::Config(format!("no secure randomness: {e}")))?;
        Ok((meridian_protocol::base64url_encode(&bytes), Self(bytes)))
    }

    /// The stored form of an account id.
    ///
    /// # Errors
    /// When the id is empty, longer than [`MAX_SUBJECT_BYTES`] or holds
    /// control characters.
    pub fn account(&self, id: &str) -> Result<Subject, SubjectError> {
        self.subject(b"account", id)
    }

    /// The stored form of an organisation id.
    ///
    /// # Errors
    /// As [`Self::account`].
    pub fn organization(&self, id: &str) -> Result<Subject, SubjectError> {
        self.subject(b"organization", id)
    }

    fn subject(&self, kind: &[u8], id: &str) -> Result<Subject, SubjectError> {
        check_subject(id)?;
        let mut mac = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        mac.update(kind);
        mac.update(&[0]);
        mac.update(id.as_bytes());
        Ok(Subject(meridian_protocol::base64url_encode(&mac.finalize().into_bytes())))
    }
}

/// Whether the history would keep `id` as an account or organisation id:
/// not empty, at most [`MAX_SUBJECT_BYTES`], no control characters.
///
/// # Errors
/// Why it would not.
pub fn check_subject(id: &str) -> Result<(), SubjectError> {
    if id.is_empty() {
        return Err(SubjectError::Empty);
    }
    if id.len() > MAX_SUBJECT_BYTES {
        return Err(SubjectError::TooLong { len: id.len() });
    }
    if id.chars().any(char::is_control) {
        return Err(SubjectError::ControlCharacter);
    }
    Ok(())
}

/// Why an account or organisation id is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SubjectError {
    /// Empty.
    #[error("is empty")]
    Empty,
    /// Longer than [`MAX_SUBJECT_BYTES`].
    #[error("is {len} bytes, more than the {MAX_SUBJECT_BYTES} allowed")]
    TooLong {
        /// Its length.
        len: usize,
    },
    /// Holds a control character.
    #[error("holds a control character")]
    ControlCharacter,
}

/// An account or organisation as stored: the keyed hash of its id
/// (base64url), from which the id cannot be recovered without the key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Subject(String);

impl Subject {
    /// The stored text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A subject as read back from the store.
    #[cfg(feature = "history")]
    pub(crate) fn from_stored(text: String) -> Self {
        Self(text)
    }
}

/// The network a login came from, as kept: IPv4 truncated to its /24,
/// IPv6 to its /48.
pub fn network_of(ip: IpAddr) -> String {
    match crate::net::canonical_ip(ip) {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            format!("{a}.{b}.{c}.0/24")
        }
        IpAddr::V6(v6) => {
            let masked = u128::from(v6) & (u128::MAX << 80);
            format!("{}/48", std::net::Ipv6Addr::from(masked))
        }
    }
}

/// One verification, as the history keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// When it was verified, Unix ms.
    pub at_ms: i64,
    /// The account, when the backend named one.
    pub account: Option<Subject>,
    /// The organisation, when the backend named one.
    pub organization: Option<Subject>,
    /// The client network ([`network_of`]).
    pub network: String,
    /// The network's country, when known.
    pub country: Option<Country>,
    /// The network's AS, when known.
    pub asn: Option<u32>,
    /// The device's time zone, when the token was accepted.
    pub zone: Option<String>,
    /// The device's locale, when the token was accepted.
    pub locale: Option<String>,
    /// Whether the device's zone points into a restricted region.
    pub restricted_device: bool,
    /// The verdict.
    pub verdict: Verdict,
    /// The score.
    pub score: u8,
    /// The reason codes.
    pub reasons: Vec<ReasonCode>,
    /// The error code when the token was not acceptable.
    pub error: Option<crate::ErrorCode>,
}

/// What the history's signals read of one sign-in: the columns they need
/// and nothing else, so reading an account's recent sign-ins stays cheap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sighting {
    /// When, Unix ms.
    pub at_ms: i64,
    /// Whether the token was accepted (the device's words are then known).
    pub accepted: bool,
    /// The client network ([`network_of`]).
    pub network: String,
    /// The network's country, when known.
    pub country: Option<Country>,
    /// The device's time zone.
    pub zone: Option<String>,
    /// The device's locale.
    pub locale: Option<String>,
    /// Whether the device's zone points into a restricted region.
    pub restricted_device: bool,
}

impl From<&Event> for Sighting {
    fn from(event: &Event) -> Self {
        Self {
            at_ms: event.at_ms,
            accepted: event.error.is_none(),
            network: event.network.clone(),
            country: event.country,
            zone: event.zone.clone(),
            locale: event.locale.clone(),
            restricted_device: event.restricted_device,
        }
    }
}

/// Another process's sign-in, as the feed finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtherSignIn {
    /// Its position in the store (ascending with insertion).
    pub position: i64,
    /// The process that wrote it, when the store knows.
    pub writer: Option<i64>,
    /// Its account.
    pub account: Subject,
    /// What the signals read of it.
    pub sighting: Sighting,
}

/// What [`HistoryStore::others_since`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OthersSince {
    /// The newest position in the store when it looked.
    pub newest: i64,
    /// Other processes' sign-ins, oldest first.
    pub sign_ins: Vec<OtherSignIn>,
    /// Accounts other processes erased after the erasure asked after, or
    /// lately: the erasure's id (the same erasure may be found again by the
    /// next looks), the account, and the time up to which its events are
    /// erased.
    pub erased: Vec<(i64, Subject, i64)>,
    /// The newest erasure's id when it looked.
    pub erasures_newest: i64,
}

/// How far past an erasure (by the erasing instance's clock) an event's
/// time may lie and still be covered by it: the instances' clocks differ
/// by a little, and an erasure errs on the side of erasing.
#[cfg(feature = "history")]
pub(crate) const ERASURE_MARGIN_MS: i64 = 1_000;

/// The longest zone or locale text kept (a browser's own are far shorter;
/// a forger's may be anything).
#[cfg(feature = "history")]
const MAX_CLAIM_TEXT: usize = 64;

/// `text` cut to [`MAX_CLAIM_TEXT`] bytes at a character boundary, each
/// control character replaced by U+FFFD: a forged zone holding NUL would
/// otherwise be refused by PostgreSQL's `TEXT`, and with it the batch it
/// came in, again at every try, stopping the history for everyone.
#[cfg(feature = "history")]
pub(crate) fn clip(text: &str) -> String {
    let mut kept = String::with_capacity(text.len().min(MAX_CLAIM_TEXT));
    for c in text.chars() {
        let c = if c.is_control() { char::REPLACEMENT_CHARACTER } else { c };
        if kept.len() + c.len_utf8() > MAX_CLAIM_TEXT {
            break;
        }
        kept.push(c);
    }
    kept
}

/// What one organisation's accounts show, over the history window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct OrganizationShare {
    /// Accounts of the organisation seen in the window.
    pub accounts: u32,
    /// Of those, accounts most of whose logins came from a device pointing
    /// into a restricted region.
    pub restricted_accounts: u32,
    /// The sign-ins counted for it (what counting it cost); in no answer.
    #[serde(skip)]
    pub sign_ins: u32,
}

/// Accounts or organisations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SubjectKind {
    /// Accounts.
    Account,
    /// Organisations.
    Organization,
}

/// Verifications counted for the console, each list of (key, verdict,
/// count) in no particular order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// By time: the start of each bucket (Unix ms).
    pub series: Vec<(i64, Verdict, u64)>,
    /// By network country (`??` when unknown).
    pub countries: Vec<(String, Verdict, u64)>,
    /// By reason: how often each fired.
    pub reasons: Vec<(ReasonCode, Verdict, u64)>,
}

/// The history could not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HistoryError {
    /// The database failed or timed out.
    #[error("history unavailable: {0}")]
    Unavailable(String),
    /// The history is configured wrongly.
    #[error("{0}")]
    Config(String),
    /// The database refused what it was given for its content (a value it
    /// cannot hold, a constraint): trying it again cannot help.
    #[error("history database refused the events: {0}")]
    Unstorable(String),
}

/// The future a [`HistoryStore`] returns.
pub type HistoryFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, HistoryError>> + Send + 'a>>;

/// How far one writer's journal is in the database: every event of the
/// journal `origin` numbered up to `through` is committed. Stored in the
/// same transaction as the events, so a journal replayed after a crash
/// writes what is missing and nothing twice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalMark {
    /// The journal (one per process run).
    pub origin: String,
    /// The last event number committed.
    pub through: u64,
}

/// A database of events.
pub trait HistoryStore: Send + Sync + 'static {
    /// Writes `events` in one transaction, with `mark` when given.
    fn record(&self, events: Vec<Event>, mark: Option<JournalMark>) -> HistoryFuture<'_, ()>;

    /// The last event number of journal `origin` committed, if any.
    fn journal_mark(&self, origin: &str) -> HistoryFuture<'_, Option<u64>>;

    /// Whether other processes write to this store too (then what one
    /// process remembers of an account goes stale).
    fn shared(&self) -> bool {
        false
    }

    /// Sign-ins with an accepted token (what the signals read) other
    /// processes wrote to this store at positions after `after`, up to the
    /// newest position now, oldest first, each with its
    /// position, writer and account, at most `limit`; and that newest
    /// position. A writer in `taken` (writer, position) is read only past
    /// that position: each writer commits its batches one after the other,
    /// so nothing of it can still appear below what was taken of it. With
    /// `after` `None`, only the newest position. With them, the erasures
    /// other processes made after the erasure `erasures_after` (or noted in
    /// the last seconds, in case one committed out of order), and the
    /// newest erasure's id. A store no other process writes to has none.
    fn others_since(
        &self,
        after: Option<i64>,
        taken: &[(i64, i64)],
        erasures_after: Option<i64>,
        limit: u32,
    ) -> HistoryFuture<'_, OthersSince> {
        let _ = (after, taken, erasures_after, limit);
        Box::pin(async { Ok(OthersSince::default()) })
    }

    /// Erases this process's own events of `account` up to `at_ms`, after
    /// another process erased the account: one this process committed
    /// while the erasure did is not left behind. Returns how many.
    fn forget_erased(&self, account: &Subject, at_ms: i64) -> HistoryFuture<'_, u64> {
        let _ = (account, at_ms);
        Box::pin(async { Ok(0) })
    }

    /// The account's most recent events since `since_ms`, newest first: at
    /// most `limit` accepted and `limit` refused (refused attempts cost
    /// nothing to send, so they never crowd the accepted ones out).
    fn recent(&self, account: &Subject, since_ms: i64, limit: u32) -> HistoryFuture<'_, Vec<Event>>;

    /// What the signals need of the account's most recent sign-ins whose
    /// token was accepted, since `since_ms`, newest first, at most `limit`:
    /// refused attempts, however many, never push them out.
    fn sightings(&self, account: &Subject, since_ms: i64, limit: u32) -> HistoryFuture<'_, Vec<Sighting>>;

    /// What the organisation's accounts seen since `since_ms` show.
    fn organization(&self, organization: &Subject, since_ms: i64) -> HistoryFuture<'_, OrganizationShare>;

    /// The organisation's most recent events since `since_ms`, newest
    /// first: at most `limit` accepted and `limit` refused.
    fn organization_recent(
        &self,
        organization: &Subject,
        since_ms: i64,
        limit: u32,
    ) -> HistoryFuture<'_, Vec<Event>>;

    /// Up to `limit` events since `since_ms` whose position is after
    /// `after` (0: from the start), in order, each with its position: a
    /// scan of the whole history in pages.
    fn scan(&self, after: i64, since_ms: i64, limit: u32) -> HistoryFuture<'_, Vec<(i64, Event)>>;

    /// Verifications since `since_ms` (rounded down to the hour) counted by
    /// `bucket_ms` (a whole number of hours), by country and by reason,
    /// each with its verdict.
    fn counts(&self, since_ms: i64, bucket_ms: i64) -> HistoryFuture<'_, Counts>;

    /// Accounts or organisations summed over everything retained, at most
    /// `limit`: with `flagged`, only those with anything against them, the
    /// strongest evidence first; else the most recently seen first.
    fn summaries(
        &self,
        kind: SubjectKind,
        flagged: bool,
        limit: u32,
    ) -> HistoryFuture<'_, Vec<report::Summary>>;

    /// The latest `limit` events, newest first.
    fn latest(&self, limit: u32) -> HistoryFuture<'_, Vec<Event>>;

    /// Erases every event of the account; returns how many there were.
    fn erase_account(&self, account: &Subject) -> HistoryFuture<'_, u64>;

    /// Erases every event older than `before_ms`; returns how many.
    fn purge(&self, before_ms: i64) -> HistoryFuture<'_, u64>;

    /// A short name for logs (`sqlite`, `postgres`).
    fn kind(&self) -> &'static str;
}

/// The most recent accepted sign-ins of an account the signals read:
/// enough for the last place, a week on one network, and the share of a
/// busy account's recent sign-ins, without reading a long history on every
/// verification.
#[cfg(feature = "history")]
const RECENT_FOR_SIGNALS: u32 = 32;

/// How long a large organisation's share is reused before it is counted
/// again: it moves with many accounts' sign-ins, not with one, and counting
/// it is the history's most expensive query.
#[cfg(feature = "history")]
const ORGANIZATION_SHARE_TTL: std::time::Duration = std::time::Duration::from_secs(60);

/// Organisations with fewer accounts are counted afresh every time (cheap,
/// and one account moves their share)...
#[cfg(feature = "history")]
const ORGANIZATION_CACHED_FROM: u32 = 20;

/// ... unless they have this many sign-ins in the window: a few accounts
/// signing in all day (automation) would otherwise be counted over all of
/// them at every sign-in, on the connection every verification reads
/// through.
#[cfg(feature = "history")]
const ORGANIZATION_CACHED_FROM_SIGN_INS: u32 = 1_000;

/// Organisations whose share is remembered at most.
#[cfg(feature = "history")]
const ORGANIZATION_CACHE: usize = 100_000;

/// How long a verification waits for the history before answering without
/// it (`history_unavailable`).
#[cfg(feature = "history")]
const HISTORY_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(500);

/// How long what this process remembers of an account is trusted when
/// other processes write to the same store and the feed cannot vouch for
/// it ([`feed`]): after that it is read again, so their sign-ins weigh in
/// here within this long.
#[cfg(feature = "history")]
const SHARED_FRESHNESS: std::time::Duration = std::time::Duration::from_secs(5);

/// How long what this process remembers of an account is trusted while the
/// feed brings in the other processes' sign-ins: it is still read again
/// after this, so an erasure made through another instance, or a sign-in
/// whose commit came too late for the feed, shows here within this long.
#[cfg(feature = "history")]
const FOLLOWED_FRESHNESS: std::time::Duration = std::time::Duration::from_secs(60);

/// Accounts whose recent sign-ins are remembered at most (about 4 KiB
/// each); past that the memory starts over and is filled from the database.
#[cfg(feature = "history")]
const ACCOUNT_CACHE: usize = 200_000;

/// Accounts without a sign-in for this long are forgotten as new ones come
/// (checked every [`TRIM_EVERY`] accounts newly remembered): memory follows
/// the accounts active lately, not every account seen since the start.
#[cfg(feature = "history")]
const QUIET_FOR_MS: i64 = 10 * 60_000;

/// How many accounts newly remembered between two looks for quiet ones.
#[cfg(feature = "history")]
const TRIM_EVERY: usize = 10_000;

/// Makes room among the remembered accounts: those without a sign-in in
/// the last `quiet_ms` go (theirs are committed by now, so a later read
/// finds them); if the memory is still full, all go.
#[cfg(feature = "history")]
fn forget_quiet_accounts(accounts: &mut std::collections::HashMap<Subject, KnownAccount>, quiet_ms: i64) {
    let recent = now_ms().saturating_sub(quiet_ms);
    accounts.retain(|_, known| known.sightings.front().is_some_and(|s| s.at_ms >= recent));
    if accounts.len() >= ACCOUNT_CACHE {
        tracing::warn!(
            accounts = accounts.len(),
            "history: more busy accounts than remembered; reading them again"
        );
        accounts.clear();
    }
}

/// An account's most recent sign-ins as this process knows them: read from
/// the database once, then kept up to date with each sign-in it records.
#[cfg(feature = "history")]
#[derive(Debug)]
struct KnownAccount {
    /// Accepted sign-ins, newest first, at most [`RECENT_FOR_SIGNALS`].
    sightings: std::collections::VecDeque<Sighting>,
    /// When it was read, on [`feed::monotonic_ms`]'s clock.
    read_ms: i64,
    /// Read once every journal left waiting was written (before that the
    /// database may lack some of the account's sign-ins: read it again).
    complete: bool,
}

/// Sign-ins remembered this recently are kept when an account is read
/// again: they may not be committed yet. Older ones come from the database
/// (so an erasure elsewhere is not undone by what is remembered here).
#[cfg(feature = "history")]
const UNCOMMITTED_FOR_MS: i64 = 10_000;

/// A verifier's history: the store, the writer in front of it, the key
/// for account and organisation ids, and what is remembered of recent
/// accounts and organisations.
#[cfg(feature = "history")]
#[derive(Clone)]
pub struct History {
    store: std::sync::Arc<dyn HistoryStore>,
    recorder: Recorder,
    key: SubjectKey,
    unavailable: std::sync::Arc<std::sync::atomic::AtomicU64>,
    accounts: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<Subject, KnownAccount>>>,
    /// Organisations' shares counted lately (`None`: too large to count in
    /// time, not tried again until the entry is old).
    shares: std::sync::Arc<std::sync::Mutex<Shares>>,
    /// With a shared store: what following the other instances vouches for.
    feed: Option<std::sync::Arc<feed::FeedHealth>>,
    /// Refused verifications recorded per second at most
    /// ([`Self::with_refused_budget`]).
    refused_budget: Option<std::sync::Arc<RefusedBudget>>,
    /// Refused verifications over that budget: counted, not recorded.
    refused_unrecorded: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// When one was last logged, Unix ms.
    refused_warned_ms: std::sync::Arc<std::sync::atomic::AtomicI64>,
}

/// What a read or write of the history that missed [`HISTORY_TIMEOUT`] ends as.
#[cfg(feature = "history")]
fn late() -> HistoryError {
    HistoryError::Unavailable("the history did not answer in time".into())
}

/// Organisations' shares as last counted, and when.
#[cfg(feature = "history")]
type Shares = std::collections::HashMap<Subject, (Option<OrganizationShare>, std::time::Instant)>;

/// Which budget a refused verification draws on
/// ([`History::with_refused_budget`]).
#[cfg(feature = "history")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal<'a> {
    /// Denied: nobody signs in with it.
    Denied,
    /// Let through by the policy (the collector's error marker), naming no
    /// account.
    Passing,
    /// Let through, naming this account: with the documented integration
    /// the backend names one only once its password checked out.
    PassingNamed(&'a Subject),
}

#[cfg(feature = "history")]
impl Refusal<'_> {
    /// Its budget's place in [`RefusedBudget::kinds`].
    fn budget(self) -> usize {
        match self {
            Self::Denied => 0,
            Self::Passing => 1,
            Self::PassingNamed(_) => 2,
        }
    }
}

/// What refused verifications may be recorded: a budget per kind of
/// [`Refusal`], and within the last, one per account.
#[cfg(feature = "history")]
struct RefusedBudget {
    kinds: [governor::DefaultDirectRateLimiter; 3],
    /// [`Refusal::PassingNamed`] per account ([`NAMED_BURST`] at once,
    /// one per [`NAMED_EVERY`]), so that one account, however many right
    /// passwords it sends, spends a sliver of the budget everyone shares.
    per_account: governor::DefaultKeyedRateLimiter<Subject>,
    /// Checks per account so far, to forget quiet accounts now and then.
    checks: std::sync::atomic::AtomicU64,
}

/// Refusals let through naming one account, recorded at once at most.
#[cfg(feature = "history")]
const NAMED_BURST: std::num::NonZeroU32 = std::num::NonZeroU32::MIN.saturating_add(9);

/// Then one per this long.
#[cfg(feature = "history")]
const NAMED_EVERY: std::time::Duration = std::time::Duration::from_secs(6);

/// Refused verifications recorded per second at most, by default
/// ([`History::with_refused_budget`]).
#[cfg(feature = "history")]
pub const REFUSED_PER_SECOND: u32 = 1_000;

/// How often a history over its budget of refused verifications says so.
#[cfg(feature = "history")]
const REFUSED_WARN_EVERY_MS: i64 = 60_000;

#[cfg(feature = "history")]
impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("History").field("store", &self.store.kind()).finish_non_exhaustive()
    }
}

#[cfg(feature = "history")]
impl History {
    /// A history in `store`, ids hashed with `key`; starts the writer on
    /// the current Tokio runtime. Without a journal a verification is
    /// answered once its event is committed ([`Self::with_journal`]
    /// answers once it is journaled).
    pub fn new(store: std::sync::Arc<dyn HistoryStore>, key: SubjectKey) -> Self {
        let recorder = Recorder::start(store.clone());
        Self::with_recorder(store, key, recorder)
    }

    /// [`Self::new`] with a journal in `dir`: a verification is answered
    /// once its event is in the journal, and the journals a stopped
    /// process left there are written to the store first.
    ///
    /// # Errors
    /// When the directory cannot be created, read or written.
    pub fn with_journal(
        store: std::sync::Arc<dyn HistoryStore>,
        key: SubjectKey,
        dir: &std::path::Path,
    ) -> Result<Self, HistoryError> {
        let recorder = Recorder::with_journal(store.clone(), dir)?;
        Ok(Self::with_recorder(store, key, recorder))
    }

    fn with_recorder(store: std::sync::Arc<dyn HistoryStore>, key: SubjectKey, recorder: Recorder) -> Self {
        let accounts: std::sync::Arc<std::sync::Mutex<_>> = std::sync::Arc::default();
        let feed = store.shared().then(|| {
            feed::follow(store.clone(), std::sync::Arc::downgrade(&accounts), recorder.set_aside_file())
        });
        Self {
            store,
            recorder,
            key,
            unavailable: std::sync::Arc::default(),
            accounts,
            shares: std::sync::Arc::default(),
            feed,
            refused_budget: None,
            refused_unrecorded: std::sync::Arc::default(),
            refused_warned_ms: std::sync::Arc::default(),
        }
        .with_refused_budget(REFUSED_PER_SECOND)
    }

    /// Records at most `per_second` refused verifications a second (a
    /// second's worth at once), counting the rest without recording them;
    /// 0: no limit. An accepted token is paid for with a challenge, which
    /// the verifier rations; a refused one costs its sender nothing, and a
    /// flood of them (a bot at the login form, no token at all) would
    /// otherwise be written row by row until the writer falls behind
    /// everyone's sign-ins. Accepted sign-ins are always recorded. Refusals
    /// the policy lets through to a sign-in (the collector's error marker,
    /// `collector_error` other than `deny`) have a budget of their own, so
    /// a flood of denied ones cannot keep them out of the history; those
    /// that name an account have another, so a flood of markers naming
    /// none (free to send) cannot keep out the one a person signed in with.
    /// Within that one, each account records 10 at once and then one every
    /// 6 seconds at most, so one account (sign-up is often free) cannot
    /// spend it for every other.
    #[must_use]
    pub fn with_refused_budget(mut self, per_second: u32) -> Self {
        self.refused_budget = std::num::NonZeroU32::new(per_second).map(|n| {
            let budget = || governor::RateLimiter::direct(governor::Quota::per_second(n));
            let per_account = governor::Quota::with_period(NAMED_EVERY)
                .map(|quota| quota.allow_burst(NAMED_BURST))
                .unwrap_or_else(|| governor::Quota::per_second(n));
            std::sync::Arc::new(RefusedBudget {
                kinds: [budget(), budget(), budget()],
                per_account: governor::RateLimiter::keyed(per_account),
                checks: std::sync::atomic::AtomicU64::new(0),
            })
        });
        self
    }

    /// Refused verifications counted but not recorded: over the budget of
    /// [`Self::with_refused_budget`].
    pub fn refused_unrecorded_count(&self) -> u64 {
        self.refused_unrecorded.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether `refusal` may be recorded now; counts (and now and then
    /// logs) one that may not.
    fn record_refused(&self, refusal: Refusal<'_>) -> bool {
        use std::sync::atomic::Ordering;
        let within = |budget: &RefusedBudget| {
            if let Refusal::PassingNamed(account) = refusal {
                if budget.checks.fetch_add(1, Ordering::Relaxed) % 4_096 == 4_095 {
                    budget.per_account.retain_recent();
                    budget.per_account.shrink_to_fit();
                }
                if budget.per_account.check_key(account).is_err() {
                    return false;
                }
            }
            budget.kinds[refusal.budget()].check().is_ok()
        };
        if self.refused_budget.as_deref().is_none_or(within) {
            return true;
        }
        let unrecorded = self.refused_unrecorded.fetch_add(1, Ordering::Relaxed) + 1;
        let now = now_ms();
        let last = self.refused_warned_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= REFUSED_WARN_EVERY_MS
            && self
                .refused_warned_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                unrecorded,
                "history: more refused verifications than its budget; the rest are counted, not recorded"
            );
        }
        false
    }

    /// The store.
    pub fn store(&self) -> &dyn HistoryStore {
        self.store.as_ref()
    }

    /// The key for ids.
    pub fn key(&self) -> &SubjectKey {
        &self.key
    }

    /// Verifications answered without the history (it could not answer).
    pub fn unavailable_count(&self) -> u64 {
        self.unavailable.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// With a shared store: other instances' sign-ins taken through the
    /// feed, and the feed's looks that failed or fell behind.
    pub fn feed_counts(&self) -> Option<(u64, u64)> {
        self.feed.as_ref().map(|feed| feed.counts())
    }

    /// Events that left memory because the database stayed down too long.
    pub fn dropped_count(&self) -> u64 {
        self.recorder.dropped()
    }

    /// Events the database refused for their content, set aside (with a
    /// data directory, in `unstorable.jsonl` there) so the rest go on.
    pub fn unstorable_count(&self) -> u64 {
        self.recorder.unstorable()
    }

    /// Erases the events older than `before_ms`, in the store and among
    /// those set aside; returns how many the store held.
    ///
    /// # Errors
    /// When the store cannot answer, or the events set aside cannot be
    /// rewritten.
    pub async fn purge(&self, before_ms: i64) -> Result<u64, HistoryError> {
        let purged = self.store.purge(before_ms).await?;
        self.recorder.forget_set_aside(|event| event.at_ms < before_ms)?;
        Ok(purged)
    }

    /// Returns once every verification answered so far is in the store, so
    /// a read that follows sees it.
    ///
    /// # Errors
    /// When the store does not take them within the history's timeout.
    pub async fn flush(&self) -> Result<(), HistoryError> {
        tokio::time::timeout(HISTORY_TIMEOUT, self.recorder.flush()).await.map_err(|_| late())?
    }

    /// Erases every event of `account`, including ones answered but not yet
    /// written; returns how many were in the store.
    ///
    /// # Errors
    /// When the store cannot answer.
    pub async fn erase_account(&self, account: &Subject) -> Result<u64, HistoryError> {
        self.flush().await?;
        let covered_until_ms = now_ms().saturating_add(ERASURE_MARGIN_MS);
        let erased = self.store.erase_account(account).await?;
        // A sign-in answered while the erasure ran may sit in a batch whose
        // insert looked before the erasure committed: once it is written,
        // take this process's own covered events out too (the other
        // instances do the same through their feed).
        self.flush().await?;
        self.store.forget_erased(account, covered_until_ms).await?;
        self.recorder.forget_set_aside(|event| event.account.as_ref() == Some(account))?;
        if let Ok(mut accounts) = self.accounts.lock() {
            accounts.remove(account);
        }
        Ok(erased)
    }

    /// A verification with the history: the account's and organisation's
    /// past weigh in, and the answer is recorded before it is returned.
    pub(crate) async fn verify(
        &self,
        verifier: &crate::Verifier,
        input: &crate::VerifyInput<'_>,
        facts: crate::geo::IpFacts,
        now: jiff::Timestamp,
    ) -> crate::VerifyOutcome {
        let subject =
            |id: Option<&str>, hash: fn(&SubjectKey, &str) -> Result<Subject, SubjectError>, what| {
                id.map(|id| hash(&self.key, id).map_err(|e| format!("{what} {e}"))).transpose()
            };
        let (account, organization) = match (
            subject(input.account, SubjectKey::account, "account"),
            subject(input.organization, SubjectKey::organization, "organization"),
        ) {
            (Ok(account), Ok(organization)) => (account, organization),
            (Err(message), _) | (_, Err(message)) => {
                return crate::VerifyOutcome::invalid_request(crate::ErrorCode::BadRequest, message);
            }
        };
        let mut event = Event {
            at_ms: now.as_millisecond(),
            account,
            organization,
            network: network_of(input.remote_ip),
            country: facts.country,
            asn: facts.asn,
            zone: None,
            locale: None,
            restricted_device: false,
            verdict: Verdict::Deny,
            score: 100,
            reasons: Vec::new(),
            error: None,
        };
        let network = crate::Network::new(input.remote_ip, facts.clone());
        let mut outcome = match verifier.accept(input, now).await {
            Err(error) => verifier.refuse(error, network),
            Ok(accepted) => {
                let claims = accepted.verified.claims();
                event.zone = Some(clip(&claims.time_zone.zone));
                event.locale = Some(clip(&claims.locale.locale));
                event.restricted_device = crate::tables::zone_countries(&claims.time_zone.zone)
                    .iter()
                    .filter_map(|c| Country::parse(c))
                    .any(|c| verifier.policy().restricted_regions.contains(&c));
                let (mut more, missing) = self.past(&event, verifier.policy()).await;
                if let Some(error) = missing {
                    more.push(self.unavailable_reason(verifier, &error));
                }
                verifier.judge(accepted, input, facts, now, more)
            }
        };
        event.verdict = outcome.verdict;
        event.score = outcome.score;
        event.reasons = outcome.reasons.iter().map(|r| r.code).collect();
        event.error = outcome.error_codes.first().copied();
        if let Some(account) = &event.account {
            self.remember(account, Sighting::from(&event));
        }
        if event.error.is_some() {
            let refusal = match (outcome.verdict, &event.account) {
                (Verdict::Deny, _) => Refusal::Denied,
                (_, None) => Refusal::Passing,
                (_, Some(account)) => Refusal::PassingNamed(account),
            };
            if !self.record_refused(refusal) {
                return outcome;
            }
        }
        let recorded = tokio::time::timeout(HISTORY_TIMEOUT, self.recorder.record(event))
            .await
            .unwrap_or_else(|_| Err(late()));
        if let Err(error) = recorded
            && outcome.success
            && !outcome.reasons.iter().any(|r| r.code == ReasonCode::HistoryUnavailable)
        {
            outcome.reasons.push(self.unavailable_reason(verifier, &error));
            (outcome.score, outcome.verdict) = verifier.policy().score(&outcome.reasons);
        }
        outcome
    }

    /// The history's reasons for `current`, and what kept some of them
    /// away, if anything: the account's past and the organisation's share
    /// are each waited for until the same deadline, so an organisation too
    /// large to count in time costs its own reason, not the account's.
    async fn past(
        &self,
        current: &Event,
        policy: &crate::Policy,
    ) -> (Vec<crate::verdict::Reason>, Option<HistoryError>) {
        let since = policy.history.since_ms(current.at_ms);
        let deadline = tokio::time::Instant::now() + HISTORY_TIMEOUT;
        let account_read = async {
            if !self.recorder.healthy() {
                // The last write failed: answer with the history only once
                // the store answers again.
                self.store.journal_mark("").await?;
            }
            if let Some(account) = &current.account {
                self.know_account(account, since).await?;
            }
            Ok(())
        };
        if let Err(error) =
            tokio::time::timeout_at(deadline, account_read).await.unwrap_or_else(|_| Err(late()))
        {
            return (Vec::new(), Some(error));
        }
        let (organization, missing) = match &current.organization {
            None => (None, None),
            Some(organization) => {
                match tokio::time::timeout_at(deadline, self.organization_share(organization, since)).await {
                    Ok(Ok(share)) => (Some(share), None),
                    Ok(Err(error)) => (None, Some(error)),
                    Err(_) => {
                        self.remember_share(organization, None);
                        (None, Some(late()))
                    }
                }
            }
        };
        let current_sighting = Sighting::from(current);
        let judge = |earlier: &[Sighting]| signals::reasons(&current_sighting, earlier, organization, policy);
        let Some(account) = &current.account else { return (judge(&[]), missing) };
        // Judged where the sign-ins are kept: nothing is copied.
        let Ok(mut accounts) = self.accounts.lock() else {
            return (Vec::new(), Some(HistoryError::Unavailable("the account memory is poisoned".into())));
        };
        let reasons = match accounts.get_mut(account) {
            Some(known) => {
                let recent = known.sightings.make_contiguous();
                let within = recent.iter().take_while(|s| s.at_ms >= since).count();
                judge(&recent[..within])
            }
            // Forgotten in between (memory full): judged without it.
            None => judge(&[]),
        };
        (reasons, missing)
    }

    /// Makes sure the account's recent sign-ins are in memory and fresh:
    /// read from the store when they are not, and merged with what is
    /// remembered (sign-ins answered here but not yet committed are only
    /// there).
    async fn know_account(&self, account: &Subject, since: i64) -> Result<(), HistoryError> {
        let shared = self.store.shared();
        let now = feed::monotonic_ms();
        let younger = |known: &KnownAccount, than: std::time::Duration| {
            u128::try_from(now.saturating_sub(known.read_ms)).unwrap_or(0) < than.as_millis()
        };
        let followed = |known: &KnownAccount| {
            younger(known, FOLLOWED_FRESHNESS)
                && self.feed.as_ref().is_some_and(|feed| feed.vouches_for(known.read_ms))
        };
        let fresh = self.accounts.lock().ok().is_some_and(|accounts| {
            accounts.get(account).is_some_and(|known| {
                known.complete && (!shared || younger(known, SHARED_FRESHNESS) || followed(known))
            })
        });
        if fresh {
            return Ok(());
        }
        let complete = self.recorder.left_written();
        let read_ms = feed::monotonic_ms();
        let read = self.store.sightings(account, since, RECENT_FOR_SIGNALS).await?;
        let mut accounts = self
            .accounts
            .lock()
            .map_err(|_| HistoryError::Unavailable("the account memory is poisoned".into()))?;
        if accounts.len() >= ACCOUNT_CACHE {
            // Full: everything quiet for a minute goes.
            forget_quiet_accounts(&mut accounts, 60_000);
        } else if accounts.len() % TRIM_EVERY == TRIM_EVERY - 1 && !accounts.contains_key(account) {
            forget_quiet_accounts(&mut accounts, QUIET_FOR_MS);
        }
        let known = accounts.entry(account.clone()).or_insert_with(|| KnownAccount {
            sightings: std::collections::VecDeque::new(),
            read_ms,
            complete,
        });
        let recent = now_ms().saturating_sub(UNCOMMITTED_FOR_MS);
        let mut merged: Vec<Sighting> = known.sightings.drain(..).filter(|s| s.at_ms >= recent).collect();
        for sighting in read {
            if !merged.contains(&sighting) {
                merged.push(sighting);
            }
        }
        merged.sort_by_key(|s| std::cmp::Reverse(s.at_ms));
        merged.truncate(RECENT_FOR_SIGNALS as usize);
        known.sightings = merged.into();
        known.read_ms = read_ms;
        known.complete = complete;
        Ok(())
    }

    /// Adds a sign-in to what is remembered of the account (when anything
    /// is: an account not in memory is read whole on its next sign-in).
    /// Only accepted ones: the signals read nothing else, and refused
    /// attempts cost nothing to send.
    fn remember(&self, account: &Subject, sighting: Sighting) {
        if !sighting.accepted {
            return;
        }
        if let Ok(mut accounts) = self.accounts.lock()
            && let Some(known) = accounts.get_mut(account)
        {
            known.sightings.push_front(sighting);
            known.sightings.truncate(RECENT_FOR_SIGNALS as usize);
        }
    }

    /// The organisation's share; a large or busy one's is counted at most
    /// once a minute, and one that could not be counted in time is not
    /// tried again for a minute (every sign-in of its members would
    /// otherwise start the same long count).
    async fn organization_share(
        &self,
        organization: &Subject,
        since: i64,
    ) -> Result<OrganizationShare, HistoryError> {
        let fresh = |shares: &Shares| {
            shares
                .get(organization)
                .filter(|(_, at)| at.elapsed() < ORGANIZATION_SHARE_TTL)
                .map(|(share, _)| *share)
        };
        match self.shares.lock().ok().and_then(|shares| fresh(&shares)) {
            Some(Some(share)) => return Ok(share),
            Some(None) => {
                return Err(HistoryError::Unavailable(
                    "the organisation is too large to count in time; counted again within a minute".into(),
                ));
            }
            None => {}
        }
        let share = self.store.organization(organization, since).await?;
        if share.accounts >= ORGANIZATION_CACHED_FROM || share.sign_ins >= ORGANIZATION_CACHED_FROM_SIGN_INS {
            self.remember_share(organization, Some(share));
        }
        Ok(share)
    }

    /// Keeps an organisation's share (`None`: too large to count in time)
    /// for [`ORGANIZATION_SHARE_TTL`].
    fn remember_share(&self, organization: &Subject, share: Option<OrganizationShare>) {
        if let Ok(mut shares) = self.shares.lock() {
            if shares.len() >= ORGANIZATION_CACHE {
                shares.retain(|_, (_, at)| at.elapsed() < ORGANIZATION_SHARE_TTL);
                if shares.len() >= ORGANIZATION_CACHE {
                    shares.clear();
                }
            }
            shares.insert(organization.clone(), (share, std::time::Instant::now()));
        }
    }

    fn unavailable_reason(&self, verifier: &crate::Verifier, error: &HistoryError) -> crate::verdict::Reason {
        tracing::warn!(%error, "answering without the history");
        self.unavailable.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let code = ReasonCode::HistoryUnavailable;
        crate::verdict::Reason::new(
            code,
            verifier.policy().weights.of(code),
            "The account history could not be consulted in full, so this answer lacks the history reasons that needed it.".into(),
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic, reason = "tests fail by panicking")]
mod tests {
    use super::*;

    #[test]
    fn ids_are_keyed_hashes_kept_apart_by_kind_and_key() {
        let key = SubjectKey::new([1; 32]);
        let account = key.account("ada").unwrap();
        assert_eq!(account, key.account("ada").unwrap(), "the same id, the same hash");
        assert_ne!(account, key.organization("ada").unwrap(), "an account is not an organisation");
        assert_ne!(account, SubjectKey::new([2; 32]).account("ada").unwrap(), "another key, another hash");
        assert_eq!(account.as_str().len(), 43, "base64url of 32 bytes");
        assert_eq!(key.account(""), Err(SubjectError::Empty));
        assert_eq!(key.account(&"é".repeat(129)), Err(SubjectError::TooLong { len: 258 }));
        assert_eq!(key.account("a\u{0}b"), Err(SubjectError::ControlCharacter));
        assert_eq!(key.account("a\u{9b}b"), Err(SubjectError::ControlCharacter), "C1 controls too");
        assert!(key.account("x'); DROP TABLE events; --").is_ok());
        assert!(format!("{key:?}").contains("redacted"));
    }

    #[test]
    fn networks_are_truncated() {
        assert_eq!(network_of("203.0.113.77".parse().unwrap()), "203.0.113.0/24");
        assert_eq!(network_of("::ffff:203.0.113.77".parse().unwrap()), "203.0.113.0/24");
        assert_eq!(network_of("2001:db8:1234:5678::1".parse().unwrap()), "2001:db8:1234::/48");
    }

    #[test]
    #[cfg(feature = "history")]
    fn accounts_quiet_for_ten_minutes_are_forgotten() {
        let key = SubjectKey::new([1; 32]);
        let known = |minutes_ago: i64| KnownAccount {
            sightings: [Sighting {
                at_ms: now_ms() - minutes_ago * 60_000,
                accepted: true,
                network: "192.0.2.0/24".into(),
                country: None,
                zone: None,
                locale: None,
                restricted_device: false,
            }]
            .into(),
            read_ms: 0,
            complete: true,
        };
        let mut accounts: std::collections::HashMap<Subject, KnownAccount> =
            [("busy", 1), ("quiet", 11), ("lately", 9)]
                .map(|(id, ago)| (key.account(id).unwrap(), known(ago)))
                .into();
        forget_quiet_accounts(&mut accounts, QUIET_FOR_MS);
        let mut kept: Vec<&Subject> = accounts.keys().collect();
        kept.sort();
        let mut expected = [key.account("busy").unwrap(), key.account("lately").unwrap()];
        expected.sort();
        assert_eq!(kept, expected.iter().collect::<Vec<_>>());
    }

    #[test]
    #[cfg(feature = "history")]
    fn claims_are_clipped_at_a_character_boundary() {
        assert_eq!(clip("Asia/Shanghai"), "Asia/Shanghai");
        let long = "é".repeat(40);
        let clipped = clip(&long);
        assert!(clipped.len() <= 64 && clipped.chars().all(|c| c == 'é'));
        assert_eq!(clip("Asia/Singapore\u{0}\u{1b}[2J\n"), "Asia/Singapore\u{fffd}\u{fffd}[2J\u{fffd}");
    }
}

//! The history against a real SQLite database: what it records, the
//! reasons only a memory can give, erasure, hostile ids, and a database
//! that goes away and comes back.
#![allow(clippy::unwrap_used, clippy::panic, reason = "tests fail by panicking")]

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use meridian_verifier::clock::Clock;
use meridian_verifier::geo::Country;
use meridian_verifier::history::{
    Event, History, HistoryFuture, HistoryStore, JournalMark, OrganizationShare, Sighting, SqliteHistory,
    Subject, SubjectKey,
};
use meridian_verifier::http::{ApiState, VerifySecret, router};
use meridian_verifier::replay::MemoryReplayStore;
use meridian_verifier::testkit::{Minter, test_intel};
use meridian_verifier::verdict::{ReasonCode, Verdict};
use meridian_verifier::{Policy, Verifier, VerifyInput, VerifyOutcome};
use tower::ServiceExt as _;

const SECRET: &str = "history-test-secret-0123456789";
/// 2027-01-15T08:00:00Z.
const T0: i64 = 1_800_000_000_000;
const SINGAPORE: [u8; 4] = [192, 0, 2, 10];
const GERMANY: [u8; 4] = [192, 0, 2, 200];
const SWITZERLAND: [u8; 4] = [203, 0, 113, 9];

/// A clock that stands still.
struct Fixed(i64);

impl Clock for Fixed {
    fn now(&self) -> jiff::Timestamp {
        jiff::Timestamp::from_millisecond(self.0).unwrap()
    }
}

/// A store that fails while `down` is set, then answers again; it counts
/// the organisation counts it is asked for, and takes two seconds over
/// each while `slow_organizations` is set.
struct Flaky {
    inner: SqliteHistory,
    down: Arc<AtomicBool>,
    organization_counts: Arc<std::sync::atomic::AtomicUsize>,
    slow_organizations: Arc<AtomicBool>,
}

impl Flaky {
    fn new(inner: SqliteHistory, down: Arc<AtomicBool>) -> Self {
        Self { inner, down, organization_counts: Arc::default(), slow_organizations: Arc::default() }
    }

    fn gate(&self) -> Result<(), meridian_verifier::history::HistoryError> {
        if self.down.load(Ordering::SeqCst) {
            Err(meridian_verifier::history::HistoryError::Unavailable("database is down".into()))
        } else {
            Ok(())
        }
    }
}

impl HistoryStore for Flaky {
    fn record(&self, events: Vec<Event>, mark: Option<JournalMark>) -> HistoryFuture<'_, ()> {
        match self.gate() {
            Ok(()) => self.inner.record(events, mark),
            Err(e) => Box::pin(std::future::ready(Err(e))),
        }
    }
    fn journal_mark(&self, origin: &str) -> HistoryFuture<'_, Option<u64>> {
        match self.gate() {
            Ok(()) => self.inner.journal_mark(origin),
            Err(e) => Box::pin(std::future::ready(Err(e))),
        }
    }
    fn recent(&self, account: &Subject, since_ms: i64, limit: u32) -> HistoryFuture<'_, Vec<Event>> {
        match self.gate() {
            Ok(()) => self.inner.recent(account, since_ms, limit),
            Err(e) => Box::pin(std::future::ready(Err(e))),
        }
    }
    fn sightings(&self, account: &Subject, since_ms: i64, limit: u32) -> HistoryFuture<'_, Vec<Sighting>> {
        match self.gate() {
            Ok(()) => self.inner.sightings(account, since_ms, limit),
            Err(e) => Box::pin(std::future::ready(Err(e))),
        }
    }
    fn organization(&self, organization: &Subject, since_ms: i64) -> HistoryFuture<'_, OrganizationShare> {
        self.organization_counts.fetch_add(1, Ordering::SeqCst);
        let slow = self.slow_organizations.load(Ordering::SeqCst);
        match self.gate() {
            Ok(()) => {
                let count = self.inner.organization(organization, since_ms);
                Box::pin(async move {
                    if slow {
                        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                    }
                    count.await
                })
            }
            Err(e) => Box::pin(std::future::ready(Err(e))),
        }
    }
    fn organization_recent(
        &self,
        organization: &Subject,
        since_ms: i64,
        limit: u32,
    ) -> HistoryFuture<'_, Vec<Event>> {
        self.inner.organization_recent(organization, since_ms, limit)
    }
    fn scan(&self, after: i64, since_ms: i64, limit: u32) -> HistoryFuture<'_, Vec<(i64, Event)>> {
        self.inner.scan(after, since_ms, limit)
    }
    fn erase_account(&self, account: &Subject) -> HistoryFuture<'_, u64> {
        self.inner.erase_account(account)
    }
    fn purge(&self, before_ms: i64) -> HistoryFuture<'_, u64> {
        self.inner.purge(before_ms)
    }
    fn counts(&self, since_ms: i64, bucket_ms: i64) -> HistoryFuture<'_, meridian_verifier::history::Counts> {
        self.inner.counts(since_ms, bucket_ms)
    }
    fn summaries(
        &self,
        kind: meridian_verifier::history::SubjectKind,
        flagged: bool,
        limit: u32,
    ) -> HistoryFuture<'_, Vec<meridian_verifier::history::report::Summary>> {
        self.inner.summaries(kind, flagged, limit)
    }
    fn latest(&self, limit: u32) -> HistoryFuture<'_, Vec<Event>> {
        self.inner.latest(limit)
    }
    fn kind(&self) -> &'static str {
        "flaky"
    }
}

struct Fixture {
    minter: Minter,
    verifier: Arc<Verifier>,
    history: History,
    store: SqliteHistory,
    key: SubjectKey,
    nonce: std::sync::atomic::AtomicU8,
    nonce_hi: std::sync::atomic::AtomicU8,
}

fn restrict_cn() -> Policy {
    Policy { restricted_regions: vec![Country::parse("CN").unwrap()], ..Policy::default() }
}

impl Fixture {
    fn new(store: Arc<dyn HistoryStore>, sqlite: SqliteHistory) -> Self {
        Self::with(store, sqlite, |history| history)
    }

    /// [`Self::new`] with the history set up by `adjust`.
    fn with(
        store: Arc<dyn HistoryStore>,
        sqlite: SqliteHistory,
        adjust: impl FnOnce(History) -> History,
    ) -> Self {
        let minter = Minter::new(61);
        let key = SubjectKey::new([7; 32]);
        let history = adjust(History::new(store, key.clone()));
        let verifier =
            Verifier::new(minter.keys.clone(), restrict_cn(), Arc::new(MemoryReplayStore::new(10_000)))
                .with_intel(Arc::new(test_intel()))
                .with_history(history.clone());
        Self {
            minter,
            verifier: Arc::new(verifier),
            history,
            store: sqlite,
            key,
            nonce: std::sync::atomic::AtomicU8::new(0),
            nonce_hi: std::sync::atomic::AtomicU8::new(0),
        }
    }

    fn sqlite() -> Self {
        let store = SqliteHistory::in_memory().unwrap();
        Self::new(Arc::new(store.clone()), store)
    }

    fn nonce(&self) -> [u8; 16] {
        let low = self.nonce.fetch_add(1, Ordering::SeqCst);
        if low == u8::MAX {
            self.nonce_hi.fetch_add(1, Ordering::SeqCst);
        }
        let mut nonce = [0; 16];
        nonce[0] = low;
        nonce[1] = self.nonce_hi.load(Ordering::SeqCst);
        nonce
    }

    /// One sign-in of `account` (in `organization`) from `ip` at `at_ms` by
    /// an honest browser in `zone` with `locale`.
    async fn sign_in(
        &self,
        account: &str,
        organization: Option<&str>,
        ip: [u8; 4],
        at_ms: i64,
        zone: &str,
        locale: &str,
    ) -> VerifyOutcome {
        let ip = IpAddr::from(ip);
        let language = locale.split('-').next().unwrap();
        let claims =
            self.minter.honest_claims(ip, at_ms, self.nonce(), zone, locale, &[locale, language]).unwrap();
        let token = self.minter.sign(&claims);
        let input = VerifyInput {
            token: &token,
            remote_ip: ip,
            accept_language: None,
            expected_action: None,
            expected_origin: None,
            account: Some(account),
            organization,
        };
        self.verifier.verify(&input, jiff::Timestamp::from_millisecond(at_ms + 100).unwrap()).await
    }

    /// A sign-in of `account` from `ip` at `at_ms` whose token is refused
    /// (the form sent without one, or with anything at all in its place).
    async fn refused(&self, account: &str, ip: [u8; 4], at_ms: i64) -> VerifyOutcome {
        self.send("not-a-token", Some(account), ip, at_ms).await
    }

    /// The drop-in's error marker from Singapore at `at_ms`, naming
    /// `account`: refused, but `review` by default, so the site may still
    /// let the person in after a second factor.
    async fn marker(&self, account: Option<&str>, at_ms: i64) -> VerifyOutcome {
        self.send("meridian-error:wasm-unavailable", account, SINGAPORE, at_ms).await
    }

    async fn send(&self, token: &str, account: Option<&str>, ip: [u8; 4], at_ms: i64) -> VerifyOutcome {
        let input = VerifyInput {
            token,
            remote_ip: IpAddr::from(ip),
            accept_language: None,
            expected_action: None,
            expected_origin: None,
            account,
            organization: None,
        };
        self.verifier.verify(&input, jiff::Timestamp::from_millisecond(at_ms).unwrap()).await
    }

    /// How many recorded events name `account`.
    async fn recorded_for(&self, account: &str) -> usize {
        let subject = self.key.account(account).unwrap();
        self.events().await.iter().filter(|e| e.account.as_ref() == Some(&subject)).count()
    }

    /// Three sign-ins of `account` an hour apart from a Shanghai device
    /// behind Singapore, then `refused` attempts without a token a second
    /// apart, from T0 + 4 h.
    async fn shanghai_then_refused(&self, account: &str, refused: i64) {
        for n in 0..3 {
            self.sign_in(account, None, SINGAPORE, T0 + n * 3_600_000, "Asia/Shanghai", "zh-CN").await;
        }
        for n in 0..refused {
            let outcome = self.refused(account, SINGAPORE, T0 + 4 * 3_600_000 + n * 1_000).await;
            assert!(!outcome.success);
        }
    }

    async fn events(&self) -> Vec<Event> {
        self.store.scan(0, 0, 100_000).await.unwrap().into_iter().map(|(_, e)| e).collect()
    }
}

fn codes(outcome: &VerifyOutcome) -> Vec<&'static str> {
    outcome.reasons.iter().map(|r| r.code.as_str()).collect()
}

#[tokio::test]
async fn every_verification_is_recorded_with_hashed_ids_and_truncated_networks() {
    let fixture = Fixture::sqlite();
    let outcome = fixture
        .sign_in("ada@example.com", Some("Example Corp"), SINGAPORE, T0, "Asia/Singapore", "en-SG")
        .await;
    assert!(outcome.success, "{outcome:?}");
    let events = fixture.events().await;
    assert_eq!(events.len(), 1);
    let event = &events[0];
    assert_eq!(event.network, "192.0.2.0/24");
    assert_eq!(event.country, Country::parse("SG"));
    assert_eq!(event.zone.as_deref(), Some("Asia/Singapore"));
    assert_eq!(event.verdict, outcome.verdict);
    let account = event.account.as_ref().unwrap();
    assert_eq!(account, &fixture.key.account("ada@example.com").unwrap());
    assert!(!account.as_str().contains("ada"), "ids are never stored in the clear");
    assert_ne!(event.organization.as_ref().unwrap(), &fixture.key.account("Example Corp").unwrap());
}

#[tokio::test]
async fn an_organisation_of_shanghai_devices_is_flagged_and_a_traveller_is_not() {
    let fixture = Fixture::sqlite();
    // Example Corp: registered in Singapore, staff sign in through its
    // Singapore office with Shanghai clocks and Chinese browsers.
    for (n, staff) in ["li", "wang", "zhang", "chen", "liu"].iter().enumerate() {
        for day in 0..3 {
            let at = T0 + day * 86_400_000 + i64::try_from(n).unwrap() * 60_000;
            fixture.sign_in(staff, Some("Example Corp"), SINGAPORE, at, "Asia/Shanghai", "zh-CN").await;
        }
    }
    let later = T0 + 4 * 86_400_000;
    let staff = fixture.sign_in("li", Some("Example Corp"), SINGAPORE, later, "Asia/Shanghai", "zh-CN").await;
    assert!(codes(&staff).contains(&"organization_region_share"), "{:?}", codes(&staff));
    assert!(codes(&staff).contains(&"account_region_history"), "{:?}", codes(&staff));
    let reason = staff.reasons.iter().find(|r| r.code == ReasonCode::OrganizationRegionShare).unwrap();
    assert!(reason.detail.contains("5 of the organisation's 5 accounts"), "{}", reason.detail);

    // Other Corp: Singaporeans, and one traveller from Shanghai, once.
    for (n, local) in ["tan", "lim", "ng", "goh", "ong"].iter().enumerate() {
        let at = T0 + i64::try_from(n).unwrap() * 60_000;
        fixture.sign_in(local, Some("Other Corp"), SINGAPORE, at, "Asia/Singapore", "en-SG").await;
    }
    let traveller =
        fixture.sign_in("zhou", Some("Other Corp"), SINGAPORE, later, "Asia/Shanghai", "zh-CN").await;
    let found = codes(&traveller);
    assert!(!found.contains(&"organization_region_share"), "{found:?}");
    assert!(!found.contains(&"account_region_history"), "one sign-in is not a history: {found:?}");
}

#[tokio::test]
async fn a_zone_that_changes_on_the_same_network_is_a_flip() {
    let fixture = Fixture::sqlite();
    fixture.sign_in("sam", None, SINGAPORE, T0, "Asia/Shanghai", "zh-CN").await;
    let flipped = fixture.sign_in("sam", None, SINGAPORE, T0 + 3_600_000, "Asia/Singapore", "en-SG").await;
    let flip = flipped.reasons.iter().find(|r| r.code == ReasonCode::ZoneFlip).unwrap();
    assert!(flip.detail.contains("Asia/Shanghai") && flip.detail.contains("192.0.2.0/24"), "{}", flip.detail);
    // Another account on that network is not compared.
    let other = fixture.sign_in("kim", None, SINGAPORE, T0 + 3_700_000, "Asia/Singapore", "en-SG").await;
    assert!(!codes(&other).contains(&"zone_flip"));
}

#[tokio::test]
async fn germany_then_singapore_ten_minutes_later_is_impossible_travel() {
    let fixture = Fixture::sqlite();
    fixture.sign_in("eva", None, GERMANY, T0, "Europe/Berlin", "de-DE").await;
    let jump = fixture.sign_in("eva", None, SINGAPORE, T0 + 600_000, "Europe/Berlin", "de-DE").await;
    let travel = jump.reasons.iter().find(|r| r.code == ReasonCode::ImpossibleTravel).unwrap();
    assert!(travel.detail.contains("from DE") && travel.detail.contains("now from SG"), "{}", travel.detail);
    // Next door is never impossible, however quick: a border town, a
    // phone roaming onto the neighbour's network.
    fixture.sign_in("jan", None, GERMANY, T0, "Europe/Berlin", "de-DE").await;
    let roaming = fixture.sign_in("jan", None, SWITZERLAND, T0 + 60_000, "Europe/Berlin", "de-DE").await;
    assert!(!codes(&roaming).contains(&"impossible_travel"), "{:?}", codes(&roaming));
    // A day later the same trip is a flight.
    let flown = fixture.sign_in("eva", None, GERMANY, T0 + 86_400_000 * 2, "Europe/Berlin", "de-DE").await;
    assert!(!codes(&flown).contains(&"impossible_travel"), "{:?}", codes(&flown));
}

#[tokio::test]
async fn refused_tokens_cannot_push_an_accounts_sign_ins_out_of_sight() {
    // The person behind the account knows its last sign-ins showed a
    // Shanghai device. Before signing in with a clean one, they send the
    // login form without a token, again and again: each attempt is refused,
    // and recorded, so it must not take an accepted sign-in's place among
    // those the signals read.
    let fixture = Fixture::sqlite();
    fixture.shanghai_then_refused("mei", 100).await;
    let expect_both = |outcome: &VerifyOutcome, what: &str| {
        let found = codes(outcome);
        assert!(
            found.contains(&"zone_flip") && found.contains(&"account_region_history"),
            "{what}: {found:?}"
        );
    };
    let clean = fixture.sign_in("mei", None, SINGAPORE, T0 + 5 * 3_600_000, "Asia/Singapore", "en-SG").await;
    expect_both(&clean, "remembered by this process");

    // Read from the database by a process that remembers nothing.
    while fixture.events().await.len() < 104 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let restarted = Fixture::new(Arc::new(fixture.store.clone()), fixture.store.clone());
    let again =
        restarted.sign_in("mei", None, SINGAPORE, T0 + 6 * 3_600_000, "Asia/Singapore", "en-SG").await;
    expect_both(&again, "read from the database");
}

#[tokio::test]
async fn refused_attempts_neither_water_down_nor_crowd_out_an_accounts_report() {
    use meridian_verifier::history::report::{Risk, subject_report};
    let fixture = Fixture::sqlite();
    fixture.shanghai_then_refused("mei", 150).await;
    fixture.history.flush().await.unwrap();
    let account = fixture.key.account("mei").unwrap();
    let events = fixture.store.recent(&account, 0, 100).await.unwrap();
    assert_eq!(events.iter().filter(|e| e.error.is_none()).count(), 3, "the accepted are all read");
    assert_eq!(events.len(), 103, "and at most 100 refused");
    assert!(events.windows(2).all(|w| w[0].at_ms >= w[1].at_ms), "newest first");
    let report = subject_report(account, 30, events, None, 20);
    assert_eq!(report.risk, Risk::High, "{:?}", report.risk_reasons);
    assert!(report.risk_reasons[0].starts_with("3 of 3 accepted sign-ins"), "{:?}", report.risk_reasons);
}

#[tokio::test]
async fn an_organisation_too_large_to_count_in_time_costs_its_own_reason_not_the_accounts() {
    let sqlite = SqliteHistory::in_memory().unwrap();
    let flaky = Flaky::new(sqlite.clone(), Arc::default());
    let (counts, slow) = (flaky.organization_counts.clone(), flaky.slow_organizations.clone());
    let fixture = Fixture::new(Arc::new(flaky), sqlite);
    slow.store(true, Ordering::SeqCst);
    for n in 0..4 {
        let at = T0 + n * 3_600_000;
        let outcome = fixture.sign_in("li", Some("Big Corp"), SINGAPORE, at, "Asia/Shanghai", "zh-CN").await;
        let found = codes(&outcome);
        assert!(found.contains(&"history_unavailable"), "{found:?}");
        if n == 3 {
            assert!(found.contains(&"account_region_history"), "the account's past still weighs: {found:?}");
        }
    }
    assert_eq!(counts.load(Ordering::SeqCst), 1, "a count that took too long is not started again at once");
}

#[tokio::test]
async fn a_flood_of_refused_tokens_is_counted_not_written_while_sign_ins_still_are() {
    let sqlite = SqliteHistory::in_memory().unwrap();
    let fixture = Fixture::with(Arc::new(sqlite.clone()), sqlite, |history| history.with_refused_budget(1));
    let history = &fixture.history;
    for n in 0..20 {
        let refused = fixture.refused(&format!("bot-{n}"), SINGAPORE, T0 + n).await;
        assert!(!refused.success, "refused whether recorded or not");
    }
    let accepted = fixture.sign_in("ada", None, SINGAPORE, T0 + 100, "Asia/Singapore", "en-SG").await;
    assert!(accepted.success, "{accepted:?}");
    history.flush().await.unwrap();
    let events = fixture.events().await;
    let refused = events.iter().filter(|e| e.error.is_some()).count();
    // One a second, and the loop may straddle a second.
    assert!((1..=2).contains(&refused), "{refused} refused recorded");
    assert_eq!(u64::try_from(refused).unwrap() + history.refused_unrecorded_count(), 20);
    assert_eq!(events.iter().filter(|e| e.error.is_none()).count(), 1, "the sign-in is recorded");
}

#[tokio::test]
async fn a_flood_of_denied_attempts_leaves_room_for_the_refusals_the_policy_lets_through() {
    let sqlite = SqliteHistory::in_memory().unwrap();
    let fixture = Fixture::with(Arc::new(sqlite.clone()), sqlite, |history| history.with_refused_budget(1));
    for n in 0..20 {
        fixture.refused(&format!("bot-{n}"), SINGAPORE, T0 + n).await;
    }
    let marker = fixture.marker(Some("mei"), T0 + 50).await;
    assert_eq!(marker.verdict, Verdict::Review, "{marker:?}");
    fixture.history.flush().await.unwrap();
    assert_eq!(fixture.recorded_for("mei").await, 1, "its sign-in is recorded");
}

#[tokio::test]
async fn a_flood_of_markers_naming_no_account_leaves_room_for_one_that_names_its_account() {
    // The error marker is free to send. With the documented integration the
    // backend names the account only once its password checked out, so a
    // flood of markers naming none must not keep out the one a person
    // signed in with.
    let sqlite = SqliteHistory::in_memory().unwrap();
    let fixture = Fixture::with(Arc::new(sqlite.clone()), sqlite, |history| history.with_refused_budget(1));
    for n in 0..20 {
        assert_eq!(fixture.marker(None, T0 + n).await.verdict, Verdict::Review);
    }
    let signed_in = fixture.marker(Some("mei"), T0 + 50).await;
    assert_eq!(signed_in.verdict, Verdict::Review, "{signed_in:?}");
    fixture.history.flush().await.unwrap();
    assert_eq!(fixture.recorded_for("mei").await, 1);
    assert_eq!(fixture.events().await.len(), 2, "one anonymous marker within the budget, and mei's");
    assert_eq!(fixture.history.refused_unrecorded_count(), 19);
}

#[tokio::test]
async fn one_account_sending_markers_cannot_spend_the_budget_of_every_other() {
    // Sign-up is often free: someone with an account of their own (and its
    // password) sends markers naming it, to keep everyone else's marker
    // sign-ins out of the history.
    let sqlite = SqliteHistory::in_memory().unwrap();
    let fixture = Fixture::with(Arc::new(sqlite.clone()), sqlite, |history| history.with_refused_budget(20));
    for n in 0..50 {
        fixture.marker(Some("mallory"), T0 + n).await;
    }
    let signed_in = fixture.marker(Some("mei"), T0 + 60).await;
    assert_eq!(signed_in.verdict, Verdict::Review, "{signed_in:?}");
    fixture.history.flush().await.unwrap();
    let recorded = (fixture.recorded_for("mallory").await, fixture.recorded_for("mei").await);
    assert_eq!(recorded, (10, 1), "mallory's first ten, and mei's");
}

#[tokio::test]
async fn hostile_ids_are_refused_or_stored_as_hashes() {
    let fixture = Fixture::sqlite();
    let huge = "a".repeat(10_000);
    let refused = fixture.sign_in(&huge, None, SINGAPORE, T0, "Asia/Singapore", "en-SG").await;
    assert_eq!(refused.error_codes.iter().map(|c| c.as_str()).collect::<Vec<_>>(), ["bad-request"]);
    let control = fixture.sign_in("evil\u{0}\u{1b}[2J", None, SINGAPORE, T0, "Asia/Singapore", "en-SG").await;
    assert!(!control.success);
    let sql = "x'); DROP TABLE events; --";
    let stored =
        fixture.sign_in(sql, Some("\"; DELETE FROM events"), SINGAPORE, T0, "Asia/Singapore", "en-SG").await;
    assert!(stored.success, "{stored:?}");
    let events = fixture.events().await;
    assert_eq!(events.len(), 1, "refused ids leave no event; the table survives SQL in ids");
    assert_eq!(events[0].account.as_ref().unwrap(), &fixture.key.account(sql).unwrap());
}

#[tokio::test]
async fn erasure_removes_every_event_of_the_account_only() {
    let fixture = Fixture::sqlite();
    for n in 0..3 {
        fixture.sign_in("gone", None, SINGAPORE, T0 + n * 1_000, "Asia/Singapore", "en-SG").await;
        fixture.sign_in("stays", None, SINGAPORE, T0 + n * 1_000, "Asia/Singapore", "en-SG").await;
    }
    let gone = fixture.key.account("gone").unwrap();
    assert_eq!(fixture.store.erase_account(&gone).await.unwrap(), 3);
    let events = fixture.events().await;
    assert_eq!(events.len(), 3);
    assert!(events.iter().all(|e| e.account.as_ref() != Some(&gone)));
    assert_eq!(fixture.store.purge(T0 + 1_500).await.unwrap(), 2, "the retention purge takes the old ones");
}

#[tokio::test]
async fn a_database_that_goes_away_costs_reasons_not_answers_or_events() {
    let sqlite = SqliteHistory::in_memory().unwrap();
    let down = Arc::new(AtomicBool::new(false));
    let flaky = Flaky::new(sqlite.clone(), down.clone());
    let fixture = Fixture::new(Arc::new(flaky), sqlite);
    let mut answered = 0;
    fixture.sign_in("ada", None, SINGAPORE, T0, "Asia/Singapore", "en-SG").await;
    answered += 1;
    down.store(true, Ordering::SeqCst);
    for n in 0..5 {
        let outcome =
            fixture.sign_in("ada", None, SINGAPORE, T0 + 1_000 * (n + 1), "Asia/Singapore", "en-SG").await;
        assert!(outcome.success, "verification keeps answering: {outcome:?}");
        assert!(codes(&outcome).contains(&"history_unavailable"), "{:?}", codes(&outcome));
        answered += 1;
    }
    assert_eq!(
        fixture.verifier.history().unwrap().unavailable_count(),
        5,
        "five answers without the history"
    );
    down.store(false, Ordering::SeqCst);
    let back = fixture.sign_in("ada", None, SINGAPORE, T0 + 10_000, "Asia/Singapore", "en-SG").await;
    answered += 1;
    assert!(
        !codes(&back).contains(&"history_unavailable"),
        "recovered without a restart: {:?}",
        codes(&back)
    );
    assert_eq!(
        fixture.events().await.len(),
        answered,
        "no answered verification is missing from the history"
    );
}

async fn get(app: &axum::Router, method: &str, path: &str, secret: &str) -> (StatusCode, serde_json::Value) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {secret}"))
        .body(Body::empty())
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
}

#[tokio::test]
async fn the_api_reports_on_accounts_and_organisations_and_erases_on_request() {
    let fixture = Fixture::sqlite();
    for (n, staff) in ["li", "wang", "zhang"].iter().enumerate() {
        for day in 0..3 {
            let at = T0 + day * 86_400_000 + i64::try_from(n).unwrap() * 60_000;
            fixture.sign_in(staff, Some("Example Corp"), SINGAPORE, at, "Asia/Shanghai", "zh-CN").await;
        }
    }
    let clock = Arc::new(Fixed(T0 + 5 * 86_400_000));
    let state =
        ApiState::from_shared(fixture.verifier.clone(), vec![VerifySecret::new(SECRET).unwrap()], clock);
    let app = router(state).layer(MockConnectInfo(std::net::SocketAddr::from(([127, 0, 0, 1], 1))));

    let (status, account) = get(&app, "GET", "/v1/accounts/li", SECRET).await;
    assert_eq!(status, StatusCode::OK, "{account}");
    assert_eq!(account["logins"], 3);
    assert_eq!(account["risk"], "high");
    assert_eq!(account["zones"]["Asia/Shanghai"], 3);
    assert_eq!(account["countries"]["SG"], 3);
    assert_eq!(account["recent"].as_array().unwrap().len(), 3);

    let (status, organization) = get(&app, "GET", "/v1/organizations/Example%20Corp", SECRET).await;
    assert_eq!(status, StatusCode::OK, "{organization}");
    assert_eq!(organization["accounts"]["accounts"], 3);
    assert_eq!(organization["accounts"]["restricted_accounts"], 3);
    assert_eq!(organization["risk"], "high");

    let (status, _) = get(&app, "GET", "/v1/accounts/li", "not-the-secret-0000000").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let long = format!("/v1/accounts/{}", "x".repeat(300));
    assert_eq!(get(&app, "GET", &long, SECRET).await.0, StatusCode::BAD_REQUEST);

    let (status, erased) = get(&app, "DELETE", "/v1/accounts/li", SECRET).await;
    assert_eq!((status, erased["erased"].as_u64()), (StatusCode::OK, Some(3)));
    let (_, account) = get(&app, "GET", "/v1/accounts/li", SECRET).await;
    assert_eq!(account["logins"], 0);
    assert_eq!(account["risk"], "low");
}

/// The lines in the journal files of `dir`.
fn journal_lines(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| std::fs::read_to_string(entry.unwrap().path()).unwrap().lines().count())
        .sum()
}

#[tokio::test]
async fn events_waiting_for_the_database_survive_a_restart_of_the_process() {
    let dir = std::env::temp_dir().join(format!("meridian-history-journal-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let journal = dir.join("journal");
    let sqlite = SqliteHistory::open(&dir.join("history.sqlite")).unwrap();
    let down = Arc::new(AtomicBool::new(true));
    let minter = Minter::new(62);
    let key = SubjectKey::new([7; 32]);
    let verifier = |store: Arc<dyn HistoryStore>| {
        Verifier::new(minter.keys.clone(), restrict_cn(), Arc::new(MemoryReplayStore::new(100)))
            .with_intel(Arc::new(test_intel()))
            .with_history(History::with_journal(store, key.clone(), &journal).unwrap())
    };
    async fn sign_in(minter: &Minter, verifier: &Verifier, n: u8) -> VerifyOutcome {
        let ip = IpAddr::from(SINGAPORE);
        let token = minter.token(ip, T0, [n; 16]);
        let input = VerifyInput {
            token: &token,
            remote_ip: ip,
            accept_language: None,
            expected_action: None,
            expected_origin: None,
            account: Some("ada"),
            organization: None,
        };
        verifier.verify(&input, jiff::Timestamp::from_millisecond(T0 + 100).unwrap()).await
    }
    {
        // The database is down the whole life of this process.
        let first = verifier(Arc::new(Flaky::new(sqlite.clone(), down.clone())));
        for n in 0..4u8 {
            let outcome = sign_in(&minter, &first, n).await;
            assert!(outcome.success, "answered while the database is down");
            assert!(codes(&outcome).contains(&"history_unavailable"), "{:?}", codes(&outcome));
        }
        assert_eq!(journal_lines(&journal), 4, "kept on disk");
    }
    // The first process's writer lets go of the journal.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    // A new process, the database back: the waiting events are written.
    down.store(false, Ordering::SeqCst);
    let second = verifier(Arc::new(sqlite.clone()));
    let started = std::time::Instant::now();
    while sqlite.scan(0, 0, 100).await.unwrap().len() < 4
        && started.elapsed() < std::time::Duration::from_secs(10)
    {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(sqlite.scan(0, 0, 100).await.unwrap().len(), 4, "what was answered is in the history");
    // Its own sign-ins are journaled and written too, and the journal
    // empties once they are.
    for n in 4..7u8 {
        assert!(sign_in(&minter, &second, n).await.success);
    }
    second.history().unwrap().flush().await.unwrap();
    assert_eq!(sqlite.scan(0, 0, 100).await.unwrap().len(), 7);
    assert_eq!(journal_lines(&journal), 0, "the journal is emptied once written");
    drop(second);
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;

    // A process that dies after a commit but before its journal is
    // emptied: the next one writes nothing twice.
    let crashed_journal = journal.join("journal-crashedrun-00000000.jsonl");
    let event = sqlite.scan(0, 0, 1).await.unwrap().remove(0).1;
    let lines: String =
        (1..=3u64).map(|seq| format!("{}\n", serde_json::to_string(&(seq, &event)).unwrap())).collect();
    std::fs::write(&crashed_journal, format!("{lines}{{\"torn")).unwrap();
    sqlite
        .record(vec![event.clone(), event], Some(JournalMark { origin: "crashedrun".into(), through: 2 }))
        .await
        .unwrap();
    let third = verifier(Arc::new(sqlite.clone()));
    let started = std::time::Instant::now();
    while crashed_journal.exists() && started.elapsed() < std::time::Duration::from_secs(10) {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(!crashed_journal.exists(), "a written journal is deleted");
    assert_eq!(sqlite.scan(0, 0, 100).await.unwrap().len(), 7 + 2 + 1, "only event 3 was missing");
    assert_eq!(sqlite.journal_mark("crashedrun").await.unwrap(), Some(3));
    let twice = History::with_journal(Arc::new(sqlite.clone()), key.clone(), &journal).unwrap_err();
    assert!(twice.to_string().contains("another Meridian process"), "{twice}");
    drop(third);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn the_axum_extractor_names_the_account_from_a_form_field() {
    use meridian_verifier::http::{Checked, LoginCheck};
    #[derive(serde::Deserialize)]
    struct Login {
        #[allow(dead_code, reason = "the form has it; the test reads the history")]
        email: String,
    }
    async fn login(login: Checked<Login>) -> String {
        login.verdict().as_str().to_owned()
    }
    let fixture = Fixture::sqlite();
    let check =
        LoginCheck::new(fixture.verifier.clone()).account_field("email").organization_field("company");
    let app = axum::Router::new()
        .route("/login", axum::routing::post(login))
        .with_state(check)
        .layer(MockConnectInfo(std::net::SocketAddr::from((SINGAPORE, 4000))));
    let now = jiff::Timestamp::now().as_millisecond();
    let token = fixture.minter.token(IpAddr::from(SINGAPORE), now, [9; 16]);
    let body = format!("email=ada%40example.com&company=Example+Corp&meridian-token={token}");
    let request = Request::post("/login")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(body))
        .unwrap();
    let response = app.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let events = fixture.events().await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].account, Some(fixture.key.account("ada@example.com").unwrap()));
    assert_eq!(events[0].organization, Some(fixture.key.organization("Example Corp").unwrap()));
}

/// Counts by time, by country and by reason, each with its verdict, sorted.
type CountsTable = (Vec<(i64, String, u64)>, Vec<(String, String, u64)>, Vec<(String, String, u64)>);

/// What the console's counts must be, computed from the events themselves.
fn counts_from_events(events: &[Event], since_ms: i64, bucket_ms: i64) -> CountsTable {
    use std::collections::BTreeMap;
    let mut series = BTreeMap::<(i64, String), u64>::new();
    let mut countries = BTreeMap::<(String, String), u64>::new();
    let mut reasons = BTreeMap::<(String, String), u64>::new();
    for event in events.iter().filter(|e| e.at_ms >= since_ms) {
        let verdict = event.verdict.as_str().to_owned();
        *series.entry((event.at_ms / bucket_ms * bucket_ms, verdict.clone())).or_default() += 1;
        let country = event.country.map_or("??".to_owned(), |c| c.as_str().to_owned());
        *countries.entry((country, verdict.clone())).or_default() += 1;
        for code in &event.reasons {
            *reasons.entry((code.as_str().to_owned(), verdict.clone())).or_default() += 1;
        }
    }
    (
        series.into_iter().map(|((a, b), n)| (a, b, n)).collect(),
        countries.into_iter().map(|((a, b), n)| (a, b, n)).collect(),
        reasons.into_iter().map(|((a, b), n)| (a, b, n)).collect(),
    )
}

/// The store's counts in the same shape, sorted.
async fn counts_from_store(store: &dyn HistoryStore, since_ms: i64, bucket_ms: i64) -> CountsTable {
    let counts = store.counts(since_ms, bucket_ms).await.unwrap();
    let mut series: Vec<_> =
        counts.series.into_iter().map(|(a, v, n)| (a, v.as_str().to_owned(), n)).collect();
    let mut countries: Vec<_> =
        counts.countries.into_iter().map(|(a, v, n)| (a, v.as_str().to_owned(), n)).collect();
    let mut reasons: Vec<_> = counts
        .reasons
        .into_iter()
        .map(|(a, v, n)| (a.as_str().to_owned(), v.as_str().to_owned(), n))
        .collect();
    series.sort();
    countries.sort();
    reasons.sort();
    (series, countries, reasons)
}

/// Events with every kind of value, drawn from a fixed stream.
fn assorted_events(key: &SubjectKey, count: u64) -> Vec<Event> {
    use meridian_verifier::verdict::Verdict;
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut draw = |n: u64| {
        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) % n
    };
    let codes = [
        ReasonCode::RestrictedRegionClaim,
        ReasonCode::RestrictedRegionIp,
        ReasonCode::TzCountryMismatch,
        ReasonCode::ImpossibleTravel,
        ReasonCode::AccountRegionHistory,
        ReasonCode::OrganizationRegionShare,
        ReasonCode::ZoneFlip,
    ];
    (0..count)
        .map(|n| {
            let restricted = draw(3) == 0;
            let verdict = [Verdict::Allow, Verdict::Review, Verdict::Deny][usize::try_from(draw(3)).unwrap()];
            let account = draw(12);
            Event {
                at_ms: T0 + i64::try_from(n).unwrap() * 1_234_567,
                account: (account < 10).then(|| key.account(&format!("user-{account}")).unwrap()),
                organization: (draw(4) > 0)
                    .then(|| key.organization(&format!("org-{}", account % 3)).unwrap()),
                network: "192.0.2.0/24".into(),
                country: ["SG", "DE", "CN", "??"]
                    .get(usize::try_from(draw(4)).unwrap())
                    .and_then(|c| Country::parse(c)),
                asn: None,
                zone: Some(if restricted { "Asia/Shanghai" } else { "Europe/Berlin" }.into()),
                locale: Some("en".into()),
                restricted_device: restricted,
                verdict,
                score: 0,
                reasons: codes.iter().copied().filter(|_| draw(4) == 0).collect(),
                error: (draw(10) == 0).then_some(meridian_verifier::ErrorCode::Expired),
            }
        })
        .collect()
}

#[tokio::test]
async fn the_consoles_running_counts_agree_with_the_events_through_erasure_and_purge() {
    let store = SqliteHistory::in_memory().unwrap();
    let key = SubjectKey::new([4; 32]);
    let events = assorted_events(&key, 400);
    for batch in events.chunks(37) {
        store.record(batch.to_vec(), None).await.unwrap();
    }
    let check = |label: &'static str| {
        let store = &store;
        async move {
            let stored: Vec<Event> =
                store.scan(0, 0, 10_000).await.unwrap().into_iter().map(|(_, e)| e).collect();
            for (since, bucket) in
                [(0, 3_600_000), (T0 + 100_000_000, 86_400_000), (T0 + 300_000_000, 7_200_000)]
            {
                assert_eq!(
                    counts_from_store(store, since, bucket).await,
                    counts_from_events(&stored, since.div_euclid(3_600_000) * 3_600_000, bucket),
                    "{label}: counts since {since} by {bucket}"
                );
            }
            let summaries = store
                .summaries(meridian_verifier::history::SubjectKind::Account, false, 1_000)
                .await
                .unwrap();
            let accounts: std::collections::BTreeSet<_> =
                stored.iter().filter_map(|e| e.account.clone()).collect();
            assert_eq!(summaries.len(), accounts.len(), "{label}: one summary per account with events");
            for summary in &summaries {
                let mine: Vec<Event> =
                    stored.iter().filter(|e| e.account.as_ref() == Some(&summary.subject)).cloned().collect();
                let report = meridian_verifier::history::report::subject_report(
                    summary.subject.clone(),
                    90,
                    mine.clone(),
                    None,
                    0,
                );
                assert_eq!(summary.evidence.logins, report.logins, "{label}");
                assert_eq!(summary.evidence.restricted_device, report.restricted_device_logins, "{label}");
                assert_eq!(
                    (summary.risk().0, summary.risk().1),
                    (report.risk, report.risk_reasons.clone()),
                    "{label}"
                );
                assert_eq!(summary.last_ms, mine.iter().map(|e| e.at_ms).max().unwrap(), "{label}");
            }
            let organizations = store
                .summaries(meridian_verifier::history::SubjectKind::Organization, false, 1_000)
                .await
                .unwrap();
            for summary in &organizations {
                let share = store.organization(&summary.subject, 0).await.unwrap();
                // The share as answers show it (what counting it cost is not kept).
                let shown = |share: OrganizationShare| (share.accounts, share.restricted_accounts);
                assert_eq!(summary.share.map(shown), Some(shown(share)), "{label}: an organisation's share");
            }
            let flagged =
                store.summaries(meridian_verifier::history::SubjectKind::Account, true, 1_000).await.unwrap();
            assert!(
                flagged.iter().all(|s| s.risk().0 > meridian_verifier::history::report::Risk::Low),
                "{label}"
            );
            let latest = store.latest(5).await.unwrap();
            assert_eq!(
                latest,
                stored.iter().rev().take(5).cloned().collect::<Vec<_>>(),
                "{label}: newest first"
            );
        }
    };
    check("recorded").await;
    let erased = key.account("user-3").unwrap();
    assert!(store.erase_account(&erased).await.unwrap() > 0);
    check("after an erasure").await;
    assert!(store.purge(T0 + 200 * 1_234_567).await.unwrap() > 0);
    check("after a purge").await;
    // Events erased before they are counted, the newest among them.
    let late = assorted_events(&key, 30);
    store.record(late.clone(), None).await.unwrap();
    assert!(store.erase_account(&key.account("user-1").unwrap()).await.unwrap() > 0);
    check("erased before counted").await;
    assert!(store.purge(T0 + 400 * 1_234_567).await.unwrap() > 0, "the rest goes");
    let empty = store.counts(0, 3_600_000).await.unwrap();
    assert!(empty.series.is_empty() && empty.countries.is_empty() && empty.reasons.is_empty(), "{empty:?}");
    let organizations =
        store.summaries(meridian_verifier::history::SubjectKind::Organization, false, 10).await;
    assert!(organizations.unwrap().is_empty());
    // Numbering goes on after an emptied table: new events are counted.
    store.record(late, None).await.unwrap();
    check("recorded after everything was purged").await;
}

#[tokio::test]
async fn a_small_organisation_with_a_great_many_sign_ins_is_counted_once_a_minute() {
    let sqlite = SqliteHistory::in_memory().unwrap();
    let flaky = Flaky::new(sqlite.clone(), Arc::default());
    let counts = flaky.organization_counts.clone();
    let fixture = Fixture::new(Arc::new(flaky), sqlite);
    // A small organisation with few sign-ins: counted afresh every time.
    for n in 0..2 {
        fixture.sign_in("ada", Some("Tiny Ltd"), SINGAPORE, T0 + n * 1_000, "Asia/Singapore", "en-SG").await;
    }
    assert_eq!(counts.load(Ordering::SeqCst), 2);
    // One account that signs in all day: 1,200 sign-ins in the window.
    let (bot, busy) = (fixture.key.account("bot").unwrap(), fixture.key.organization("Busy Ltd").unwrap());
    let earlier: Vec<Event> = (0..1_200)
        .map(|n| Event {
            at_ms: T0 - 60_000 + n,
            account: Some(bot.clone()),
            organization: Some(busy.clone()),
            network: "192.0.2.0/24".into(),
            country: Country::parse("SG"),
            asn: None,
            zone: Some("Asia/Singapore".into()),
            locale: Some("en-SG".into()),
            restricted_device: false,
            verdict: Verdict::Allow,
            score: 0,
            reasons: Vec::new(),
            error: None,
        })
        .collect();
    fixture.store.record(earlier, None).await.unwrap();
    for n in 0..3 {
        fixture.sign_in("bot", Some("Busy Ltd"), SINGAPORE, T0 + n * 1_000, "Asia/Singapore", "en-SG").await;
    }
    assert_eq!(counts.load(Ordering::SeqCst), 3, "counted once, then reused");
}

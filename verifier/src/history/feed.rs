//! Following the other instances of a shared history.
//!
//! What a process remembers of an account (the signals' input) is read from
//! the database once and then kept up to date with each sign-in it answers.
//! Sign-ins that other instances answer reach it through the feed: every
//! [`LOOK_EVERY`] one query asks the store for the events other writers
//! committed since the last look, and each is added to its account when
//! that account is remembered here. Without the feed, every remembered
//! account would have to be read again every few seconds, one query per
//! account.
//!
//! - **Commits out of order.** An event's position is handed out when its
//!   transaction inserts it, not when it commits, so a position below one
//!   already seen can still appear when several instances write. Each
//!   instance's writer commits its batches one after another, so within
//!   one writer positions appear in order: the feed keeps, per writer, the
//!   last position it took, and asks only for what lies past it. A writer
//!   it has not seen yet (or not for a while) is looked for over the
//!   positions of the last [`LOOKBACK`] looks, and what was already added
//!   is skipped.
//! - **When the feed cannot vouch for the memory** (a look failed, or found
//!   more than a page waiting), what was read before that moment is read
//!   again once [`super::SHARED_FRESHNESS`] old, as without a feed; what
//!   the feed vouches for is read again once [`super::FOLLOWED_FRESHNESS`]
//!   old, so a sign-in the feed missed (a commit later than the lookback)
//!   shows here within that.
//! - **Erasures.** Each look also finds the accounts other instances
//!   erased in the last seconds, and forgets what it remembers of each,
//!   once: its next sign-in reads the (erased) database afresh.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use super::{HistoryStore, KnownAccount, OtherSignIn, OthersSince, RECENT_FOR_SIGNALS, Sighting, Subject};

/// How often the feed looks for other instances' sign-ins.
const LOOK_EVERY: Duration = Duration::from_millis(500);

/// Looks whose positions each look reaches back over for a writer it has
/// not seen yet (such a writer's transaction that commits later than this
/// after inserting is missed by the feed, and read with its account again
/// later).
const LOOKBACK: usize = 6;

/// The most events one look takes; more waiting means the feed fell behind.
const PAGE: u32 = 10_000;

/// A feed that has not looked successfully for this long vouches for
/// nothing.
const LIVE_WITHIN_MS: i64 = 2_000;

/// How long an applied erasure is remembered, so that the looks that find
/// it again do not apply it again: longer than the store reports it.
const FORGET_FOR_MS: i64 = 60_000;

/// Milliseconds on a clock that only goes forward, from the first call.
pub(super) fn monotonic_ms() -> i64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    i64::try_from(start.elapsed().as_millis()).unwrap_or(i64::MAX)
}

/// What the feed can vouch for, shared with the verifications.
#[derive(Debug)]
pub(super) struct FeedHealth {
    /// When the last successful look started ([`monotonic_ms`]).
    last_look_ms: AtomicI64,
    /// Since when the feed has followed without a gap: a look that failed
    /// or fell behind moves it to the next good look's start.
    following_since_ms: AtomicI64,
    /// Other instances' sign-ins taken.
    taken: AtomicU64,
    /// Looks that failed or fell behind.
    gaps: AtomicU64,
}

impl FeedHealth {
    /// Whether every sign-in other instances committed after `read_ms` has
    /// reached the memory (up to the lookback).
    pub(super) fn vouches_for(&self, read_ms: i64) -> bool {
        let since = self.following_since_ms.load(Ordering::Acquire);
        let last = self.last_look_ms.load(Ordering::Acquire);
        since >= 0 && read_ms > since && monotonic_ms().saturating_sub(last) <= LIVE_WITHIN_MS
    }

    /// Other instances' sign-ins taken, and looks that failed or fell
    /// behind, since the start.
    pub(super) fn counts(&self) -> (u64, u64) {
        (self.taken.load(Ordering::Relaxed), self.gaps.load(Ordering::Relaxed))
    }

    fn new() -> Self {
        Self {
            last_look_ms: AtomicI64::new(0),
            following_since_ms: AtomicI64::new(-1),
            taken: AtomicU64::new(0),
            gaps: AtomicU64::new(0),
        }
    }
}

/// Starts following the other writers of `store` into `accounts` on the
/// current Tokio runtime; the task ends once `accounts` is dropped.
pub(super) fn follow(
    store: Arc<dyn HistoryStore>,
    accounts: Weak<Mutex<HashMap<Subject, KnownAccount>>>,
    set_aside: super::recorder::SetAside,
) -> Arc<FeedHealth> {
    let health = Arc::new(FeedHealth::new());
    let shared = health.clone();
    tokio::spawn(async move {
        let mut feed = Feed::new();
        let mut every = tokio::time::interval(LOOK_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            let Some(accounts) = accounts.upgrade() else { return };
            feed.look(store.as_ref(), &accounts, &shared, &set_aside).await;
        }
    });
    health
}

/// The feed's own state.
struct Feed {
    /// The newest position at each of the last looks, oldest first.
    positions: VecDeque<i64>,
    /// Per writer, the last position taken (above the oldest of
    /// `positions`; below it the lookback reaches no further anyway).
    taken: HashMap<i64, i64>,
    /// Positions already added, above the oldest of `positions`.
    added: HashSet<i64>,
    /// Erasures already applied, with when ([`monotonic_ms`]), kept while
    /// the store can still report them.
    forgotten: HashMap<i64, i64>,
    /// The newest erasure seen: the next look asks for those after it. Kept
    /// through failed looks, so an erasure made meanwhile is still found.
    erasures_after: Option<i64>,
    /// Whether a failure was logged since the last good look.
    warned: bool,
}

impl Feed {
    /// A feed that has not looked yet.
    fn new() -> Self {
        Self {
            positions: VecDeque::new(),
            taken: HashMap::new(),
            added: HashSet::new(),
            forgotten: HashMap::new(),
            erasures_after: None,
            warned: false,
        }
    }

    async fn look(
        &mut self,
        store: &dyn HistoryStore,
        accounts: &Mutex<HashMap<Subject, KnownAccount>>,
        health: &FeedHealth,
        set_aside: &super::recorder::SetAside,
    ) {
        let started = monotonic_ms();
        let after = self.positions.front().copied();
        let taken: Vec<(i64, i64)> =
            self.taken.iter().map(|(&writer, &position)| (writer, position)).collect();
        let found = store.others_since(after, &taken, self.erasures_after, PAGE).await;
        for (id, account, at_ms) in self.take(started, after, found, accounts, health) {
            // A batch of this process's that committed while the erasure
            // did may hold some of the account's events: they go too.
            if let Err(error) = store.forget_erased(&account, at_ms).await {
                tracing::warn!(%error, "history: cannot apply another instance's erasure here; it is retried");
                self.forgotten.remove(&id);
            } else if let Err(error) = set_aside.forget(|event| event.account.as_ref() == Some(&account)) {
                tracing::warn!(%error, "history: cannot apply another instance's erasure to the events set aside");
            }
        }
    }

    /// Takes what a look that started at `started` from `after` found;
    /// returns the erasures applied for the first time.
    fn take(
        &mut self,
        started: i64,
        after: Option<i64>,
        found: Result<OthersSince, super::HistoryError>,
        accounts: &Mutex<HashMap<Subject, KnownAccount>>,
        health: &FeedHealth,
    ) -> Vec<(i64, Subject, i64)> {
        let OthersSince { newest, sign_ins, erased, erasures_newest } = match found {
            Ok(found) => found,
            Err(error) => {
                if !self.warned {
                    tracing::warn!(%error, "history: cannot follow the other instances; re-reading accounts instead");
                    self.warned = true;
                }
                self.positions.clear();
                self.taken.clear();
                health.following_since_ms.store(i64::MAX, Ordering::Release);
                health.gaps.fetch_add(1, Ordering::Relaxed);
                return Vec::new();
            }
        };
        let mut newly_erased = Vec::new();
        self.warned = false;
        if let Ok(mut accounts) = accounts.lock() {
            for OtherSignIn { position, writer, account, sighting } in &sign_ins {
                if let Some(writer) = writer {
                    let last = self.taken.entry(*writer).or_insert(*position);
                    *last = (*last).max(*position);
                }
                if !self.added.insert(*position) {
                    continue;
                }
                health.taken.fetch_add(1, Ordering::Relaxed);
                if let Some(known) = accounts.get_mut(account) {
                    add(known, sighting.clone());
                }
            }
            // After the sign-ins: an erasure that committed while this look
            // read them may have removed some.
            for (id, account, at_ms) in erased {
                if self.forgotten.insert(id, started).is_none() {
                    accounts.remove(&account);
                    newly_erased.push((id, account, at_ms));
                }
            }
        }
        self.forgotten.retain(|_, at| started.saturating_sub(*at) <= FORGET_FOR_MS);
        self.erasures_after =
            Some(self.erasures_after.map_or(erasures_newest, |seen| seen.max(erasures_newest)));
        let behind = u32::try_from(sign_ins.len()).unwrap_or(u32::MAX) >= PAGE;
        if behind {
            health.gaps.fetch_add(1, Ordering::Relaxed);
        }
        if after.is_none() || behind {
            // Followed from here on: what was read before is read again.
            self.positions.clear();
            self.taken.clear();
            self.added.clear();
            health.following_since_ms.store(started, Ordering::Release);
        }
        self.positions.push_back(newest);
        while self.positions.len() > LOOKBACK {
            self.positions.pop_front();
        }
        if let Some(&oldest) = self.positions.front() {
            self.added.retain(|&position| position > oldest);
            self.taken.retain(|_, position| *position > oldest);
        }
        health.last_look_ms.store(started, Ordering::Release);
        newly_erased
    }
}

/// Adds another instance's sign-in to what is remembered of its account,
/// in time order, once, when its token was accepted (as
/// `History::remember`).
fn add(known: &mut KnownAccount, sighting: Sighting) {
    if !sighting.accepted || known.sightings.contains(&sighting) {
        return;
    }
    let at = known.sightings.iter().position(|s| s.at_ms < sighting.at_ms).unwrap_or(known.sightings.len());
    known.sightings.insert(at, sighting);
    known.sightings.truncate(RECENT_FOR_SIGNALS as usize);
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail by panicking")]
mod tests {
    use super::*;

    fn sighting(at_ms: i64, zone: &str) -> Sighting {
        Sighting {
            at_ms,
            accepted: true,
            network: "192.0.2.0/24".into(),
            country: None,
            zone: Some(zone.into()),
            locale: Some("en-GB".into()),
            restricted_device: false,
        }
    }

    #[test]
    fn another_instances_sign_in_goes_in_time_order_once() {
        let mut known = KnownAccount {
            sightings: [sighting(300, "Europe/London"), sighting(100, "Europe/London")].into(),
            read_ms: 0,
            complete: true,
        };
        add(&mut known, sighting(200, "Asia/Shanghai"));
        add(&mut known, sighting(200, "Asia/Shanghai"));
        let order: Vec<i64> = known.sightings.iter().map(|s| s.at_ms).collect();
        assert_eq!(order, [300, 200, 100]);
        add(&mut known, sighting(50, "Asia/Shanghai"));
        assert_eq!(known.sightings.back().unwrap().at_ms, 50, "older than all: last");
        for at in 1_000..1_100 {
            add(&mut known, sighting(at, "Europe/London"));
        }
        assert_eq!(known.sightings.len(), RECENT_FOR_SIGNALS as usize, "bounded");
        assert_eq!(known.sightings.front().unwrap().at_ms, 1_099);
    }

    /// Rows a test commits: (position, writer, account, sighting), and
    /// erasures: (id, account, erased until, still noted lately).
    #[derive(Default)]
    struct Rows(Vec<(i64, i64, Subject, Sighting)>, Vec<(i64, Subject, i64, bool)>);

    /// This process's writer id in the tests.
    const ME: i64 = 7;

    impl Rows {
        /// What `PostgresHistory::others_since` answers from these rows.
        fn others_since(
            &self,
            after: Option<i64>,
            taken: &[(i64, i64)],
            erasures_after: Option<i64>,
        ) -> OthersSince {
            let newest = self.0.iter().map(|row| row.0).max().unwrap_or(0);
            let erasures_newest = self.1.iter().map(|e| e.0).max().unwrap_or(0);
            let erased = self
                .1
                .iter()
                .filter(|(id, _, _, lately)| *id > erasures_after.unwrap_or(i64::MAX) || *lately)
                .map(|(id, account, until, _)| (*id, account.clone(), *until))
                .collect();
            let Some(after) = after else {
                return OthersSince { newest, erasures_newest, erased, sign_ins: Vec::new() };
            };
            let past = |writer: i64| taken.iter().find(|t| t.0 == writer).map_or(0, |t| t.1);
            let mut sign_ins: Vec<OtherSignIn> = self
                .0
                .iter()
                .filter(|(position, writer, ..)| {
                    *position > after && *position <= newest && *writer != ME && *position > past(*writer)
                })
                .map(|(position, writer, account, sighting)| OtherSignIn {
                    position: *position,
                    writer: Some(*writer),
                    account: account.clone(),
                    sighting: sighting.clone(),
                })
                .collect();
            sign_ins.sort_by_key(|s| s.position);
            OthersSince { newest, sign_ins, erased, erasures_newest }
        }
    }

    struct Follower {
        feed: Feed,
        accounts: Mutex<HashMap<Subject, KnownAccount>>,
        health: FeedHealth,
    }

    impl Follower {
        fn new(account: &Subject) -> Self {
            let known = KnownAccount { sightings: VecDeque::new(), read_ms: 0, complete: true };
            Self {
                feed: Feed::new(),
                accounts: Mutex::new(HashMap::from([(account.clone(), known)])),
                health: FeedHealth::new(),
            }
        }

        /// One look; the erasures it applied for the first time.
        fn look(&mut self, rows: &Rows) -> Vec<(i64, Subject, i64)> {
            let after = self.feed.positions.front().copied();
            let taken: Vec<(i64, i64)> = self.feed.taken.iter().map(|(&w, &p)| (w, p)).collect();
            let found = Ok(rows.others_since(after, &taken, self.feed.erasures_after));
            self.feed.take(monotonic_ms(), after, found, &self.accounts, &self.health)
        }

        fn seen(&self, account: &Subject) -> Vec<i64> {
            self.accounts.lock().unwrap()[account].sightings.iter().map(|s| s.at_ms).collect()
        }
    }

    #[test]
    fn another_instances_refused_attempts_leave_the_accepted_sign_ins_in_place() {
        let mut known =
            KnownAccount { sightings: [sighting(100, "Asia/Shanghai")].into(), read_ms: 0, complete: true };
        for at in 200..300 {
            add(&mut known, Sighting { accepted: false, zone: None, ..sighting(at, "") });
        }
        assert_eq!(known.sightings.iter().map(|s| s.at_ms).collect::<Vec<_>>(), [100]);
    }

    #[test]
    fn a_commit_that_lands_below_what_was_seen_is_taken_once() {
        let grace = Subject::from_stored("grace".into());
        let mut follower = Follower::new(&grace);
        let mut rows = Rows::default();
        follower.look(&rows);
        // Writer 1 commits positions 1, 2 and 4 while writer 2's position 3
        // is still in flight.
        for (position, at) in [(1, 1_000), (2, 2_000), (4, 4_000)] {
            rows.0.push((position, 1, grace.clone(), sighting(at, "Europe/London")));
        }
        follower.look(&rows);
        assert_eq!(follower.seen(&grace), [4_000, 2_000, 1_000]);
        assert_eq!(follower.feed.taken[&1], 4, "writer 1 is asked only past 4 from now on");
        rows.0.push((3, 2, grace.clone(), sighting(3_000, "Asia/Shanghai")));
        follower.look(&rows);
        follower.look(&rows);
        assert_eq!(follower.seen(&grace), [4_000, 3_000, 2_000, 1_000], "late, in order, once");
        assert_eq!(follower.health.counts(), (4, 0));
        rows.0.push((5, ME, grace.clone(), sighting(5_000, "Europe/London")));
        follower.look(&rows);
        assert_eq!(follower.seen(&grace).len(), 4, "this process's own sign-ins come from itself");
    }

    #[test]
    fn an_erasure_elsewhere_forgets_the_account_once() {
        let grace = Subject::from_stored("grace".into());
        let mut follower = Follower::new(&grace);
        let mut rows = Rows::default();
        follower.look(&rows);
        rows.0.push((1, 1, grace.clone(), sighting(1_000, "Europe/London")));
        follower.look(&rows);
        assert_eq!(follower.seen(&grace), [1_000]);
        // Another instance erases grace; the store reports the erasure for
        // a while, and one of its sign-ins taken in the same look goes too.
        rows.0.push((2, 1, grace.clone(), sighting(2_000, "Europe/London")));
        rows.1.push((9, grace.clone(), 2_500, true));
        assert_eq!(follower.look(&rows), [(9, grace.clone(), 2_500)], "its own events up to then go too");
        assert!(!follower.accounts.lock().unwrap().contains_key(&grace), "forgotten");
        // Read again (as a sign-in would), then the same erasure is
        // reported again: not applied twice.
        let known = KnownAccount { sightings: VecDeque::new(), read_ms: monotonic_ms(), complete: true };
        follower.accounts.lock().unwrap().insert(grace.clone(), known);
        assert_eq!(follower.look(&rows), []);
        assert!(follower.accounts.lock().unwrap().contains_key(&grace), "once");
        // Looks fail for a while; an erasure made meanwhile is no longer
        // noted lately when they succeed again, and is found all the same.
        rows.1[0].3 = false;
        follower.feed.take(
            monotonic_ms(),
            None,
            Err(super::super::HistoryError::Unavailable("down".into())),
            &follower.accounts,
            &follower.health,
        );
        rows.1.push((10, grace.clone(), 5_000, false));
        assert_eq!(follower.look(&rows), [(10, grace.clone(), 5_000)], "after the outage");
        assert_eq!(follower.look(&rows), []);
    }

    #[test]
    fn a_failed_look_vouches_for_nothing_until_the_feed_follows_again() {
        let grace = Subject::from_stored("grace".into());
        let mut follower = Follower::new(&grace);
        let rows = Rows::default();
        follower.look(&rows);
        std::thread::sleep(Duration::from_millis(2));
        let read = monotonic_ms();
        assert!(follower.health.vouches_for(read), "read while it follows");
        let failed = Err(super::super::HistoryError::Unavailable("down".into()));
        follower.feed.take(monotonic_ms(), Some(0), failed, &follower.accounts, &follower.health);
        assert!(!follower.health.vouches_for(read), "a gap: read again");
        assert_eq!(follower.health.counts().1, 1);
        follower.look(&rows);
        assert!(!follower.health.vouches_for(read), "read before the feed followed again");
        std::thread::sleep(Duration::from_millis(2));
        assert!(follower.health.vouches_for(monotonic_ms()));
    }

    #[test]
    fn the_feed_vouches_only_for_what_was_read_while_it_followed() {
        let health = FeedHealth::new();
        assert!(!health.vouches_for(monotonic_ms()), "not yet following");
        let now = monotonic_ms();
        health.following_since_ms.store(now, Ordering::Release);
        health.last_look_ms.store(now, Ordering::Release);
        assert!(health.vouches_for(now + 1), "read after it began following");
        assert!(!health.vouches_for(now), "read before: read again");
        health.last_look_ms.store(now - LIVE_WITHIN_MS - 1_000, Ordering::Release);
        assert!(!health.vouches_for(now + 1), "a feed that stopped looking vouches for nothing");
    }
}

//! Prometheus metrics of the API, served at `GET /metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Labels of a verification: `outcome` (`success` or `rejected`) and the
/// error `code` (empty on success), or the `verdict`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `success` or `rejected`.
    pub outcome: String,
    /// The first error code, empty on success.
    pub code: String,
    /// The verdict.
    pub verdict: String,
}

/// The counters and histograms.
pub struct Metrics {
    registry: Registry,
    /// Verifications by outcome, error code and verdict.
    pub verifications: Family<OutcomeLabels, Counter>,
    /// Seconds per `/v1/verify`, end to end inside the handler.
    pub verify_seconds: Histogram,
    /// Replay store failures.
    pub store_errors: Counter,
    /// Verifications answered without the history (`history_unavailable`).
    pub history_unavailable: Counter,
    /// Challenges issued.
    pub challenges: Counter,
    /// Challenge requests refused by the per-IP rate limit.
    pub challenges_limited: Counter,
    /// `/v1/verify` requests refused before verification (auth, shape).
    pub rejected_requests: Family<OutcomeLabels, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new(None)
    }
}

/// The history's own counts, read on each scrape: refused verifications
/// over its budget, and (with a shared store) the feed of the other
/// instances' sign-ins.
#[derive(Debug)]
struct HistoryCollector(crate::history::History);

impl prometheus_client::collector::Collector for HistoryCollector {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric as _;
        use prometheus_client::metrics::TypedMetric as _;
        use prometheus_client::metrics::counter::ConstCounter;
        let mut counts = vec![
            (
                "history_refused_unrecorded",
                "Refused verifications over the history's budget (history_refused_per_second): counted, not recorded",
                self.0.refused_unrecorded_count(),
            ),
            (
                "history_unstorable_events",
                "Events the history database refused for their content: set aside in unstorable.jsonl in the data directory, the rest written",
                self.0.unstorable_count(),
            ),
        ];
        if let Some((taken, gaps)) = self.0.feed_counts() {
            counts.push((
                "history_feed_sign_ins",
                "Other instances' sign-ins taken from the shared history",
                taken,
            ));
            counts.push((
                "history_feed_gaps",
                "Looks at the shared history that failed or fell behind (accounts are then read again after 5 s)",
                gaps,
            ));
        }
        for (name, help, value) in counts {
            let counter = ConstCounter::new(value);
            counter.encode(encoder.encode_descriptor(name, help, None, ConstCounter::<u64>::TYPE)?)?;
        }
        Ok(())
    }
}

impl Metrics {
    /// The metrics, with the counts of `history` when there is one.
    pub fn new(history: Option<&crate::history::History>) -> Self {
        let mut registry = Registry::with_prefix("meridian");
        if let Some(history) = history {
            registry.register_collector(Box::new(HistoryCollector(history.clone())));
        }
        let verifications = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "verifications",
            "Verifications by outcome, error code and verdict",
            verifications.clone(),
        );
        // 50 µs … ~0.8 s.
        let verify_seconds =
            Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(0.000_05, 2.0, 15));
        registry.register("verify_seconds", "Time spent verifying one request", verify_seconds.clone());
        let store_errors = Counter::default();
        registry.register("replay_store_errors", "Replay store failures", store_errors.clone());
        let history_unavailable = Counter::default();
        registry.register(
            "history_unavailable",
            "Verifications answered without the account history",
            history_unavailable.clone(),
        );
        let challenges = Counter::default();
        registry.register("challenges_issued", "Challenges issued", challenges.clone());
        let challenges_limited = Counter::default();
        registry.register(
            "challenges_rate_limited",
            "Challenge requests refused by the per-IP limit",
            challenges_limited.clone(),
        );
        let rejected_requests = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "rejected_requests",
            "Verify requests refused before verification",
            rejected_requests.clone(),
        );
        Self {
            registry,
            verifications,
            verify_seconds,
            store_errors,
            history_unavailable,
            challenges,
            challenges_limited,
            rejected_requests,
        }
    }
}

impl Metrics {
    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

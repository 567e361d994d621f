//! Where "now" comes from. Verification takes `now` as an argument; servers
//! read it from a [`Clock`] so tests can move time instead of sleeping.

use std::sync::atomic::{AtomicI64, Ordering};

use jiff::Timestamp;

/// A source of the current time.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> Timestamp;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// The system clock shifted by an adjustable offset, for tests that need a
/// token to be older than it is.
#[derive(Debug, Default)]
pub struct ShiftedClock {
    offset_ms: AtomicI64,
}

impl ShiftedClock {
    /// Moves the clock forward by `ms` (negative: backward).
    pub fn advance_ms(&self, ms: i64) {
        self.offset_ms.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ShiftedClock {
    fn now(&self) -> Timestamp {
        let now = Timestamp::now().as_millisecond().saturating_add(self.offset_ms.load(Ordering::SeqCst));
        Timestamp::from_millisecond(now).unwrap_or(Timestamp::MAX)
    }
}

//! The browser's wall clock. The drop-in times the challenge request and
//! notes when it arrived; the verifier turns that into a skew interval whose
//! width is the round trip.

use js_sys::Date;

/// `Date.now()` as whole milliseconds.
pub fn wall_clock_ms() -> i64 {
    Date::now() as i64
}

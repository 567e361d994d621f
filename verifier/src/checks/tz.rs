//! Time-zone facts from the tz database (jiff's bundled copy), with the
//! zones Meridian looks at loaded once.

use std::collections::HashMap;
use std::sync::LazyLock;

use jiff::Timestamp;
use jiff::civil::Date;
use jiff::tz::TimeZone;

use crate::tables;

/// Every zone the tables name, loaded on first use so checks never parse
/// tz data on the hot path.
static ZONES: LazyLock<HashMap<&'static str, TimeZone>> = LazyLock::new(|| {
    tables::all_zones()
        .chain(
            tables::all_zones()
                .flat_map(tables::zone_countries)
                .flat_map(|c| tables::country_zones(c).iter().copied()),
        )
        .filter_map(|name| TimeZone::get(name).ok().map(|tz| (name, tz)))
        .collect()
});

/// Loads the zone cache now (at start-up) instead of on the first request.
pub fn preload() {
    LazyLock::force(&ZONES);
}

/// A zone by IANA name; `None` when the tz database does not know it.
pub fn zone(name: &str) -> Option<TimeZone> {
    if name.is_empty() || name.len() > 64 {
        return None;
    }
    match ZONES.get(name) {
        Some(tz) => Some(tz.clone()),
        None => TimeZone::get(name).ok(),
    }
}

/// UTC offset of `tz` at `at`, minutes east.
pub fn offset_min(tz: &TimeZone, at: Timestamp) -> i32 {
    tz.to_offset(at).seconds() / 60
}

/// UTC offset at local midnight of `month`/1 in the year `at` falls in, in
/// `tz` — what JavaScript's `new Date(year, month - 1, 1)` reports.
pub fn offset_on_first_of(tz: &TimeZone, at: Timestamp, month: i8) -> Option<i32> {
    let year = at.to_zoned_datetime(tz.clone()).year();
    let midnight = Date::new(year, month, 1).ok()?.to_zoned_datetime(tz.clone()).ok()?;
    Some(midnight.offset().seconds() / 60)
}

/// UTC offset at local midnight of a date in `tz`, seconds east.
pub fn offset_at_local_midnight(tz: &TimeZone, year: i16, month: i8, day: i8) -> Option<i32> {
    let midnight = Date::new(year, month, day).ok()?.to_zoned_datetime(tz.clone()).ok()?;
    Some(midnight.offset().seconds())
}

/// The offsets in use in `country` at `at`, minutes east, sorted, unique.
pub fn country_offsets(country: &str, at: Timestamp) -> Vec<i32> {
    let mut offsets: Vec<i32> = tables::country_zones(country)
        .iter()
        .filter_map(|name| zone(name))
        .map(|tz| offset_min(&tz, at))
        .collect();
    offsets.sort_unstable();
    offsets.dedup();
    offsets
}

/// `+08:00` / `−05:30`.
pub fn format_offset(minutes: i32) -> String {
    let sign = if minutes < 0 { '−' } else { '+' };
    let minutes = minutes.unsigned_abs();
    format!("{sign}{:02}:{:02}", minutes / 60, minutes % 60)
}

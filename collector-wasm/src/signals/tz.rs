//! Time-zone signals: the IANA zone Intl resolves and the UTC offsets `Date`
//! reports now and on 1 January / 1 July (the zone's DST pattern).

use alloc::string::String;

use js_sys::{Array, Date, Intl, Object, Reflect};
use meridian_protocol::TimeZoneClaims;
use wasm_bindgen::JsValue;

/// Reads the zone and offsets.
pub fn collect() -> TimeZoneClaims {
    let options = Intl::DateTimeFormat::new(&Array::new(), &Object::new()).resolved_options();
    let now = Date::new_0();
    let year = now.get_full_year();
    TimeZoneClaims {
        zone: string_property(&options, "timeZone"),
        offset_now_min: offset_east(&now),
        offset_jan_min: offset_east(&Date::new_with_year_month_day(year, 0, 1)),
        offset_jul_min: offset_east(&Date::new_with_year_month_day(year, 6, 1)),
    }
}

/// Minutes east of UTC, the negation of `getTimezoneOffset()`.
fn offset_east(date: &Date) -> i32 {
    let minutes = -date.get_timezone_offset();
    if minutes.is_finite() { libm::round(minutes) as i32 } else { 0 }
}

pub(crate) fn string_property(object: &Object, name: &str) -> String {
    Reflect::get(object, &JsValue::from_str(name)).ok().and_then(|v| v.as_string()).unwrap_or_default()
}

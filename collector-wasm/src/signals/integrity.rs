//! Signs that the page's time and language APIs were tampered with.
//!
//! Each API is stringified with a pristine `Function.prototype.toString` from
//! the collector's own fresh realm ([`super::realm`]; the page's own where
//! no frame can be made): a replaced function
//! shows its source, a Proxy loses its name, and a patched `toString`
//! cannot hide either because it is not the one asked. Own
//! properties that shadow the prototype's getters count too. Independent
//! readings of the offset — `Intl` formatting, `Date.prototype.toString` and
//! the 1880 local-mean-time offset — let the verifier catch a spoof that
//! only changed one of them.

use alloc::{borrow::ToOwned, vec::Vec};

use js_sys::{Array, Date, Function, Intl, Object, Reflect};
use meridian_protocol::IntegrityClaims;
use wasm_bindgen::{JsCast, JsValue};

use super::{get, global};

/// Functions whose stringification must be native: the name to report and
/// the path from the global object (the last step is the native name).
const FUNCTIONS: [(&str, &[&str]); 5] = [
    ("Intl.DateTimeFormat", &["Intl", "DateTimeFormat"]),
    (
        "Intl.DateTimeFormat.prototype.resolvedOptions",
        &["Intl", "DateTimeFormat", "prototype", "resolvedOptions"],
    ),
    (
        "Intl.DateTimeFormat.prototype.formatToParts",
        &["Intl", "DateTimeFormat", "prototype", "formatToParts"],
    ),
    ("Date.prototype.getTimezoneOffset", &["Date", "prototype", "getTimezoneOffset"]),
    ("Date.prototype.toString", &["Date", "prototype", "toString"]),
];

/// Reads the integrity signals, stringifying with the pristine realm's
/// `Function.prototype.toString` and `Date.prototype.toString`.
pub fn collect(to_string: &Function, date_to_string: &Function) -> IntegrityClaims {
    let g = global();
    let mut non_native = Vec::new();
    let native_at = |path: &[&str]| {
        let value = path.iter().fold(g.clone().into(), |at: JsValue, step| get(&at, step));
        let native_name = path.last().copied().unwrap_or_default();
        value.dyn_ref::<Function>().is_some_and(|f| is_native(to_string, f, native_name))
    };
    for (name, path) in FUNCTIONS {
        if !native_at(path) {
            non_native.push(name.to_owned());
        }
    }
    // The language getters live on Navigator.prototype (WorkerNavigator in a worker).
    let navigator_class = if get(&g, "Navigator").is_undefined() { "WorkerNavigator" } else { "Navigator" };
    let navigator_proto = get(&get(&g, navigator_class), "prototype");
    let navigator = get(&g, "navigator");
    for (property, name, own) in [
        ("language", "navigator.language", "navigator.language (own property)"),
        ("languages", "navigator.languages", "navigator.languages (own property)"),
    ] {
        let key = JsValue::from_str(property);
        let getter =
            get(&Object::get_own_property_descriptor(navigator_proto.unchecked_ref::<Object>(), &key), "get");
        if getter.dyn_ref::<Function>().is_none_or(|f| !is_native(to_string, f, property)) {
            non_native.push(name.to_owned());
        }
        if !Object::get_own_property_descriptor(navigator.unchecked_ref::<Object>(), &key).is_undefined() {
            non_native.push(own.to_owned());
        }
    }
    if !native_at(&["Function", "prototype", "toString"]) {
        non_native.push("Function.prototype.toString".to_owned());
    }
    let now = Date::new_0();
    IntegrityClaims {
        webdriver: get(&navigator, "webdriver").as_bool().unwrap_or(false),
        non_native,
        historical_offset_s: {
            let minutes = -Date::new_with_year_month_day(1880, 0, 1).get_timezone_offset();
            if minutes.is_finite() { libm::round(minutes * 60.0) as i32 } else { 0 }
        },
        intl_offset_min: intl_offset(&now),
        string_offset_min: date_to_string
            .apply(&now, &Array::new())
            .ok()
            .and_then(|text| text.as_string())
            .and_then(|text| parse_gmt_offset(&text)),
    }
}

/// Whether `function` stringifies as a native function named `name` and
/// has no `prototype` of its own (constructors aside).
fn is_native(to_string: &Function, function: &Function, name: &str) -> bool {
    let Some(text) = to_string.apply(function, &Array::new()).ok().and_then(|t| t.as_string()) else {
        return false;
    };
    let is_constructor = name == "DateTimeFormat";
    // WebKit prints a bound function with its target's name; its `name`
    // still says `bound …`.
    let own_name = get(function, "name").as_string().unwrap_or_default();
    let named = own_name == name || own_name.strip_prefix("get ") == Some(name);
    // `has`, not a read: a replaced function whose `prototype` was set to
    // `undefined` still has one.
    named
        && prints_as_native(&text, name)
        && (is_constructor || !Reflect::has(function, &"prototype".into()).unwrap_or(true))
}

/// Whether `text` is the source every engine prints for a native function
/// named `name`, whitespace aside: Chromium writes
/// `function get language() { [native code] }` on one line, Firefox and
/// WebKit `function language() {⏎    [native code]⏎}` — the same tokens,
/// other spacing, and a getter without its `get `. A replaced function
/// prints its own body, a Proxy or bound function another name.
pub(crate) fn prints_as_native(text: &str, name: &str) -> bool {
    // Compared token by token, spaces kept: `{[nativecode]}` is a valid
    // function body a page could write, `{ [native code] }` is not.
    let mut tokens = text.split_ascii_whitespace();
    if tokens.next() != Some("function") {
        return false;
    }
    let mut head = tokens.next();
    if head == Some("get") {
        head = tokens.next();
    }
    head.and_then(|h| h.strip_prefix(name)) == Some("()") && tokens.eq(["{", "[native", "code]", "}"])
}

/// Offset now by formatting the instant with Intl (wall clock minus UTC).
fn intl_offset(now: &Date) -> i32 {
    let options = Object::new();
    for (key, value) in [
        ("hourCycle", "h23"),
        ("year", "numeric"),
        ("month", "numeric"),
        ("day", "numeric"),
        ("hour", "numeric"),
        ("minute", "numeric"),
        ("second", "numeric"),
    ] {
        let _ = Reflect::set(&options, &key.into(), &value.into());
    }
    let locales = Array::of1(&"en-US".into());
    let parts = Intl::DateTimeFormat::new(&locales, &options).format_to_parts(now);
    let mut fields = [0f64; 6];
    for part in parts.iter() {
        let kind = get(&part, "type").as_string().unwrap_or_default();
        let value = f64::from(get(&part, "value").as_string().and_then(|v| digits(&v)).unwrap_or(0));
        let slot = match kind.as_str() {
            "year" => 0,
            "month" => 1,
            "day" => 2,
            "hour" => 3,
            "minute" => 4,
            "second" => 5,
            _ => continue,
        };
        fields[slot] = value;
    }
    let wall = Date::utc(fields[0], fields[1] - 1.0)
        + ((fields[2] - 1.0) * 86_400.0 + fields[3] * 3_600.0 + fields[4] * 60.0 + fields[5]) * 1000.0;
    let instant = libm::floor(now.get_time() / 1000.0) * 1000.0;
    let minutes = libm::round((wall - instant) / 60_000.0);
    if minutes.is_finite() { minutes as i32 } else { 0 }
}

/// `GMT+0800` → 480, `GMT-0330` → −210.
fn parse_gmt_offset(text: &str) -> Option<i32> {
    // A byte scan: `str::find` would pull a substring searcher into the wasm.
    let at = text.as_bytes().windows(3).position(|w| w == b"GMT")? + 3;
    let rest = text.get(at..at + 5)?;
    let sign = match rest.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let hours = digits(rest.get(1..3)?)?;
    let minutes = digits(rest.get(3..5)?)?;
    Some(sign * (hours * 60 + minutes))
}

/// An unsigned decimal of at most nine digits (`str::parse` is several
/// times the size in the wasm and allows signs Intl never writes).
fn digits(text: &str) -> Option<i32> {
    if text.is_empty() || text.len() > 9 {
        return None;
    }
    text.bytes().try_fold(0i32, |value, b| b.is_ascii_digit().then(|| value * 10 + i32::from(b - b'0')))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail by panicking")]
mod tests {
    use super::*;

    #[test]
    fn native_source_in_every_engine() {
        // Chromium, one line; getters keep their `get `.
        assert!(prints_as_native("function getTimezoneOffset() { [native code] }", "getTimezoneOffset"));
        assert!(prints_as_native("function get language() { [native code] }", "language"));
        // Firefox and WebKit: several lines, getters without `get `.
        assert!(prints_as_native("function resolvedOptions() {\n    [native code]\n}", "resolvedOptions"));
        assert!(prints_as_native("function languages() {\n    [native code]\n}", "languages"));
        assert!(prints_as_native("function DateTimeFormat() {\n    [native code]\n}", "DateTimeFormat"));
    }

    #[test]
    fn replaced_functions_are_not_native() {
        for text in [
            // Page functions print their source; these are valid JavaScript.
            "function resolvedOptions() {[nativecode]}",
            "function resolvedOptions() { [native/**/code] }",
            "resolvedOptions() { return o; }",
            "() => 0",
            // A Proxy or bound function loses or changes the name.
            "function () { [native code] }",
            "function bound resolvedOptions() {\n    [native code]\n}",
            // Another function's name.
            "function formatToParts() { [native code] }",
            "function resolvedOptionsX() { [native code] }",
            "function resolvedOptions() { [native code] } x",
            "",
        ] {
            assert!(!prints_as_native(text, "resolvedOptions"), "{text:?}");
        }
    }

    #[test]
    fn getters_and_whitespace() {
        // A getter's `get ` is optional; its name must still be the whole name.
        assert!(prints_as_native("function languages() { [native code] }", "languages"));
        assert!(!prints_as_native("function get languages() { [native code] }", "language"));
        assert!(!prints_as_native("function getlanguage() { [native code] }", "language"));
        assert!(!prints_as_native("function get get language() { [native code] }", "language"));
        // A function really named `get` is not mistaken for a getter prefix.
        assert!(prints_as_native("function get() { [native code] }", "get"));
        // Any ASCII whitespace between the tokens, as engines print it.
        assert!(prints_as_native("function toString() {\r\n\t[native code]\r\n}\n", "toString"));
        assert!(prints_as_native("  function  toString()  {  [native  code]  }  ", "toString"));
        // No engine prints other whitespace; a page's source could.
        assert!(!prints_as_native("function\u{a0}toString() { [native code] }", "toString"));
        assert!(!prints_as_native("function toString() {\u{2003}[native code] }", "toString"));
    }

    #[test]
    fn other_function_kinds_are_not_native() {
        for text in [
            "async function toString() { [native code] }",
            "function* toString() { [native code] }",
            "function *toString() { [native code] }",
            "class toString { [native code] }",
            "toString() { [native code] }",
            "function toString(a) { [native code] }",
            "function toString() { [native code]; }",
            "function toString() { [native code] } }",
            "function toString() {",
            "function",
        ] {
            assert!(!prints_as_native(text, "toString"), "{text:?}");
        }
    }

    #[test]
    fn offsets_printed_by_date() {
        assert_eq!(parse_gmt_offset("Tue Dec 01 2026 09:00:00 GMT+0800 (China Standard Time)"), Some(480));
        assert_eq!(parse_gmt_offset("Tue Dec 01 2026 09:00:00 GMT-0330 (Newfoundland)"), Some(-210));
        assert_eq!(parse_gmt_offset("Tue Dec 01 2026 09:00:00 GMT+01"), None);
        assert_eq!(parse_gmt_offset("no offset"), None);
        assert_eq!(digits("0480"), Some(480));
        assert_eq!(digits("+1"), None);
        assert_eq!(digits(""), None);
    }

    #[test]
    fn offsets_at_the_ends_of_the_range() {
        // UTC either way, Nepal's quarter hour, Kiribati and Baker Island.
        assert_eq!(
            parse_gmt_offset("Thu Jan 15 2027 08:00:00 GMT+0000 (Coordinated Universal Time)"),
            Some(0)
        );
        assert_eq!(parse_gmt_offset("Thu Jan 15 2027 08:00:00 GMT-0000"), Some(0));
        assert_eq!(parse_gmt_offset("Thu Jan 15 2027 13:45:00 GMT+0545 (Nepal Time)"), Some(345));
        assert_eq!(parse_gmt_offset("Thu Jan 15 2027 22:00:00 GMT+1400 (Line Islands Time)"), Some(840));
        assert_eq!(parse_gmt_offset("Wed Jan 14 2027 20:00:00 GMT-1200"), Some(-720));
        // Firefox and WebKit name the zone in the user's language.
        assert_eq!(
            parse_gmt_offset("Do Jan 15 2027 09:00:00 GMT+0100 (Mitteleuropäische Normalzeit)"),
            Some(60)
        );
        // Only the first `GMT` counts: the name in parentheses may hold another.
        assert_eq!(parse_gmt_offset("Thu Jan 15 2027 09:00:00 GMT+0100 (GMT+01:00)"), Some(60));
    }

    #[test]
    fn offsets_not_printed_as_date_prints_them() {
        for text in [
            "Thu Jan 15 2027 09:00:00 GMT+01:00",
            "Thu Jan 15 2027 09:00:00 GMT+08",
            "Thu Jan 15 2027 09:00:00 GMT",
            "Thu Jan 15 2027 09:00:00 GMT 0800",
            "Thu Jan 15 2027 09:00:00 gmt+0800",
            "Thu Jan 15 2027 09:00:00 UTC+0800",
            "Thu Jan 15 2027 09:00:00 GMT+08a0",
            "Thu Jan 15 2027 09:00:00 GMT+\u{663}\u{660}00",
        ] {
            assert_eq!(parse_gmt_offset(text), None, "{text:?}");
        }
    }

    #[test]
    fn text_after_gmt_is_sliced_only_at_character_boundaries() {
        // Multi-byte characters where the five bytes after `GMT` end: no
        // panic, no offset.
        for text in ["GMT+08é", "GMT+0é", "GMT+08€", "GMT€0800", "GMT+", "GMTé"] {
            assert_eq!(parse_gmt_offset(text), None, "{text:?}");
        }
    }

    #[test]
    fn digits_are_ascii_and_at_most_nine() {
        assert_eq!(digits("0"), Some(0));
        assert_eq!(digits("999999999"), Some(999_999_999));
        assert_eq!(digits("1234567890"), None);
        assert_eq!(digits("12a"), None);
        assert_eq!(digits("-1"), None);
        assert_eq!(digits(" 1"), None);
        // Other scripts' digits are not Intl's `latn` digits.
        assert_eq!(digits("\u{663}"), None);
        assert_eq!(digits("\u{ff11}"), None);
    }
}

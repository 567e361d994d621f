//! Signs that the page's time and language APIs were tampered with.
//!
//! Each API is stringified with a pristine `Function.prototype.toString` from
//! a fresh same-origin iframe (falling back to the page's own): a replaced
//! function shows its source, a Proxy loses its name, and a patched
//! `toString` cannot hide either because it is not the one asked. Own
//! properties that shadow the prototype's getters count too. Independent
//! readings of the offset — `Intl` formatting, `Date.prototype.toString` and
//! the 1880 local-mean-time offset — let the verifier catch a spoof that
//! only changed one of them.

use std::cell::RefCell;

use js_sys::{Array, Date, Function, Intl, Object, Reflect};
use meridian_protocol::IntegrityClaims;
use wasm_bindgen::{JsCast, JsValue};

use super::{get, global};

thread_local! {
    /// `Function.prototype.toString` and `Date.prototype.toString` of a fresh realm.
    static PRISTINE: RefCell<Option<(Function, Function)>> = const { RefCell::new(None) };
}

/// Reads the integrity signals.
pub fn collect() -> IntegrityClaims {
    let (to_string, date_to_string) = pristine();
    let mut non_native = Vec::new();
    for (name, expected, function) in targets() {
        let native = function.as_ref().is_some_and(|f| is_native(&to_string, f, expected));
        if !native {
            non_native.push(name.to_owned());
        }
    }
    let page_to_string = get(&get(&get(&global(), "Function"), "prototype"), "toString");
    if page_to_string.dyn_ref::<Function>().is_none_or(|f| !is_native(&to_string, f, "toString")) {
        non_native.push("Function.prototype.toString".to_owned());
    }
    let navigator = get(&global(), "navigator");
    for property in ["language", "languages"] {
        if Object::get_own_property_descriptor(
            navigator.unchecked_ref::<Object>(),
            &JsValue::from_str(property),
        )
        .is_truthy()
        {
            non_native.push(format!("navigator.{property} (own property)"));
        }
    }
    let now = Date::new_0();
    IntegrityClaims {
        webdriver: get(&navigator, "webdriver").as_bool().unwrap_or(false),
        non_native,
        historical_offset_s: {
            let minutes = -Date::new_with_year_month_day(1880, 0, 1).get_timezone_offset();
            if minutes.is_finite() { (minutes * 60.0).round() as i32 } else { 0 }
        },
        intl_offset_min: intl_offset(&now),
        string_offset_min: date_to_string
            .call0(&now)
            .ok()
            .and_then(|text| text.as_string())
            .and_then(|text| parse_gmt_offset(&text)),
    }
}

/// The functions to check, with the name a native one reports.
fn targets() -> Vec<(&'static str, &'static str, Option<Function>)> {
    let g = global();
    let dtf = get(&get(&g, "Intl"), "DateTimeFormat");
    let dtf_proto = get(&dtf, "prototype");
    let date_proto = get(&get(&g, "Date"), "prototype");
    let navigator_proto = get(&get(&g, "Navigator"), "prototype");
    let worker_navigator_proto = get(&get(&g, "WorkerNavigator"), "prototype");
    let getter = |name: &str| {
        let proto = if navigator_proto.is_undefined() { &worker_navigator_proto } else { &navigator_proto };
        let descriptor =
            Object::get_own_property_descriptor(proto.unchecked_ref::<Object>(), &JsValue::from_str(name));
        get(&descriptor, "get").dyn_into::<Function>().ok()
    };
    vec![
        ("Intl.DateTimeFormat", "DateTimeFormat", dtf.dyn_into().ok()),
        (
            "Intl.DateTimeFormat.prototype.resolvedOptions",
            "resolvedOptions",
            get(&dtf_proto, "resolvedOptions").dyn_into().ok(),
        ),
        (
            "Intl.DateTimeFormat.prototype.formatToParts",
            "formatToParts",
            get(&dtf_proto, "formatToParts").dyn_into().ok(),
        ),
        (
            "Date.prototype.getTimezoneOffset",
            "getTimezoneOffset",
            get(&date_proto, "getTimezoneOffset").dyn_into().ok(),
        ),
        ("Date.prototype.toString", "toString", get(&date_proto, "toString").dyn_into().ok()),
        ("navigator.language", "get language", getter("language")),
        ("navigator.languages", "get languages", getter("languages")),
    ]
}

/// Whether `function` stringifies exactly as a native function named `name`
/// and has no `prototype` of its own (constructors aside).
fn is_native(to_string: &Function, function: &Function, name: &str) -> bool {
    let Some(text) = to_string.call0(function).ok().and_then(|t| t.as_string()) else { return false };
    let expected = format!("function {name}() {{ [native code] }}");
    let is_constructor = name == "DateTimeFormat";
    text == expected && (is_constructor || !Reflect::has(function, &"prototype".into()).unwrap_or(true))
}

/// The pristine `toString`s, made once per page.
fn pristine() -> (Function, Function) {
    PRISTINE.with(|cell| {
        if let Some(pair) = cell.borrow().as_ref() {
            return pair.clone();
        }
        let pair = fresh_realm().unwrap_or_else(|| {
            let g = global();
            (
                get(&get(&get(&g, "Function"), "prototype"), "toString").unchecked_into(),
                get(&get(&get(&g, "Date"), "prototype"), "toString").unchecked_into(),
            )
        });
        *cell.borrow_mut() = Some(pair.clone());
        pair
    })
}

/// `toString`s from a hidden same-origin iframe; `None` in a worker or when
/// the page forbids iframes.
fn fresh_realm() -> Option<(Function, Function)> {
    let document = get(&global(), "document");
    if document.is_undefined() {
        return None;
    }
    let iframe = call(&document, "createElement", &["iframe".into()])?;
    let _ = Reflect::set(&iframe, &"hidden".into(), &JsValue::TRUE);
    let parent = get(&document, "documentElement");
    call(&parent, "appendChild", std::slice::from_ref(&iframe))?;
    let realm = get(&iframe, "contentWindow");
    let pair = (
        get(&get(&get(&realm, "Function"), "prototype"), "toString").dyn_into::<Function>().ok(),
        get(&get(&get(&realm, "Date"), "prototype"), "toString").dyn_into::<Function>().ok(),
    );
    let _ = call(&iframe, "remove", &[]);
    match pair {
        (Some(a), Some(b)) => Some((a, b)),
        _ => None,
    }
}

fn call(target: &JsValue, method: &str, args: &[JsValue]) -> Option<JsValue> {
    let function: Function = get(target, method).dyn_into().ok()?;
    let args: Array = args.iter().collect();
    Reflect::apply(&function, target, &args).ok()
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
        let value =
            f64::from(get(&part, "value").as_string().and_then(|v| v.parse::<i32>().ok()).unwrap_or(0));
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
    let instant = (now.get_time() / 1000.0).floor() * 1000.0;
    let minutes = ((wall - instant) / 60_000.0).round();
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
    let hours: i32 = rest.get(1..3)?.parse().ok()?;
    let minutes: i32 = rest.get(3..5)?.parse().ok()?;
    Some(sign * (hours * 60 + minutes))
}

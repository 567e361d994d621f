//! The zone and languages as a dedicated Worker sees them. Spoofing
//! extensions usually patch only the page's main world, so a Worker the
//! collector starts from its own realm ([`super::realm`]) reports the
//! browser's real values; this module reads its report.

use js_sys::Array;
use meridian_protocol::ScopeClaims;
use wasm_bindgen::{JsCast, JsValue};

use super::get;

/// The Worker's report `{zone, off, locale, languages}`, or `None` when no
/// Worker could run or it did not answer in time.
pub fn from_report(report: &JsValue) -> Option<ScopeClaims> {
    let zone = get(report, "zone").as_string()?;
    Some(ScopeClaims {
        zone,
        offset_now_min: get(report, "off")
            .as_f64()
            .filter(|v| v.is_finite())
            .map_or(0, |v| libm::round(v) as i32),
        locale: get(report, "locale").as_string().unwrap_or_default(),
        languages: get(report, "languages")
            .dyn_into::<Array>()
            .map(|list| list.iter().filter_map(|v| v.as_string()).take(16).collect())
            .unwrap_or_default(),
    })
}

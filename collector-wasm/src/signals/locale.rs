//! Locale signals: Intl's resolved locale, calendar, numbering system and
//! hour cycle, and `navigator.language(s)`.

use js_sys::{Array, Intl, Object, Reflect};
use meridian_protocol::LocaleClaims;
use wasm_bindgen::JsValue;

use super::tz::string_property;

/// Reads the locale and language preferences.
pub fn collect() -> LocaleClaims {
    let options = Intl::DateTimeFormat::new(&Array::new(), &Object::new()).resolved_options();
    // `hourCycle` is resolved only when the format shows hours.
    let with_hours = Object::new();
    let _ = Reflect::set(&with_hours, &JsValue::from_str("hour"), &JsValue::from_str("numeric"));
    let hour_options = Intl::DateTimeFormat::new(&Array::new(), &with_hours).resolved_options();
    let (language, languages) = super::navigator_languages();
    LocaleClaims {
        locale: string_property(&options, "locale"),
        calendar: string_property(&options, "calendar"),
        numbering: string_property(&options, "numberingSystem"),
        hour_cycle: string_property(&hour_options, "hourCycle"),
        language,
        languages,
    }
}

//! The signals a collector reads, one module per concern.

pub mod clock;
pub mod integrity;
pub mod locale;
pub mod realm;
pub mod tz;
pub mod worker;

use alloc::{string::String, vec::Vec};

use js_sys::Reflect;
use wasm_bindgen::{JsCast, JsValue, prelude::wasm_bindgen};

/// `location.origin` of the page (or worker) running the collector.
pub fn page_origin() -> String {
    let global = global();
    Reflect::get(&global, &JsValue::from_str("location"))
        .and_then(|location| Reflect::get(&location, &JsValue::from_str("origin")))
        .ok()
        .and_then(|origin| origin.as_string())
        .unwrap_or_default()
}

/// The global scope's `navigator`, in a window or a worker.
pub(crate) fn navigator_languages() -> (String, Vec<String>) {
    let global = global();
    let Ok(navigator) = Reflect::get(&global, &JsValue::from_str("navigator")) else {
        return (String::new(), Vec::new());
    };
    let language = Reflect::get(&navigator, &JsValue::from_str("language"))
        .ok()
        .and_then(|v| v.as_string())
        .unwrap_or_default();
    let languages = Reflect::get(&navigator, &JsValue::from_str("languages"))
        .ok()
        .and_then(|v| v.dyn_into::<js_sys::Array>().ok())
        .map(|list| list.iter().filter_map(|v| v.as_string()).take(16).collect())
        .unwrap_or_default();
    (language, languages)
}

#[wasm_bindgen]
extern "C" {
    /// The `globalThis` binding, as a namespace to read from.
    #[wasm_bindgen(js_name = globalThis)]
    type GlobalThis;

    /// `globalThis.globalThis`, the global object's reference to itself.
    /// A plain import: `js_sys::global()` caches its answer in a lazy static
    /// whose initialiser is an indirect call, which keeps a function table —
    /// and through it the formatting machinery — in the wasm.
    #[wasm_bindgen(static_method_of = GlobalThis, js_class = "globalThis", getter = globalThis)]
    fn global_this() -> js_sys::Object;
}

/// The global object: `window` on a page, `self` in a worker.
pub(crate) fn global() -> js_sys::Object {
    GlobalThis::global_this()
}

/// `target[name](...args)`, called through that function's own `apply`
/// (one import for every arity, and the target realm's own `apply`), or
/// `None` when it is not a function or throws.
pub(crate) fn call(target: &JsValue, name: &str, args: &js_sys::Array) -> Option<JsValue> {
    get(target, name).dyn_into::<js_sys::Function>().ok()?.apply(target, args).ok()
}

/// `target[name]`, or `undefined` when it cannot be read.
pub fn get(target: &JsValue, name: &str) -> JsValue {
    // Primitives have nothing to read here (and `Reflect.get` throws on them).
    if !target.is_object() && !target.is_function() {
        return JsValue::UNDEFINED;
    }
    Reflect::get(target, &JsValue::from_str(name)).unwrap_or(JsValue::UNDEFINED)
}

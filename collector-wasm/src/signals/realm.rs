//! A fresh JavaScript realm, made by the collector itself: a hidden,
//! same-origin `about:blank` iframe whose globals no page script has
//! touched. The collector reads the clock, times the challenge request,
//! stringifies the page's functions and starts its Worker through it, so a
//! page that patched its own `Date`, `performance`, `Function.prototype
//! .toString` or `Worker` changes nothing the token says — it would have to
//! reach into the collector's frame before the collector does.
//!
//! The frame stays in the document (hidden, out of the tab order and the
//! accessibility tree): some engines cut a removed frame's functions off
//! ("dead object"), and its Worker with it. Where no frame can be made (a
//! worker, a document without a body) the page's own globals are used.

use js_sys::{Array, Function, Object, Reflect};
use wasm_bindgen::{JsCast, JsValue};

use super::{call, get, global};

/// The Worker's script: one report of what it sees, then it closes.
const WORKER_SCRIPT: &str = "const o=Intl.DateTimeFormat().resolvedOptions();\
postMessage({zone:o.timeZone,off:-new Date().getTimezoneOffset(),locale:o.locale,\
languages:Array.from(self.navigator&&navigator.languages||[])});close();";

/// The realm's global object.
#[derive(Debug)]
pub struct Realm {
    global: Object,
}

impl Realm {
    /// A fresh realm when a document can host one, else the page's own.
    pub fn fresh() -> Self {
        Self { global: frame_global().unwrap_or_else(global) }
    }

    /// `globalThis[name]` of the realm.
    pub fn get(&self, name: &str) -> JsValue {
        get(&self.global, name)
    }

    /// `performance.now()`, milliseconds.
    pub fn monotonic_ms(&self) -> f64 {
        call_method(&self.get("performance"), "now").as_f64().unwrap_or(f64::NAN)
    }

    /// `Date.now()`, milliseconds since the epoch.
    pub fn wall_clock_ms(&self) -> f64 {
        call_method(&self.get("Date"), "now").as_f64().unwrap_or(f64::NAN)
    }

    /// `Function.prototype.toString` and `Date.prototype.toString`.
    pub fn to_strings(&self) -> (Function, Function) {
        let method = |class: &str| {
            get(&get(&self.get(class), "prototype"), "toString").dyn_into::<Function>().unwrap_or_else(|_| {
                get(&get(&get(&global(), class), "prototype"), "toString").unchecked_into()
            })
        };
        (method("Function"), method("Date"))
    }

    /// `new globalThis[class](...args)` of the realm, or `None`.
    pub fn construct(&self, class: &str, args: &Array) -> Option<JsValue> {
        let constructor = self.get(class).dyn_into::<Function>().ok()?;
        Reflect::construct(&constructor, args).ok()
    }

    /// Starts a dedicated Worker from a Blob URL; its one message lands in
    /// the returned `Map` under `"report"` (the handler is the realm's own
    /// `Map.prototype.set`, bound: no page function is ever called with
    /// it). `None` where Workers are unavailable or forbidden.
    pub fn start_worker(&self) -> Option<Object> {
        let options = Object::new();
        Reflect::set(&options, &"type".into(), &"text/javascript".into()).ok()?;
        let blob = self.construct("Blob", &Array::of2(&Array::of1(&WORKER_SCRIPT.into()), &options))?;
        let url_class = self.get("URL");
        let url = call(&url_class, "createObjectURL", &Array::of1(&blob))?;
        let worker = self.construct("Worker", &Array::of1(&url));
        let _ = call(&url_class, "revokeObjectURL", &Array::of1(&url));
        let worker = worker?;
        let inbox = self.construct("Map", &Array::new())?;
        let set = get(&inbox, "set");
        // `set.bind(inbox, "report")`, called through `apply`: js-sys's typed
        // `bind1` brings closure glue (and with it `core::fmt`) into the wasm.
        let handler = call(&set, "bind", &Array::of2(&inbox, &"report".into()))?;
        Reflect::set(&worker, &"onmessage".into(), &handler).ok()?;
        // Objects of another realm fail `instanceof Object` here: check the type, not the class.
        inbox.is_object().then(|| inbox.unchecked_into())
    }
}

/// The report a Worker left in its inbox, if it has answered.
pub fn worker_report(inbox: &Object) -> JsValue {
    let message = call(inbox, "get", &Array::of1(&"report".into())).unwrap_or(JsValue::UNDEFINED);
    get(&message, "data")
}

/// `target[name]()`, or `undefined`.
fn call_method(target: &JsValue, name: &str) -> JsValue {
    call(target, name, &Array::new()).unwrap_or(JsValue::UNDEFINED)
}

/// The global object of a new hidden iframe, if a document can host one.
fn frame_global() -> Option<Object> {
    let document = get(&global(), "document");
    let frame = call(&document, "createElement", &Array::of1(&"iframe".into()))?;
    for (name, value) in [("hidden", JsValue::TRUE), ("tabIndex", JsValue::from(-1))] {
        Reflect::set(&frame, &name.into(), &value).ok()?;
    }
    let _ = call(&frame, "setAttribute", &Array::of2(&"aria-hidden".into(), &"true".into()));
    call(&get(&document, "documentElement"), "append", &Array::of1(&frame))?;
    // A WindowProxy of another realm: `instanceof Object` is false here.
    let window = get(&frame, "contentWindow");
    window.is_object().then(|| window.unchecked_into())
}

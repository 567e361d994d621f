//! The zone and languages as a dedicated Worker sees them. Spoofing
//! extensions usually patch only the page's main world, so a Worker started
//! here reports the browser's real values.

use std::cell::RefCell;

use js_sys::{Array, Function, Object, Promise, Reflect};
use meridian_protocol::ScopeClaims;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

use super::{get, global};

/// Runs in the Worker: reads the signals and posts them back.
const SCRIPT: &str = "const o=Intl.DateTimeFormat().resolvedOptions();\
postMessage({zone:o.timeZone,off:-new Date().getTimezoneOffset(),locale:o.locale,\
languages:Array.from(self.navigator&&navigator.languages||[])});close();";

/// How long to wait for the Worker before calling it unavailable.
const TIMEOUT_MS: i32 = 1_000;

thread_local! {
    /// The Worker's answer for this page: started once (when the module
    /// loads), awaited by every collection. Zone and languages do not change
    /// while a page is open, and a Worker per collection would cost more
    /// than the whole rest of it.
    static ANSWER: RefCell<Option<Promise>> = const { RefCell::new(None) };
}

/// Starts the Worker if it has not been started in this page yet.
pub fn prime() {
    ANSWER.with(|cell| {
        if cell.borrow().is_none() {
            *cell.borrow_mut() = start();
        }
    });
}

/// Starts the Worker; `None` when no Worker can run here (CSP, sandbox,
/// already inside a worker). The promise resolves with the message event,
/// the error event, or `undefined` on timeout.
fn start() -> Option<Promise> {
    let g = global();
    let worker_class: Function = get(&g, "Worker").dyn_into().ok()?;
    let blob_class: Function = get(&g, "Blob").dyn_into().ok()?;
    let url_class = get(&g, "URL");
    let options = Object::new();
    let _ = Reflect::set(&options, &"type".into(), &"text/javascript".into());
    let blob = Reflect::construct(&blob_class, &Array::of2(&Array::of1(&SCRIPT.into()), &options)).ok()?;
    let create_url: Function = get(&url_class, "createObjectURL").dyn_into().ok()?;
    let url = create_url.call1(&url_class, &blob).ok()?;
    let worker = Reflect::construct(&worker_class, &Array::of1(&url));
    if let Ok(revoke) = get(&url_class, "revokeObjectURL").dyn_into::<Function>() {
        let _ = revoke.call1(&url_class, &url);
    }
    let worker = worker.ok()?;
    let set_timeout: Function = get(&g, "setTimeout").dyn_into().ok()?;
    Some(Promise::new(&mut |resolve: Function, _reject: Function| {
        let _ = Reflect::set(&worker, &"onmessage".into(), &resolve);
        let _ = Reflect::set(&worker, &"onerror".into(), &resolve);
        let _ = set_timeout.call2(&g, &resolve, &TIMEOUT_MS.into());
    }))
}

/// The Worker's view, or `None` when no Worker could run or it did not
/// answer in time.
pub async fn collect() -> Option<ScopeClaims> {
    prime();
    let answer = ANSWER.with(|cell| cell.borrow().clone())?;
    let event = JsFuture::from(answer).await.ok()?;
    let data = get(&event, "data");
    let zone = get(&data, "zone").as_string()?;
    Some(ScopeClaims {
        zone,
        offset_now_min: get(&data, "off").as_f64().filter(|v| v.is_finite()).map_or(0, |v| v.round() as i32),
        locale: get(&data, "locale").as_string().unwrap_or_default(),
        languages: get(&data, "languages")
            .dyn_into::<Array>()
            .map(|list| list.iter().filter_map(|v| v.as_string()).take(16).collect())
            .unwrap_or_default(),
    })
}

//! The collector's files as a login page fetches them from `/pkg/`: brotli
//! where the browser accepts it, else gzip, else as built — the same bytes
//! `scripts/build-collector` wrote and measured, with `Vary:
//! Accept-Encoding` so that no cache hands one encoding to a browser that
//! asked for another.

#![allow(clippy::panic, reason = "tests fail by panicking")]

use meridian_tests::{meridian_home, start_demo};

/// What a page downloads: the drop-in, the glue and the module, and the
/// wasm-signer fallback.
const SHIPPED: [(&str, &str); 5] = [
    ("meridian.js", "text/javascript"),
    ("meridian_collector.js", "text/javascript"),
    ("meridian_collector_bg.wasm", "application/wasm"),
    ("meridian_collector_fallback.js", "text/javascript"),
    ("meridian_collector_fallback_bg.wasm", "application/wasm"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_file_is_served_in_the_encoding_the_browser_accepts() {
    let demo = start_demo().await;
    let pkg = meridian_home().join("pkg");
    let client = reqwest::Client::new();
    for (file, media_type) in SHIPPED {
        for (accept, encoding, suffix) in
            [("br, gzip", Some("br"), ".br"), ("gzip", Some("gzip"), ".gz"), ("identity", None, "")]
        {
            let response = client
                .get(format!("{}/pkg/{file}", demo.origin))
                .header("accept-encoding", accept)
                .send()
                .await
                .unwrap_or_else(|e| panic!("{file}: {e}"));
            assert_eq!(response.status(), 200, "{file} ({accept})");
            let header = |name: &str| {
                response.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
            };
            assert_eq!(header("content-encoding"), encoding.unwrap_or_default(), "{file} ({accept})");
            assert!(header("content-type").starts_with(media_type), "{file}: {}", header("content-type"));
            assert!(header("vary").to_ascii_lowercase().contains("accept-encoding"), "{file}: no Vary");
            let body = response.bytes().await.unwrap_or_else(|e| panic!("{file}: {e}"));
            let path = pkg.join(format!("{file}{suffix}"));
            let built = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(body == built, "{file} ({accept}): not the bytes of {}", path.display());
        }
    }
}

/// The demo's sign-in page names the signer on its script tag only for
/// `?signer=wasm`; a query that does not parse still gets the page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sign_in_page_takes_any_query() {
    let demo = start_demo().await;
    for (query, wasm) in
        [("", false), ("?signer=wasm", true), ("?signer=other", false), ("?signer=wasm&signer=wasm", false)]
    {
        let response =
            reqwest::get(format!("{}/{query}", demo.origin)).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(response.status(), 200, "{query}");
        let page = response.text().await.unwrap_or_default();
        assert_eq!(page.contains(r#"data-signer="wasm""#), wasm, "{query}: {page}");
    }
}

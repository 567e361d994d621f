//! The drop-in on a page of another origin: the page at one port embeds
//! `meridian.js` from the verifier at another, fetches challenges across
//! origins (CORS), and its own backend verifies the token over HTTP.

#![allow(clippy::unwrap_used, reason = "tests fail by panicking")]

use std::net::SocketAddr;

use axum::Router;
use axum::extract::{ConnectInfo, Form, State};
use axum::response::Html;
use axum::routing::get;
use meridian_tests::{BrowserOptions, site_listener, start_browser, start_verifier, verify};

#[derive(Clone)]
struct Shop {
    origin: String,
    verifier: String,
}

async fn page(State(shop): State<Shop>) -> Html<String> {
    // Configured on the script tag: the action (checked by the backend),
    // and the forms to attach.
    Html(format!(
        r#"<!doctype html><meta charset="utf-8"><title>Shop</title>
<form method="post" action="/login" class="sign-in">
  <input name="email" value="ada@example.com"><button id="sign-in">Sign in</button>
</form>
<script type="module" src="{}/pkg/meridian.js" data-action="shop-login" data-forms="form.sign-in"></script>"#,
        shop.verifier
    ))
}

#[derive(serde::Deserialize)]
struct Login {
    #[serde(rename = "meridian-token", default)]
    token: String,
}

async fn login(
    State(shop): State<Shop>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Form(form): Form<Login>,
) -> Html<String> {
    let (_, answer) = verify(
        &shop.verifier,
        serde_json::json!({
            "token": form.token,
            "remote_ip": peer.ip().to_string(),
            "expected_action": "shop-login",
            "expected_origin": shop.origin,
        }),
    )
    .await;
    Html(format!(
        r#"<div id="verdict" data-success="{}">{}</div>"#,
        answer["success"],
        html_escape(&answer.to_string())
    ))
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_on_another_origin_uses_the_drop_in_from_the_verifier() {
    let (shop_listener, shop_origin) = site_listener().await;
    let verifier = start_verifier(std::slice::from_ref(&shop_origin)).await;
    let verifier_origin = verifier.origin.clone();
    let shop = Shop { origin: shop_origin.clone(), verifier: verifier_origin.clone() };
    let shop_app =
        Router::new().route("/", get(page)).route("/login", axum::routing::post(login)).with_state(shop);
    let shop_task = tokio::spawn(meridian_tests::serve(shop_listener, shop_app));

    let browser = start_browser(BrowserOptions::default()).await;
    let client = &browser.client;
    client.goto(&format!("{shop_origin}/")).await.unwrap();
    client.wait().for_element(fantoccini::Locator::Id("sign-in")).await.unwrap().click().await.unwrap();
    let verdict = client.wait().for_element(fantoccini::Locator::Id("verdict")).await.unwrap();
    let text = verdict.text().await.unwrap();
    assert_eq!(verdict.attr("data-success").await.ok().flatten().as_deref(), Some("true"), "{text}");
    assert!(text.contains(&shop_origin), "the claims name the shop's origin: {text}");
    // The challenge came through the verifier's echo, across origins.
    assert!(text.contains("\"hidden_leg_ms\""), "no network.latency: {text}");

    // The collector files go out as scripts only: not sniffed, not framed.
    let script = reqwest::get(format!("{verifier_origin}/pkg/meridian.js")).await.unwrap();
    let header = |name: &str| script.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    assert_eq!(header("x-content-type-options").as_deref(), Some("nosniff"));
    assert_eq!(
        header("content-security-policy").as_deref(),
        Some("default-src 'none'; frame-ancestors 'none'")
    );

    shop_task.abort();
}

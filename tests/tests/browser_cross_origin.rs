//! The drop-in on a page of another origin: the page at one port embeds
//! `meridian.js` from the verifier at another, fetches challenges across
//! origins (CORS), and its own backend verifies the token over HTTP.

#![allow(clippy::unwrap_used, reason = "tests fail by panicking")]

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, Form, State};
use axum::response::Html;
use axum::routing::get;
use meridian_tests::{BrowserOptions, VERIFY_SECRET, meridian_home, start_browser};
use meridian_verifier::clock::SystemClock;
use meridian_verifier::http::{ApiState, VerifySecret, router};
use meridian_verifier::replay::MemoryReplayStore;
use meridian_verifier::{ChallengeKey, ChallengeKeys, CollectorKeys, Keys, Policy, Verifier};

async fn listener() -> (tokio::net::TcpListener, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    (listener, origin)
}

#[derive(Clone)]
struct Shop {
    origin: String,
    verifier: String,
}

async fn page(State(shop): State<Shop>) -> Html<String> {
    Html(format!(
        r#"<!doctype html><meta charset="utf-8"><title>Shop</title>
<form method="post" action="/login" data-meridian="login">
  <input name="email" value="ada@example.com"><button id="sign-in">Sign in</button>
</form>
<script type="module" src="{}/pkg/meridian.js"></script>"#,
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
    let answer: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/v1/verify", shop.verifier))
        .bearer_auth(VERIFY_SECRET)
        .json(&serde_json::json!({
            "token": form.token,
            "remote_ip": peer.ip().to_string(),
            "expected_action": "login",
            "expected_origin": shop.origin,
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
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
    let (verifier_listener, verifier_origin) = listener().await;
    let (shop_listener, shop_origin) = listener().await;

    let home = meridian_home();
    let jwks = std::fs::read_to_string(home.join("keys/jwks.json")).unwrap();
    let keys = Keys {
        collector: CollectorKeys::from_jwks_json(&jwks).unwrap(),
        challenge: ChallengeKeys::new(vec![ChallengeKey::random(1).unwrap()], 120).unwrap(),
    };
    let policy = Policy { allowed_origins: vec![shop_origin.clone()], ..Policy::default() };
    let verifier = Verifier::new(keys, policy, Arc::new(MemoryReplayStore::new(1000)));
    let api = ApiState::new(verifier, vec![VerifySecret::new(VERIFY_SECRET).unwrap()], Arc::new(SystemClock))
        .with_cors_origins(std::slice::from_ref(&shop_origin))
        .with_collector_dir(home.join("pkg"));
    let verifier_task = tokio::spawn(async move {
        let _ =
            axum::serve(verifier_listener, router(api).into_make_service_with_connect_info::<SocketAddr>())
                .await;
    });
    let shop = Shop { origin: shop_origin.clone(), verifier: verifier_origin.clone() };
    let shop_app =
        Router::new().route("/", get(page)).route("/login", axum::routing::post(login)).with_state(shop);
    let shop_task = tokio::spawn(async move {
        let _ =
            axum::serve(shop_listener, shop_app.into_make_service_with_connect_info::<SocketAddr>()).await;
    });

    let browser = start_browser(BrowserOptions::default()).await;
    let client = &browser.client;
    client.goto(&format!("{shop_origin}/")).await.unwrap();
    client.wait().for_element(fantoccini::Locator::Id("sign-in")).await.unwrap().click().await.unwrap();
    let verdict = client.wait().for_element(fantoccini::Locator::Id("verdict")).await.unwrap();
    let text = verdict.text().await.unwrap();
    assert_eq!(verdict.attr("data-success").await.ok().flatten().as_deref(), Some("true"), "{text}");
    assert!(text.contains(&shop_origin), "the claims name the shop's origin: {text}");

    verifier_task.abort();
    shop_task.abort();
}

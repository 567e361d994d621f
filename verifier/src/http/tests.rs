//! The API driven through `tower::ServiceExt::oneshot`, no sockets.
#![allow(clippy::unwrap_used, clippy::panic, reason = "tests fail by panicking")]

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::*;
use crate::clock::SystemClock;
use crate::replay::MemoryReplayStore;
use crate::testkit::Minter;
use crate::{Policy, Verifier};

const SECRET: &str = "unit-test-secret-0123456789";

fn app(minter: &Minter) -> Router {
    let verifier =
        Verifier::new(minter.keys.clone(), Policy::default(), Arc::new(MemoryReplayStore::new(1000)));
    let state = ApiState::new(verifier, vec![VerifySecret::new(SECRET).unwrap()], Arc::new(SystemClock));
    router(state).layer(MockConnectInfo(SocketAddr::from(([192, 0, 2, 44], 5555))))
}

async fn send(app: &Router, request: Request<Body>) -> (StatusCode, Value) {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fn verify_request(auth: Option<&str>, content_type: &str, body: impl Into<Body>) -> Request<Body> {
    let mut builder = Request::post("/v1/verify").header(header::CONTENT_TYPE, content_type);
    if let Some(auth) = auth {
        builder = builder.header(header::AUTHORIZATION, auth);
    }
    builder.body(body.into()).unwrap()
}

fn bearer() -> String {
    format!("Bearer {SECRET}")
}

fn codes(body: &Value) -> Vec<&str> {
    body["error_codes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect()
}

#[tokio::test]
async fn challenge_is_bound_to_the_peer_ip() {
    let minter = Minter::new(3);
    let (status, body) =
        send(&app(&minter), Request::get("/v1/challenge").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["expires_in_s"], json!(120));
    let now = body["server_time_ms"].as_i64().unwrap();
    let opened = minter.keys.challenge.open(body["challenge"].as_str().unwrap(), now, 0).unwrap();
    assert_eq!(opened.ip.to_string(), "192.0.2.44");
    assert_eq!(opened.expires_at_ms, now + 120_000);
}

#[tokio::test]
async fn verifies_once() {
    let minter = Minter::new(3);
    let app = app(&minter);
    let now = jiff::Timestamp::now().as_millisecond();
    let token = minter.token("192.0.2.44".parse().unwrap(), now, [7; 16]);
    let body = json!({ "token": token, "remote_ip": "::ffff:192.0.2.44" }).to_string();
    let (status, first) = send(&app, verify_request(Some(&bearer()), "application/json", body.clone())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(first["success"], json!(true), "{first}");
    assert_eq!(first["network"]["ip"], json!("192.0.2.44"));
    assert_eq!(first["claims"]["tz"]["zone"], json!("Europe/Berlin"));
    let (_, second) = send(&app, verify_request(Some(&bearer()), "application/json", body)).await;
    assert_eq!(codes(&second), ["replayed"]);
    assert_eq!(second["verdict"], json!("deny"));
}

#[tokio::test]
async fn rejects_bad_requests_with_stable_codes() {
    let minter = Minter::new(3);
    let app = app(&minter);
    let ok_body = json!({ "token": "x", "remote_ip": "192.0.2.1" }).to_string();

    let (status, body) = send(&app, verify_request(None, "application/json", ok_body.clone())).await;
    assert_eq!((status, codes(&body)), (StatusCode::UNAUTHORIZED, vec!["unauthorized"]));
    let (status, body) = send(
        &app,
        verify_request(Some("Bearer wrong-secret-000000000"), "application/json", ok_body.clone()),
    )
    .await;
    assert_eq!((status, codes(&body)), (StatusCode::UNAUTHORIZED, vec!["unauthorized"]));
    let (status, body) = send(&app, verify_request(Some(SECRET), "application/json", ok_body.clone())).await;
    assert_eq!((status, codes(&body)), (StatusCode::UNAUTHORIZED, vec!["unauthorized"]));

    let (status, body) = send(&app, verify_request(Some(&bearer()), "text/plain", ok_body.clone())).await;
    assert_eq!((status, codes(&body)), (StatusCode::UNSUPPORTED_MEDIA_TYPE, vec!["bad-request"]));
    let (status, body) = send(&app, verify_request(Some(&bearer()), "application/json", "{not json")).await;
    assert_eq!((status, codes(&body)), (StatusCode::BAD_REQUEST, vec!["bad-request"]));
    let (status, body) =
        send(&app, verify_request(Some(&bearer()), "application/json", vec![0xff, 0x00, 0x13])).await;
    assert_eq!((status, codes(&body)), (StatusCode::BAD_REQUEST, vec!["bad-request"]));
    let nested = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let (status, body) = send(&app, verify_request(Some(&bearer()), "application/json", nested)).await;
    assert_eq!((status, codes(&body)), (StatusCode::BAD_REQUEST, vec!["bad-request"]));
    for ip in [json!("not-an-ip"), json!(""), json!(17), Value::Null] {
        let request = json!({ "token": "x", "remote_ip": ip }).to_string();
        let (status, body) = send(&app, verify_request(Some(&bearer()), "application/json", request)).await;
        assert_eq!((status, codes(&body)), (StatusCode::BAD_REQUEST, vec!["bad-request"]), "{ip}");
    }

    let too_big = json!({ "token": "a".repeat(20 * 1024), "remote_ip": "192.0.2.1" }).to_string();
    let (status, body) = send(&app, verify_request(Some(&bearer()), "application/json", too_big)).await;
    assert_eq!((status, codes(&body)), (StatusCode::PAYLOAD_TOO_LARGE, vec!["bad-request"]));

    // Token problems are answers, not request errors: 200 with success false.
    let long_token = json!({ "token": "a".repeat(10 * 1024), "remote_ip": "192.0.2.1" }).to_string();
    let (status, body) = send(&app, verify_request(Some(&bearer()), "application/json", long_token)).await;
    assert_eq!((status, codes(&body)), (StatusCode::OK, vec!["malformed-token"]));
    let missing = json!({ "remote_ip": "192.0.2.1" }).to_string();
    let (status, body) = send(&app, verify_request(Some(&bearer()), "application/json", missing)).await;
    assert_eq!((status, codes(&body)), (StatusCode::OK, vec!["missing-input-token"]));
}

#[tokio::test]
async fn publishes_the_jwks() {
    let minter = Minter::new(3);
    let response = app(&minter)
        .oneshot(Request::get("/.well-known/jwks.json").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.headers()[header::CONTENT_TYPE], "application/jwk-set+json");
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let jwks: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(jwks["keys"][0]["kid"], json!(minter.kid()));
    assert!(jwks["keys"][0].get("d").is_none());
}

#[tokio::test]
async fn openapi_lists_every_route_of_the_router() {
    let minter = Minter::new(3);
    let (status, doc) = send(&app(&minter), Request::get("/openapi.json").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths: Vec<&str> = doc["paths"].as_object().unwrap().keys().map(String::as_str).collect();
    for route in [
        "/v1/challenge",
        "/v1/echo",
        "/v1/verify",
        "/.well-known/jwks.json",
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
        "/v1/accounts/{account}",
        "/v1/organizations/{organization}",
    ] {
        assert!(paths.contains(&route), "{route} missing from {paths:?}");
        let route = &route.replace("{account}", "ada").replace("{organization}", "example");
        // And the router really serves it.
        let method = if route == "/v1/verify" { "POST" } else { "GET" };
        let route = route.as_str();
        let request = Request::builder().method(method).uri(route).body(Body::empty()).unwrap();
        let response = app(&minter).oneshot(request).await.unwrap();
        assert_ne!(response.status(), StatusCode::NOT_FOUND, "{route}");
    }
    assert_eq!(paths.len(), 10, "{paths:?}");
    assert!(doc["paths"]["/v1/accounts/{account}"]["delete"].is_object(), "erasure is documented");
    assert!(doc["components"]["schemas"]["VerifyOutcome"]["properties"]["error_codes"].is_object());
    // The document is written out for the external validator in the serve tests.
    std::fs::write(std::env::temp_dir().join("meridian-openapi.json"), super::openapi_json()).unwrap();
}

#[tokio::test]
async fn every_response_carries_a_distinct_request_id() {
    let app = app(&Minter::new(9));
    let mut ids = Vec::new();
    for _ in 0..3 {
        let response =
            app.clone().oneshot(Request::get("/healthz").body(Body::empty()).unwrap()).await.unwrap();
        let id = response.headers().get("x-request-id").unwrap().to_str().unwrap().to_owned();
        assert!(id.len() > 17 && id.contains('-'), "{id}");
        ids.push(id);
    }
    ids.dedup();
    assert_eq!(ids.len(), 3, "{ids:?}");
}

//! The operator console over its real router: sign-in, sessions, forms
//! from other sites, and pages that show what the history holds, escaped.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail by panicking")]

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use meridian_verifier::clock::Clock;
use meridian_verifier::console::Console;
use meridian_verifier::geo::Country;
use meridian_verifier::history::{Event, History, HistoryStore, SqliteHistory, SubjectKey};
use meridian_verifier::http::{ApiState, VerifySecret, router};
use meridian_verifier::net::TrustedProxies;
use meridian_verifier::replay::MemoryReplayStore;
use meridian_verifier::testkit::Minter;
use meridian_verifier::verdict::{ReasonCode, Verdict};
use meridian_verifier::{Policy, Verifier};
use tower::ServiceExt as _;

const OPERATOR: &str = "operator-secret-for-tests-0123";
const VERIFY: &str = "verify-secret-for-tests-0123456";
/// 2027-01-15T08:00:00Z.
const T0: i64 = 1_800_000_000_000;

/// A clock tests move by hand.
struct Fixed(std::sync::atomic::AtomicI64);

impl Clock for Fixed {
    fn now(&self) -> jiff::Timestamp {
        jiff::Timestamp::from_millisecond(self.0.load(std::sync::atomic::Ordering::SeqCst)).unwrap()
    }
}

struct Console_ {
    /// Without a peer address: tests add their own.
    bare: axum::Router,
    /// From 127.0.0.1.
    app: axum::Router,
    store: SqliteHistory,
    key: SubjectKey,
    clock: Arc<Fixed>,
}

fn console(idle: Duration) -> Console_ {
    let store = SqliteHistory::in_memory().unwrap();
    let key = SubjectKey::new([5; 32]);
    let policy = Policy { restricted_regions: vec![Country::parse("CN").unwrap()], ..Policy::default() };
    let verifier = Verifier::new(Minter::new(70).keys.clone(), policy, Arc::new(MemoryReplayStore::new(100)))
        .with_history(History::new(Arc::new(store.clone()), key.clone()));
    let clock = Arc::new(Fixed(std::sync::atomic::AtomicI64::new(T0)));
    let state = ApiState::new(verifier, vec![VerifySecret::new(VERIFY).unwrap()], clock.clone())
        .with_trusted_proxies(TrustedProxies::parse(["10.0.0.0/8"]).unwrap())
        .with_console(Console::new(OPERATOR, idle, 90).unwrap());
    let bare = router(state);
    let app = bare.clone().layer(MockConnectInfo(std::net::SocketAddr::from(([127, 0, 0, 1], 1))));
    Console_ { bare, app, store, key, clock }
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

async fn send(app: &axum::Router, request: Request<Body>) -> Answer {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = String::from_utf8(response.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    Answer { status, headers, body }
}

fn get(path: &str, cookie: Option<&str>) -> Request<Body> {
    let mut request = Request::get(path).header(header::HOST, "console.test");
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    request.body(Body::empty()).unwrap()
}

fn post(path: &str, cookie: &str) -> axum::http::request::Builder {
    Request::post(path)
        .header(header::HOST, "console.test")
        .header(header::COOKIE, cookie)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
}

fn form_body(form: &[(&str, &str)]) -> Body {
    Body::from(serde_urlencoded::to_string(form).unwrap())
}

/// The `name=value` of a `Set-Cookie` named `name`.
fn set_cookie(answer: &Answer, name: &str) -> Option<String> {
    answer
        .headers
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with(&format!("{name}=")))
}

/// The value of the hidden `csrf` field of a page.
fn csrf_of(body: &str) -> String {
    let at = body.find(r#"name="csrf" value=""#).expect("a form token") + r#"name="csrf" value=""#.len();
    body[at..].split('"').next().unwrap().to_owned()
}

/// Signs in; returns the session cookie (`name=value`) and the page's form token.
async fn sign_in(app: &axum::Router) -> (String, String) {
    let form = send(app, get("/console/login", None)).await;
    assert_eq!(form.status, StatusCode::OK);
    let login_cookie = set_cookie(&form, "meridian_console_login").unwrap();
    let pair = login_cookie.split(';').next().unwrap().to_owned();
    let token = csrf_of(&form.body);
    let fields = [("secret", OPERATOR), ("csrf", token.as_str())];
    let answer = send(app, post("/console/login", &pair).body(form_body(&fields)).unwrap()).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    let session = set_cookie(&answer, "meridian_console").unwrap();
    assert!(session.contains("HttpOnly") && session.contains("SameSite=Strict"), "{session}");
    assert!(!session.contains("Secure"), "plain HTTP: not Secure");
    let cookie = session.split(';').next().unwrap().to_owned();
    let overview = send(app, get("/console", Some(&cookie))).await;
    assert_eq!(overview.status, StatusCode::OK);
    (cookie.clone(), csrf_of(&overview.body))
}

fn event(key: &SubjectKey, account: &str, at_ms: i64, country: &str, zone: &str, verdict: Verdict) -> Event {
    Event {
        at_ms,
        account: key.account(account).ok(),
        organization: key.organization("Example Corp").ok(),
        network: "192.0.2.0/24".into(),
        country: Country::parse(country),
        asn: Some(64_500),
        zone: Some(zone.into()),
        locale: Some("zh-CN".into()),
        restricted_device: zone == "Asia/Shanghai",
        verdict,
        score: 0,
        reasons: if verdict == Verdict::Allow { vec![] } else { vec![ReasonCode::RestrictedRegionClaim] },
        error: None,
    }
}

#[tokio::test]
async fn only_a_signed_in_operator_sees_pages_and_signing_in_takes_the_secret() {
    let console = console(Duration::from_secs(600));
    let app = &console.app;
    for path in [
        "/console",
        "/console/accounts",
        "/console/live",
        "/console/networks",
        "/console/accounts/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ] {
        let answer = send(app, get(path, None)).await;
        assert_eq!(answer.status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(answer.headers[header::LOCATION], "/console/login");
    }
    let form = send(app, get("/console/login", None)).await;
    assert!(
        form.headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap().starts_with("default-src 'none'")
    );
    assert_eq!(form.headers[header::CACHE_CONTROL], "no-store");
    let login = set_cookie(&form, "meridian_console_login").unwrap();
    let pair = login.split(';').next().unwrap().to_owned();
    let token = csrf_of(&form.body);

    // A wrong secret: 401 and the form again.
    let fields = [("secret", "not-the-operator-secret"), ("csrf", token.as_str())];
    let wrong = send(app, post("/console/login", &pair).body(form_body(&fields)).unwrap()).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(
        wrong.body.contains("not the operator secret") && set_cookie(&wrong, "meridian_console").is_none()
    );
    // The verify secret does not open the console.
    let fields = [("secret", VERIFY), ("csrf", token.as_str())];
    let verify = send(app, post("/console/login", &pair).body(form_body(&fields)).unwrap()).await;
    assert_eq!(verify.status, StatusCode::UNAUTHORIZED);
    // The right secret without the form's own token (a login forced from
    // another site): refused.
    let fields = [("secret", OPERATOR), ("csrf", "forged")];
    let forged = send(app, post("/console/login", &pair).body(form_body(&fields)).unwrap()).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let fields = [("secret", OPERATOR), ("csrf", token.as_str())];
    let cross = send(
        app,
        post("/console/login", &pair)
            .header("sec-fetch-site", "cross-site")
            .body(form_body(&fields))
            .unwrap(),
    )
    .await;
    assert_eq!(cross.status, StatusCode::FORBIDDEN);
    let (cookie, csrf) = sign_in(app).await;
    assert_eq!(send(app, get("/console/live", Some(&cookie))).await.status, StatusCode::OK);

    // Signing out takes the session's token, from this site.
    let fields = [("csrf", "not-the-token")];
    let refused = send(app, post("/console/logout", &cookie).body(form_body(&fields)).unwrap()).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let fields = [("csrf", csrf.as_str())];
    let cross = send(
        app,
        post("/console/logout", &cookie)
            .header("origin", "https://evil.example")
            .body(form_body(&fields))
            .unwrap(),
    )
    .await;
    assert_eq!(cross.status, StatusCode::FORBIDDEN);
    let out = send(app, post("/console/logout", &cookie).body(form_body(&fields)).unwrap()).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert!(set_cookie(&out, "meridian_console").unwrap().contains("Max-Age=0"));
    assert_eq!(send(app, get("/console", Some(&cookie))).await.status, StatusCode::SEE_OTHER, "signed out");
}

#[tokio::test]
async fn too_many_wrong_secrets_are_slowed_and_sessions_expire() {
    let console = console(Duration::from_secs(30 * 60));
    let app = &console.app;
    let (cookie, _) = sign_in(app).await;
    console.clock.0.fetch_add(29 * 60_000, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(send(app, get("/console", Some(&cookie))).await.status, StatusCode::OK, "still in use");
    console.clock.0.fetch_add(31 * 60_000, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        send(app, get("/console", Some(&cookie))).await.status,
        StatusCode::SEE_OTHER,
        "idle too long"
    );
    let form = send(app, get("/console/login", None)).await;
    let pair = set_cookie(&form, "meridian_console_login").unwrap().split(';').next().unwrap().to_owned();
    let token = csrf_of(&form.body);
    let fields = [("secret", "guess-guess-guess-guess"), ("csrf", token.as_str())];
    let mut statuses = Vec::new();
    for _ in 0..12 {
        statuses
            .push(send(app, post("/console/login", &pair).body(form_body(&fields)).unwrap()).await.status);
    }
    assert_eq!(statuses.last(), Some(&StatusCode::TOO_MANY_REQUESTS), "{statuses:?}");
}

#[tokio::test]
async fn cookies_are_secure_behind_a_trusted_tls_proxy_only() {
    let console = console(Duration::from_secs(600));
    let through =
        |peer: [u8; 4]| console.bare.clone().layer(MockConnectInfo(std::net::SocketAddr::from((peer, 1))));
    let request = || {
        Request::get("/console/login")
            .header(header::HOST, "console.test")
            .header("x-forwarded-proto", "https")
            .body(Body::empty())
            .unwrap()
    };
    let proxied = send(&through([10, 0, 0, 1]), request()).await;
    assert!(set_cookie(&proxied, "meridian_console_login").unwrap().ends_with("; Secure"));
    let claimed = send(&through([192, 0, 2, 1]), request()).await;
    assert!(
        !set_cookie(&claimed, "meridian_console_login").unwrap().contains("Secure"),
        "a client's own header"
    );
}

#[tokio::test]
async fn pages_show_what_the_history_holds_and_escape_what_browsers_sent() {
    let console = console(Duration::from_secs(600));
    let app = &console.app;
    let key = &console.key;
    let mut events = Vec::new();
    for n in 0..4 {
        events.push(event(key, "li", T0 - 3_600_000 * (n + 1), "SG", "Asia/Shanghai", Verdict::Deny));
    }
    events.push(event(key, "ada", T0 - 7_200_000, "DE", "Europe/Berlin", Verdict::Allow));
    let mut hostile = event(key, "mallory", T0 - 1_000, "SG", "<script>alert(1)</script>", Verdict::Review);
    hostile.locale = Some(r#""><img src=x onerror=alert(2)>"#.into());
    hostile.reasons = vec![ReasonCode::TzCountryMismatch];
    events.push(hostile);
    console.store.record(events, None).await.unwrap();
    let (cookie, _) = sign_in(app).await;

    let overview = send(app, get("/console?range=24h", Some(&cookie))).await;
    assert_eq!(overview.status, StatusCode::OK);
    assert!(overview.body.contains(r#"data-total="6""#), "six verifications in the totals");
    assert!(
        overview.body.contains(r#"data-key="SG" data-allow="0" data-review="1" data-deny="4""#),
        "by country"
    );
    assert!(
        overview
            .body
            .contains(r#"data-key="restricted_region_claim" data-allow="0" data-review="0" data-deny="4""#)
    );
    let li = key.account("li").unwrap();
    assert!(
        overview.body.contains(&format!("/console/accounts/{}", li.as_str())),
        "li is among the riskiest"
    );
    assert_eq!(send(app, get("/console?range=forever", Some(&cookie))).await.status, StatusCode::BAD_REQUEST);

    let accounts = send(app, get("/console/accounts?risk=high&sort=logins", Some(&cookie))).await;
    assert_eq!(accounts.status, StatusCode::OK);
    assert_eq!(accounts.body.matches(r#"data-risk="high""#).count(), 1, "li only: {}", accounts.body);
    let all = send(app, get("/console/accounts?risk=all&sort=last&order=asc", Some(&cookie))).await;
    assert_eq!(all.body.matches("<tr data-risk=").count(), 3);
    assert_eq!(
        send(app, get("/console/accounts?sort=nonsense", Some(&cookie))).await.status,
        StatusCode::BAD_REQUEST
    );
    let organizations = send(app, get("/console/organizations", Some(&cookie))).await;
    assert!(
        organizations.body.contains("3 (1)"),
        "three accounts, one mostly restricted: {}",
        organizations.body
    );

    let page = send(app, get(&format!("/console/accounts/{}", li.as_str()), Some(&cookie))).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains(r#"<dd id="logins">4</dd>"#));
    assert_eq!(page.body.matches(r#"<tr class="event""#).count(), 4);
    assert!(
        page.body.contains(r#"class="device-offset" data-offset="480" data-count="4""#),
        "UTC+8, four times"
    );

    let mallory = key.account("mallory").unwrap();
    let page = send(app, get(&format!("/console/accounts/{}", mallory.as_str()), Some(&cookie))).await;
    assert!(!page.body.contains("<script>") && !page.body.contains("<img"), "{}", page.body);
    assert!(page.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(page.body.contains("&quot;&gt;&lt;img src=x onerror=alert(2)&gt;"));
    let live = send(app, get("/console/live", Some(&cookie))).await;
    assert!(!live.body.contains("<script>") && live.body.contains(r#"http-equiv="refresh""#));

    // The stylesheet is cached, then revalidated by its tag.
    let css = send(app, get("/console/static/console.css", None)).await;
    assert_eq!(css.status, StatusCode::OK);
    assert_eq!(css.headers[header::CACHE_CONTROL], "public, max-age=86400");
    let tag = css.headers[header::ETAG].to_str().unwrap().to_owned();
    let again =
        Request::get("/console/static/console.css").header(header::IF_NONE_MATCH, &tag).body(Body::empty());
    assert_eq!(send(app, again.unwrap()).await.status, StatusCode::NOT_MODIFIED);

    // Looking an account up by the id the backend knows: hashed here, then its page.
    let (other, other_csrf) = sign_in(app).await;
    let fields = [("csrf", other_csrf.as_str()), ("kind", "account"), ("id", "li")];
    let found = send(app, post("/console/find", &cookie).body(form_body(&fields)).unwrap()).await;
    assert_eq!(found.status, StatusCode::FORBIDDEN, "another session's token");
    let found = send(app, post("/console/find", &other).body(form_body(&fields)).unwrap()).await;
    assert_eq!(found.headers[header::LOCATION], format!("/console/accounts/{}", li.as_str()));
    let long = "x".repeat(300);
    let fields = [("csrf", other_csrf.as_str()), ("kind", "account"), ("id", long.as_str())];
    let refused = send(app, post("/console/find", &other).body(form_body(&fields)).unwrap()).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);

    assert_eq!(
        send(app, get("/console/accounts/not-a-hash", Some(&cookie))).await.status,
        StatusCode::NOT_FOUND
    );
    let unknown = format!("/console/accounts/{}", key.account("nobody").unwrap().as_str());
    assert_eq!(send(app, get(&unknown, Some(&cookie))).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_networks_page_tells_a_companys_gateway_from_an_exit_carrying_shanghai_devices() {
    let console = console(Duration::from_secs(600));
    let (app, key) = (&console.app, &console.key);
    let relayed = |account: &str, organization: &str, network: &str, zone: &str, n: i64| {
        let mut event = event(key, account, T0 - n * 60_000, "SG", zone, Verdict::Review);
        event.organization = key.organization(organization).ok();
        event.network = network.into();
        event.reasons = vec![ReasonCode::RelayLatency];
        event
    };
    let mut events: Vec<Event> = ["ken", "yui", "aoi"]
        .iter()
        .zip(0..)
        .map(|(account, n)| relayed(account, "Gateway Corp", "203.0.113.0/24", "Asia/Tokyo", n))
        .collect();
    events.push(relayed("li", "Example Corp", "198.51.100.0/24", "Asia/Shanghai", 5));
    // A sign-in straight from its own network names no relay.
    events.push(event(key, "tan", T0, "SG", "Asia/Singapore", Verdict::Allow));
    console.store.record(events, None).await.unwrap();
    let (cookie, _) = sign_in(app).await;
    let page = send(app, get("/console/networks", Some(&cookie))).await;
    assert_eq!(page.status, StatusCode::OK);
    let rows: Vec<&str> = page.body.split("<tr data-look=").skip(1).collect();
    assert_eq!(rows.len(), 2, "{}", page.body);
    assert!(
        rows[0].starts_with(r#""one_organization""#) && rows[0].contains("203.0.113.0/24"),
        "{}",
        rows[0]
    );
    let gateway = key.organization("Gateway Corp").unwrap();
    assert!(rows[0].contains(&format!("/console/organizations/{}", gateway.as_str())), "{}", rows[0]);
    assert!(
        rows[1].starts_with(r#""carries_restricted_devices""#) && rows[1].contains("never list it"),
        "{}",
        rows[1]
    );
    assert!(!page.body.contains("192.0.2.0/24"), "the direct sign-in's network is not listed");
}

#[tokio::test]
async fn a_console_secret_that_is_short_shared_or_without_a_history_is_refused() {
    use meridian_verifier::config::ServeConfig;
    use meridian_verifier::deployment::Deployment;
    let dir = std::env::temp_dir().join(format!("meridian-console-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("jwks.json"), Minter::new(71).jwks_json()).unwrap();
    let build = |extra: &[(&str, &str)]| {
        let mut env = vec![
            ("MERIDIAN_JWKS".to_owned(), dir.join("jwks.json").display().to_string()),
            ("MERIDIAN_DATA_DIR".to_owned(), dir.join("data").display().to_string()),
            ("MERIDIAN_VERIFY_SECRET".to_owned(), VERIFY.to_owned()),
        ];
        env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        async move {
            let config = ServeConfig::load(None, env).map_err(|e| e.to_string())?;
            Deployment::builder(config).build().await.map(|d| d.notes().join("\n")).map_err(|e| e.to_string())
        }
    };
    let short = build(&[("MERIDIAN_CONSOLE_SECRET", "short")]).await.unwrap_err();
    assert!(short.contains("at least 16"), "{short}");
    let shared = build(&[("MERIDIAN_CONSOLE_SECRET", VERIFY)]).await.unwrap_err();
    assert!(shared.contains("differ from every verify_secret"), "{shared}");
    let off =
        build(&[("MERIDIAN_CONSOLE_SECRET", OPERATOR), ("MERIDIAN_HISTORY", "false")]).await.unwrap_err();
    assert!(off.contains("history"), "{off}");
    assert!(!off.contains(OPERATOR) && !shared.contains(VERIFY), "secrets stay out of messages");
    let notes = build(&[("MERIDIAN_CONSOLE_SECRET", OPERATOR)]).await.unwrap();
    assert!(notes.contains("console: /console"), "{notes}");
    std::fs::remove_dir_all(&dir).unwrap();
}

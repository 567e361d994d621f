//! The operator console (`/console`): what a security team looks at every
//! morning. Served by `meridian serve` beside the backend's routes (on the
//! internal listener when there is one), off unless `console_secret` is
//! set, and only with the history on.
//!
//! - **Overview** (`/console`): verifications over time, by network
//!   country and by reason, each split by verdict, from the store's running
//!   counts; the riskiest accounts and organisations.
//! - **Accounts and organisations** (`/console/accounts`,
//!   `/console/organizations`): ranked by risk, filtered by level, sorted
//!   by any column; each one's page has its risk and why, what it was seen
//!   with, its device clocks against its networks' countries, and its
//!   timeline of sign-ins.
//! - **Networks** (`/console/networks`): the networks the latest sign-ins
//!   were relayed through, with what each looks like: one organisation's
//!   gateway to list in `trusted_networks`, a shared exit, or one carrying
//!   devices that point into a restricted region.
//! - **Live** (`/console/live`): the latest verifications, refreshed every
//!   few seconds without script.
//!
//! Pages are rendered on the server ([`maud`] escapes every value: a zone
//! or locale came from a browser and may be markup), need no script, and
//! are sent with a policy that forbids any (`script-src` is absent from a
//! `default-src 'none'` policy). Access is in [`session`].

mod charts;
mod pages;
pub(crate) mod session;

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Form, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use governor::{DefaultKeyedRateLimiter, Quota};
use serde::Deserialize;

use crate::history::report::{Risk, Summary};
use crate::history::{History, SubjectKind};
use crate::http::{ApiState, ClientIp};
use session::{LOGIN_COOKIE, LOGIN_FORM_AGE, MAX_AGE, SESSION_COOKIE, Sessions};

/// The shortest operator secret accepted.
pub const MIN_SECRET_LEN: usize = 16;

/// Sign-in attempts per minute per client address.
const SIGN_INS_PER_MINUTE: u32 = 10;

/// Rows a riskiest list shows at most.
const LIST_ROWS: usize = 200;

/// Sign-ins an account or organisation page lists at most.
const TIMELINE_ROWS: usize = 200;

/// The latest verifications the networks page reads: enough for a picture
/// of the last days at most sites, few enough to read in one short query
/// beside the verifications' own reads.
const NETWORK_EVENTS: u32 = 20_000;

/// Networks the networks page lists at most.
const NETWORK_ROWS: usize = 100;

/// How long the networks page shows what it read, so that reloading it
/// does not read the latest verifications again beside the sign-ins.
const NETWORKS_FOR: Duration = Duration::from_secs(60);

/// The console's settings and sessions.
#[derive(Clone)]
pub struct Console {
    sessions: Sessions,
    attempts: Arc<DefaultKeyedRateLimiter<IpAddr>>,
    retention_days: u32,
    /// The networks page as last read: verifications read, the networks,
    /// and when.
    networks: Arc<std::sync::Mutex<Option<NetworksRead>>>,
}

/// What the networks page showed, and when it was read.
type NetworksRead = (usize, Vec<crate::history::report::RelayingNetwork>, std::time::Instant);

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console").field("retention_days", &self.retention_days).finish_non_exhaustive()
    }
}

impl Console {
    /// A console opened by `secret` (at least [`MIN_SECRET_LEN`] bytes),
    /// whose sessions end after `idle` without a request, over a history
    /// that keeps `retention_days`.
    ///
    /// # Errors
    /// When the secret is too short.
    pub fn new(secret: &str, idle: Duration, retention_days: u32) -> Result<Self, String> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(format!("console_secret: at least {MIN_SECRET_LEN} characters"));
        }
        let quota = Quota::per_minute(NonZeroU32::new(SIGN_INS_PER_MINUTE).unwrap_or(NonZeroU32::MIN));
        Ok(Self {
            sessions: Sessions::new(secret, idle),
            attempts: Arc::new(DefaultKeyedRateLimiter::dashmap(quota)),
            retention_days,
            networks: Arc::default(),
        })
    }

    /// Forgets sign-in attempts of addresses that have been quiet.
    pub fn housekeeping(&self) {
        self.attempts.retain_recent();
    }
}

/// The console's routes under `/console`, with the headers every page gets.
pub(crate) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/console", get(overview))
        .route("/console/", get(|| async { Redirect::to("/console") }))
        .route("/console/login", get(login_form).post(login))
        .route("/console/logout", axum::routing::post(logout))
        .route("/console/find", axum::routing::post(find))
        .route("/console/live", get(live))
        .route("/console/networks", get(networks))
        .route("/console/accounts", get(accounts))
        .route("/console/organizations", get(organizations))
        .route("/console/accounts/{subject}", get(account))
        .route("/console/organizations/{subject}", get(organization))
        .route("/console/static/console.css", get(stylesheet))
        .layer(axum::middleware::from_fn(page_headers))
}

/// No caching of pages (they hold account data), no framing, no script,
/// no referrer.
async fn page_headers(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    response
}

/// The stylesheet: cached for a day, revalidated by its tag after.
const STYLESHEET: &str = include_str!("console.css");

async fn stylesheet(headers: HeaderMap) -> Response {
    use sha2::Digest as _;
    let tag =
        format!("\"{}\"", &meridian_protocol::base64url_encode(&sha2::Sha256::digest(STYLESHEET))[..16]);
    let cached = headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) == Some(tag.as_str());
    let status = if cached { StatusCode::NOT_MODIFIED } else { StatusCode::OK };
    let headers = [
        (header::CONTENT_TYPE, HeaderValue::from_static("text/css; charset=utf-8")),
        (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=86400")),
        (header::ETAG, HeaderValue::from_str(&tag).unwrap_or(HeaderValue::from_static("\"\""))),
    ];
    if cached { (status, headers).into_response() } else { (status, headers, STYLESHEET).into_response() }
}

/// The console and the history, when both are on.
fn parts(state: &ApiState) -> Option<(&Console, &History)> {
    Some((state.console()?, state.verifier().history()?))
}

/// What a console that is off answers.
fn off() -> Response {
    (StatusCode::NOT_FOUND, "not found\n").into_response()
}

/// Whether the request reached us over TLS, as a trusted proxy in front
/// says (`X-Forwarded-Proto: https`): the cookies are then `Secure`.
async fn over_tls(parts: &mut Parts, state: &ApiState) -> bool {
    let peer = axum::extract::ConnectInfo::<std::net::SocketAddr>::from_request_parts(parts, state)
        .await
        .ok()
        .map(|c| c.0.ip());
    let forwarded = parts.headers.get("x-forwarded-proto").and_then(|v| v.to_str().ok());
    peer.is_some_and(|peer| state.trusts_proxy(peer))
        && forwarded.is_some_and(|p| p.eq_ignore_ascii_case("https"))
}

/// A signed-in operator: the session's form token. Pages that need one
/// send everyone else to the sign-in form.
pub(crate) struct Operator {
    csrf: String,
    token: String,
    secure: bool,
}

impl FromRequestParts<ApiState> for Operator {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, Self::Rejection> {
        let Some((console, _)) = self::parts(state) else { return Err(off()) };
        let secure = over_tls(parts, state).await;
        let token = session::cookie_value(&parts.headers, SESSION_COOKIE).unwrap_or("");
        match console.sessions.get(token, state.clock().now().as_millisecond()) {
            Some(session) => Ok(Self { csrf: session.csrf, token: token.to_owned(), secure }),
            None => Err(Redirect::to("/console/login").into_response()),
        }
    }
}

/// Whether the request is a plain navigation of this site's own (for
/// forms), with what `Sec-Fetch-Site`/`Origin` say.
struct Navigation {
    cross_site: bool,
    secure: bool,
}

impl FromRequestParts<ApiState> for Navigation {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, Self::Rejection> {
        Ok(Self { cross_site: session::cross_site(&parts.headers), secure: over_tls(parts, state).await })
    }
}

/// A refusal page with `status`.
fn refuse(status: StatusCode, message: &str) -> Response {
    (status, pages::refusal(status, message)).into_response()
}

async fn login_form(State(state): State<ApiState>, navigation: Navigation, headers: HeaderMap) -> Response {
    let Some((console, _)) = parts(&state) else { return off() };
    let now = state.clock().now().as_millisecond();
    let signed_in =
        session::cookie_value(&headers, SESSION_COOKIE).and_then(|t| console.sessions.get(t, now));
    if signed_in.is_some() {
        return Redirect::to("/console").into_response();
    }
    sign_in_page(StatusCode::OK, None, navigation.secure)
}

/// The sign-in form with a fresh token (and its cookie).
fn sign_in_page(status: StatusCode, error: Option<&str>, secure: bool) -> Response {
    let Some(token) = session::random_token() else {
        return refuse(StatusCode::SERVICE_UNAVAILABLE, "The system has no secure randomness.");
    };
    let cookie = session::cookie(LOGIN_COOKIE, &token, Some(LOGIN_FORM_AGE), secure);
    (status, [(header::SET_COOKIE, cookie)], pages::sign_in(&token, error)).into_response()
}

#[derive(Deserialize)]
struct SignIn {
    secret: String,
    csrf: String,
}

async fn login(
    State(state): State<ApiState>,
    navigation: Navigation,
    ClientIp(client): ClientIp,
    headers: HeaderMap,
    Form(form): Form<SignIn>,
) -> Response {
    let Some((console, _)) = parts(&state) else { return off() };
    if navigation.cross_site {
        tracing::warn!(%client, "console: a sign-in posted from another site was refused");
        return refuse(StatusCode::FORBIDDEN, "This form was sent from another site.");
    }
    let paired = session::cookie_value(&headers, LOGIN_COOKIE).is_some_and(|c| session::same(c, &form.csrf));
    if !paired {
        return sign_in_page(
            StatusCode::FORBIDDEN,
            Some("The sign-in form expired or did not come from this console. Try again."),
            navigation.secure,
        );
    }
    if console.attempts.check_key(&crate::net::rate_key(client, 64)).is_err() {
        tracing::warn!(%client, "console: too many sign-in attempts");
        return refuse(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many sign-in attempts from this address. Wait a minute.",
        );
    }
    if !console.sessions.is_secret(&form.secret) {
        tracing::warn!(%client, "console: a sign-in with a wrong secret was refused");
        return sign_in_page(
            StatusCode::UNAUTHORIZED,
            Some("That is not the operator secret."),
            navigation.secure,
        );
    }
    let Some(token) = console.sessions.open(state.clock().now().as_millisecond()) else {
        return refuse(StatusCode::SERVICE_UNAVAILABLE, "Too many sessions are open. Try again later.");
    };
    tracing::info!(%client, "console: operator signed in");
    let secure = navigation.secure;
    let mut response = Redirect::to("/console").into_response();
    let cookies = [
        session::cookie(SESSION_COOKIE, &token, Some(MAX_AGE), secure),
        session::cookie(LOGIN_COOKIE, "", None, secure),
    ];
    for cookie in cookies {
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

/// A form that changes something: its token.
#[derive(Deserialize)]
struct Csrf {
    csrf: String,
}

/// Refuses a form unless it is this site's and carries the session's token.
fn form_refused(operator: &Operator, navigation: &Navigation, csrf: &str) -> Option<Response> {
    (navigation.cross_site || !session::same(csrf, &operator.csrf))
        .then(|| refuse(StatusCode::FORBIDDEN, "This form was not sent from this console's own page."))
}

async fn logout(
    State(state): State<ApiState>,
    operator: Operator,
    navigation: Navigation,
    Form(form): Form<Csrf>,
) -> Response {
    let Some((console, _)) = parts(&state) else { return off() };
    if let Some(refused) = form_refused(&operator, &navigation, &form.csrf) {
        return refused;
    }
    console.sessions.close(&operator.token);
    tracing::info!("console: operator signed out");
    let cookie = session::cookie(SESSION_COOKIE, "", None, operator.secure);
    ([(header::SET_COOKIE, cookie)], Redirect::to("/console/login")).into_response()
}

#[derive(Deserialize)]
struct Find {
    csrf: String,
    kind: String,
    id: String,
}

/// An account or organisation by the id the backend knows it by: hashed
/// here (ids are never stored), then its page. A form post, so the id stays
/// out of addresses and logs.
async fn find(
    State(state): State<ApiState>,
    operator: Operator,
    navigation: Navigation,
    Form(form): Form<Find>,
) -> Response {
    let Some((_, history)) = parts(&state) else { return off() };
    if let Some(refused) = form_refused(&operator, &navigation, &form.csrf) {
        return refused;
    }
    let (hashed, path) = match form.kind.as_str() {
        "account" => (history.key().account(form.id.trim()), "accounts"),
        "organization" => (history.key().organization(form.id.trim()), "organizations"),
        _ => return refuse(StatusCode::BAD_REQUEST, "Choose accounts or organisations."),
    };
    match hashed {
        Ok(subject) => Redirect::to(&format!("/console/{path}/{}", subject.as_str())).into_response(),
        Err(e) => refuse(StatusCode::BAD_REQUEST, &format!("That id {e}.")),
    }
}

/// The periods the overview offers: name, length, bucket.
const RANGES: [(&str, i64, i64); 4] =
    [("24h", 24 * HOUR, HOUR), ("7d", 7 * DAY, 6 * HOUR), ("30d", 30 * DAY, DAY), ("90d", 90 * DAY, DAY)];
const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

#[derive(Deserialize)]
struct OverviewQuery {
    range: Option<String>,
}

async fn overview(
    State(state): State<ApiState>,
    operator: Operator,
    Query(query): Query<OverviewQuery>,
) -> Response {
    let Some((_, history)) = parts(&state) else { return off() };
    let name = query.range.as_deref().unwrap_or("7d");
    let Some(&(name, length, bucket)) = RANGES.iter().find(|(n, _, _)| *n == name) else {
        return refuse(StatusCode::BAD_REQUEST, "Unknown period: choose 24h, 7d, 30d or 90d.");
    };
    let now = state.clock().now().as_millisecond();
    // The last bucket is the current one; the first starts `length` before
    // the end of it.
    let end = (now.div_euclid(bucket) + 1) * bucket;
    let since = end - length;
    let store = history.store();
    let (counts, accounts, organizations) = tokio::join!(
        store.counts(since, bucket),
        store.summaries(SubjectKind::Account, true, 200),
        store.summaries(SubjectKind::Organization, true, 200),
    );
    let (counts, accounts, organizations) = match (counts, accounts, organizations) {
        (Ok(c), Ok(a), Ok(o)) => (c, a, o),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return unavailable(&e),
    };
    let view = pages::OverviewView {
        range: name,
        ranges: RANGES.map(|(n, _, _)| n),
        since,
        end,
        bucket,
        counts,
        accounts: ranked(accounts, RiskFilter::Flagged, Sort::Risk, true, 5),
        organizations: ranked(organizations, RiskFilter::Flagged, Sort::Risk, true, 5),
    };
    pages::overview(&operator.csrf, &view).into_response()
}

fn unavailable(error: &crate::history::HistoryError) -> Response {
    tracing::warn!(%error, "console: the history cannot answer");
    refuse(StatusCode::SERVICE_UNAVAILABLE, "The history cannot answer now. Try again shortly.")
}

/// Which risk levels a list shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RiskFilter {
    High,
    Flagged,
    All,
}

/// What a list is sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sort {
    Risk,
    Logins,
    Restricted,
    Held,
    Last,
}

impl Sort {
    pub(crate) const ALL: [(Self, &'static str); 5] = [
        (Self::Risk, "risk"),
        (Self::Logins, "logins"),
        (Self::Restricted, "restricted"),
        (Self::Held, "held"),
        (Self::Last, "last"),
    ];

    fn parse(text: &str) -> Option<Self> {
        Self::ALL.iter().find(|(_, name)| *name == text).map(|(sort, _)| *sort)
    }
}

/// One row of a list: the summary, its risk and why.
pub(crate) struct Row {
    pub summary: Summary,
    pub risk: Risk,
    pub why: Vec<String>,
}

/// Summaries judged, filtered, sorted and cut to `rows`.
fn ranked(
    summaries: Vec<Summary>,
    filter: RiskFilter,
    sort: Sort,
    descending: bool,
    rows: usize,
) -> Vec<Row> {
    let mut list: Vec<Row> = summaries
        .into_iter()
        .map(|summary| {
            let (risk, why) = summary.risk();
            Row { summary, risk, why }
        })
        .filter(|row| match filter {
            RiskFilter::High => row.risk == Risk::High,
            RiskFilter::Flagged => row.risk > Risk::Low,
            RiskFilter::All => true,
        })
        .collect();
    let key = |row: &Row| -> (i64, i64, i64) {
        let e = &row.summary.evidence;
        let risk = row.risk as i64;
        match sort {
            Sort::Risk => (risk, i64::from(e.restricted_device), i64::from(e.held)),
            Sort::Logins => (i64::from(e.logins), risk, 0),
            Sort::Restricted => (i64::from(e.restricted_device), risk, 0),
            Sort::Held => (i64::from(e.held), risk, 0),
            Sort::Last => (row.summary.last_ms, 0, 0),
        }
    };
    list.sort_by(|a, b| {
        let order = key(a).cmp(&key(b)).then_with(|| a.summary.subject.cmp(&b.summary.subject));
        if descending { order.reverse() } else { order }
    });
    list.truncate(rows);
    list
}

#[derive(Deserialize)]
struct ListQuery {
    risk: Option<String>,
    sort: Option<String>,
    order: Option<String>,
}

async fn accounts(
    State(state): State<ApiState>,
    operator: Operator,
    Query(query): Query<ListQuery>,
) -> Response {
    list(&state, &operator, SubjectKind::Account, &query).await
}

async fn organizations(
    State(state): State<ApiState>,
    operator: Operator,
    Query(query): Query<ListQuery>,
) -> Response {
    list(&state, &operator, SubjectKind::Organization, &query).await
}

async fn list(state: &ApiState, operator: &Operator, kind: SubjectKind, query: &ListQuery) -> Response {
    let Some((_, history)) = parts(state) else { return off() };
    let filter = match query.risk.as_deref().unwrap_or("flagged") {
        "high" => RiskFilter::High,
        "flagged" => RiskFilter::Flagged,
        "all" => RiskFilter::All,
        _ => return refuse(StatusCode::BAD_REQUEST, "Unknown risk filter: choose high, flagged or all."),
    };
    let Some(sort) = Sort::parse(query.sort.as_deref().unwrap_or("risk")) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "Unknown sort: choose risk, logins, restricted, held or last.",
        );
    };
    let descending = match query.order.as_deref().unwrap_or("desc") {
        "desc" => true,
        "asc" => false,
        _ => return refuse(StatusCode::BAD_REQUEST, "Unknown order: choose asc or desc."),
    };
    // Flagged ones come strongest first, so a few thousand hold every
    // high-risk one; "all" lists the most recently seen.
    let summaries = match history.store().summaries(kind, filter != RiskFilter::All, 5_000).await {
        Ok(summaries) => summaries,
        Err(e) => return unavailable(&e),
    };
    let rows = ranked(summaries, filter, sort, descending, LIST_ROWS);
    let view = pages::ListView { kind, filter, sort, descending, rows };
    pages::list(&operator.csrf, &view).into_response()
}

/// A stored subject from the address, or 404 (43 base64url characters).
fn stored_subject(text: &str) -> Option<crate::history::Subject> {
    let well_formed =
        text.len() == 43 && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    well_formed.then(|| crate::history::Subject::from_stored(text.to_owned()))
}

async fn account(State(state): State<ApiState>, operator: Operator, Path(subject): Path<String>) -> Response {
    subject_page(&state, &operator, SubjectKind::Account, &subject).await
}

async fn organization(
    State(state): State<ApiState>,
    operator: Operator,
    Path(subject): Path<String>,
) -> Response {
    subject_page(&state, &operator, SubjectKind::Organization, &subject).await
}

async fn subject_page(state: &ApiState, operator: &Operator, kind: SubjectKind, subject: &str) -> Response {
    let Some((console, history)) = parts(state) else { return off() };
    let Some(subject) = stored_subject(subject) else {
        return refuse(StatusCode::NOT_FOUND, "No such account or organisation.");
    };
    // Everything answered so far, then everything retained.
    if let Err(error) = history.flush().await {
        tracing::debug!(%error, "console: showing what the store has");
    }
    let now = state.clock().now().as_millisecond();
    let since = now.saturating_sub(i64::from(console.retention_days) * DAY);
    let store = history.store();
    let read = match kind {
        SubjectKind::Account => store.recent(&subject, since, 10_000).await.map(|events| (events, None)),
        SubjectKind::Organization => match store.organization(&subject, since).await {
            Ok(share) => {
                store.organization_recent(&subject, since, 10_000).await.map(|events| (events, Some(share)))
            }
            Err(e) => Err(e),
        },
    };
    let (events, share) = match read {
        Ok(read) => read,
        Err(e) => return unavailable(&e),
    };
    if events.is_empty() {
        return refuse(StatusCode::NOT_FOUND, "Nothing is retained for this account or organisation.");
    }
    let report =
        crate::history::report::subject_report(subject, console.retention_days, events, share, TIMELINE_ROWS);
    pages::subject(&operator.csrf, kind, &report, state.verifier().policy()).into_response()
}

async fn networks(State(state): State<ApiState>, operator: Operator) -> Response {
    let Some((console, history)) = parts(&state) else { return off() };
    let lately = |read: &Option<NetworksRead>| {
        read.as_ref()
            .filter(|(_, _, at)| at.elapsed() < NETWORKS_FOR)
            .map(|(n, networks, _)| (*n, networks.clone()))
    };
    let cached = console.networks.lock().ok().and_then(|read| lately(&read));
    let (read, networks) = match cached {
        Some(cached) => cached,
        None => match history.store().latest(NETWORK_EVENTS).await {
            Ok(events) => {
                let mut builder = crate::history::report::NetworksBuilder::default();
                for event in &events {
                    builder.add(event);
                }
                let networks = builder.finish(NETWORK_ROWS);
                if let Ok(mut read) = console.networks.lock() {
                    *read = Some((events.len(), networks.clone(), std::time::Instant::now()));
                }
                (events.len(), networks)
            }
            Err(e) => return unavailable(&e),
        },
    };
    pages::networks(&operator.csrf, read, &networks).into_response()
}

async fn live(State(state): State<ApiState>, operator: Operator) -> Response {
    let Some((_, history)) = parts(&state) else { return off() };
    match history.store().latest(50).await {
        Ok(events) => pages::live(&operator.csrf, &events, state.clock().now()).into_response(),
        Err(e) => unavailable(&e),
    }
}

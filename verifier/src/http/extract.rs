//! An axum extractor for backends that embed the verifier: the login
//! handler receives its own form and Meridian's verdict together.
//!
//! ```no_run
//! use std::sync::Arc;
//! use axum::{Router, routing::post, response::Html};
//! use meridian_verifier::http::{Checked, LoginCheck};
//! use meridian_verifier::verdict::Verdict;
//!
//! #[derive(serde::Deserialize)]
//! struct Login { email: String }
//!
//! async fn login(login: Checked<Login>) -> Html<String> {
//!     match login.verdict() {
//!         // The e-mail is the visitor's input: escape it before it goes into HTML.
//!         Verdict::Allow => Html(format!("welcome, {}", escape(&login.form.email))),
//!         Verdict::Review => Html("we sent you an e-mail to confirm it is you".into()),
//!         Verdict::Deny => Html("sign-in refused".into()),
//!     }
//! }
//!
//! fn escape(text: &str) -> String {
//!     text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
//! }
//!
//! # fn app(verifier: meridian_verifier::Verifier) -> Router {
//! Router::new()
//!     .route("/login", post(login))
//!     .with_state(LoginCheck::new(Arc::new(verifier)))
//! // serve with `into_make_service_with_connect_info::<SocketAddr>()`
//! # }
//! ```

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRef, FromRequest, FromRequestParts, Request};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use crate::clock::{Clock, SystemClock};
use crate::net::TrustedProxies;
use crate::verdict::Verdict;
use crate::{Verifier, VerifyInput, VerifyOutcome};

/// The form field the drop-in fills.
pub const TOKEN_FIELD: &str = "meridian-token";

/// The request header command-line tools, desktop apps and scripts send
/// their token in (`Meridian-Token`), read by [`CheckedHeader`].
pub const TOKEN_HEADER: &str = "meridian-token";

/// The largest login form [`Checked`] reads.
pub const MAX_FORM_BYTES: usize = 64 * 1024;

/// What [`Checked`] needs from the app's state: the verifier, a clock, the
/// trusted proxies, and what the token must be bound to.
#[derive(Clone)]
pub struct LoginCheck {
    verifier: Arc<Verifier>,
    clock: Arc<dyn Clock>,
    proxies: Arc<TrustedProxies>,
    action: Option<String>,
    origin: Option<String>,
    account_field: Option<String>,
    organization_field: Option<String>,
    account_header: Option<String>,
}

impl std::fmt::Debug for LoginCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginCheck")
            .field("verifier", &self.verifier)
            .field("action", &self.action)
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

impl LoginCheck {
    /// Checks with the system clock, no trusted proxies, and action `login`.
    pub fn new(verifier: Arc<Verifier>) -> Self {
        Self {
            verifier,
            clock: Arc::new(SystemClock),
            proxies: Arc::new(TrustedProxies::none()),
            action: Some("login".into()),
            origin: None,
            account_field: None,
            organization_field: None,
            account_header: None,
        }
    }

    /// Another clock (tests).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Believes these proxies' forwarding header (see [`super::ClientIp`]).
    pub fn with_trusted_proxies(self, proxies: TrustedProxies) -> Self {
        self.with_shared_proxies(Arc::new(proxies))
    }

    pub(crate) fn with_shared_proxies(mut self, proxies: Arc<TrustedProxies>) -> Self {
        self.proxies = proxies;
        self
    }

    /// The action tokens must carry (`None`: any).
    pub fn expect_action(mut self, action: Option<&str>) -> Self {
        self.action = action.map(str::to_owned);
        self
    }

    /// The form field naming the account (e.g. `email`), for the history,
    /// with [`Checked`].
    ///
    /// [`Checked`] verifies before the handler runs, so before any password
    /// in the same form is checked: the history would count an attempt with
    /// someone else's id as theirs. Use it where the form's account is
    /// already authenticated (a second step, a session); on a password form
    /// take [`Unchecked`] and name the account once the password is right.
    pub fn account_field(mut self, name: &str) -> Self {
        self.account_field = Some(name.to_owned());
        self
    }

    /// The request header naming the account for [`CheckedHeader`] (e.g.
    /// one the app's own authentication sets), for the history.
    pub fn account_header(mut self, name: &str) -> Self {
        self.account_header = Some(name.to_owned());
        self
    }

    /// The form field naming the account's organisation, for the history.
    pub fn organization_field(mut self, name: &str) -> Self {
        self.organization_field = Some(name.to_owned());
        self
    }

    /// The page origin tokens must come from (`None`: the policy's list).
    pub fn expect_origin(mut self, origin: Option<&str>) -> Self {
        self.origin = origin.map(str::to_owned);
        self
    }
}

/// A URL-encoded form whose Meridian token has been verified: the handler's
/// own fields in `form`, the verifier's answer in `outcome`.
#[derive(Debug)]
pub struct Checked<T> {
    /// The form, deserialized (the token field is ignored unless `T` names it).
    pub form: T,
    /// The verification: verdict, score and reasons, or the error codes.
    pub outcome: VerifyOutcome,
}

impl<T> Checked<T> {
    /// The verdict; a token that failed verification (missing, replayed,
    /// …) counts as `deny`, the drop-in's `collector-error` marker as the
    /// policy's `collector_error` says (default `review`); the codes are in
    /// `outcome.error_codes`.
    pub fn verdict(&self) -> Verdict {
        verdict_of(&self.outcome)
    }
}

/// A login form read, its Meridian token not verified yet: for forms with
/// a password. The handler checks the password first, then calls
/// [`Unchecked::verify`] with the account it authenticated, or with none
/// when the password was wrong. The history believes the ids it is given:
/// named before the password check, an attempt that types someone else's
/// e-mail address from a browser set to Shanghai would count as theirs, and
/// wrong-password attempts from a clean browser would crowd an account's
/// own past out of the signals' view.
///
/// ```no_run
/// # use axum::response::Html;
/// # use meridian_verifier::http::Unchecked;
/// # use meridian_verifier::verdict::Verdict;
/// #[derive(serde::Deserialize)]
/// struct Login { email: String, password: String }
///
/// async fn login(login: Unchecked<Login>) -> Html<&'static str> {
///     let account = check_password(&login.form.email, &login.form.password);
///     // Spends the token either way; names the account only when it is
///     // authenticated.
///     let checked = login.verify(account.as_deref(), None).await;
///     match (account, checked.verdict()) {
///         (Some(_), Verdict::Allow) => Html("welcome"),
///         (Some(_), Verdict::Review) => Html("check your e-mail to finish signing in"),
///         // A wrong password and a denied sign-in read the same. (The
///         // drop-in's error marker gets `Review` by default, which shows a
///         // right password as any second step does: keep limiting password
///         // attempts per account.)
///         _ => Html("sign-in failed"),
///     }
/// }
/// # fn check_password(_: &str, _: &str) -> Option<String> { None }
/// ```
#[must_use = "call `verify`, even when the password is wrong: it spends the token and records the attempt"]
pub struct Unchecked<T> {
    /// The form, deserialized (the token field is ignored unless `T` names it).
    pub form: T,
    check: LoginCheck,
    token: String,
    remote_ip: std::net::IpAddr,
    accept_language: Option<String>,
    /// The ids the form gives in [`LoginCheck::account_field`] and
    /// [`LoginCheck::organization_field`], for [`Checked`].
    named: (Option<String>, Option<String>),
}

impl<T> std::fmt::Debug for Unchecked<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token is the visitor's; the form may hold a password.
        f.debug_struct("Unchecked").field("remote_ip", &self.remote_ip).finish_non_exhaustive()
    }
}

impl<T> Unchecked<T> {
    /// Verifies the token (spending it) for `account` in `organization`:
    /// your own ids for an account the handler has authenticated, `None`
    /// for an attempt it has not (the attempt is then recorded against its
    /// network only).
    #[must_use = "the verdict is in the result"]
    pub async fn verify(self, account: Option<&str>, organization: Option<&str>) -> Checked<T> {
        let check = &self.check;
        let input = VerifyInput {
            token: &self.token,
            remote_ip: self.remote_ip,
            accept_language: self.accept_language.as_deref(),
            expected_action: check.action.as_deref(),
            expected_origin: check.origin.as_deref(),
            account: account.filter(|id| !id.is_empty()),
            organization: organization.filter(|id| !id.is_empty()),
        };
        let outcome = check.verifier.verify(&input, check.clock.now()).await;
        Checked { form: self.form, outcome }
    }
}

/// A request whose `Meridian-Token` header ([`TOKEN_HEADER`]) has been
/// verified: API routes called by command-line tools, desktop apps and
/// scripts (`meridian collect`, the `meridian-native` crate). Reads no
/// body, so it goes before the handler's own body extractor.
///
/// Native tokens are bound to `native:<the service's origin>`: configure
/// [`LoginCheck::expect_origin`] with it, so a token made for another
/// service (or a browser page's) is refused here.
#[derive(Debug)]
pub struct CheckedHeader {
    /// The verification: verdict, score and reasons, or the error codes.
    pub outcome: VerifyOutcome,
}

impl CheckedHeader {
    /// The verdict, as [`Checked::verdict`] gives it.
    pub fn verdict(&self) -> Verdict {
        verdict_of(&self.outcome)
    }
}

fn verdict_of(outcome: &VerifyOutcome) -> Verdict {
    let marker = outcome.error_codes == [crate::ErrorCode::CollectorError];
    if outcome.success || marker { outcome.verdict } else { Verdict::Deny }
}

/// The client address and `Accept-Language` of a request.
async fn client_of<S: Send + Sync>(
    check: &LoginCheck,
    parts: &mut axum::http::request::Parts,
    state: &S,
) -> Result<(std::net::IpAddr, Option<String>), CheckRejection> {
    let ConnectInfo(peer) = ConnectInfo::<SocketAddr>::from_request_parts(parts, state)
        .await
        .map_err(|_| CheckRejection::NoClientAddress)?;
    let remote_ip = super::ClientIp::resolve(&check.proxies, peer.ip(), &parts.headers).0;
    let values: Vec<&str> =
        parts.headers.get_all(header::ACCEPT_LANGUAGE).iter().filter_map(|v| v.to_str().ok()).collect();
    Ok((remote_ip, (!values.is_empty()).then(|| values.join(","))))
}

impl<S> FromRequestParts<S> for CheckedHeader
where
    S: Send + Sync,
    LoginCheck: FromRef<S>,
{
    type Rejection = CheckRejection;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        let check = LoginCheck::from_ref(state);
        let (remote_ip, accept_language) = client_of(&check, parts, state).await?;
        let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
        let input = VerifyInput {
            token: header(TOKEN_HEADER).unwrap_or_default(),
            remote_ip,
            accept_language: accept_language.as_deref(),
            expected_action: check.action.as_deref(),
            expected_origin: check.origin.as_deref(),
            account: check.account_header.as_deref().and_then(header).filter(|id| !id.is_empty()),
            organization: None,
        };
        let outcome = check.verifier.verify(&input, check.clock.now()).await;
        Ok(Self { outcome })
    }
}

/// Why a request could not even be checked: the app or the client is
/// broken, not the token.
#[derive(Debug, thiserror::Error)]
pub enum CheckRejection {
    /// The body is not `application/x-www-form-urlencoded`.
    #[error("expected a form (application/x-www-form-urlencoded)")]
    NotAForm,
    /// The body is larger than [`MAX_FORM_BYTES`] or could not be read.
    #[error("the form is too large or could not be read")]
    Unreadable,
    /// The form does not fit the handler's type.
    #[error("invalid form: {0}")]
    InvalidForm(String),
    /// The app is not served with `into_make_service_with_connect_info`.
    #[error(
        "the client address is unknown: serve the app with into_make_service_with_connect_info::<SocketAddr>()"
    )]
    NoClientAddress,
}

impl IntoResponse for CheckRejection {
    fn into_response(self) -> Response {
        let status = match self {
            Self::NotAForm => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Unreadable => StatusCode::PAYLOAD_TOO_LARGE,
            Self::InvalidForm(_) => StatusCode::BAD_REQUEST,
            Self::NoClientAddress => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status.is_server_error() {
            tracing::error!(error = %self, "Meridian login check is misconfigured");
        }
        (status, self.to_string()).into_response()
    }
}

impl<S, T> FromRequest<S> for Checked<T>
where
    S: Send + Sync,
    LoginCheck: FromRef<S>,
    T: DeserializeOwned + Send,
{
    type Rejection = CheckRejection;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let mut unchecked = Unchecked::<T>::from_request(request, state).await?;
        let (account, organization) = std::mem::take(&mut unchecked.named);
        Ok(unchecked.verify(account.as_deref(), organization.as_deref()).await)
    }
}

impl<S, T> FromRequest<S> for Unchecked<T>
where
    S: Send + Sync,
    LoginCheck: FromRef<S>,
    T: DeserializeOwned + Send,
{
    type Rejection = CheckRejection;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let check = LoginCheck::from_ref(state);
        let (mut parts, body) = request.into_parts();
        let is_form = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().starts_with("application/x-www-form-urlencoded"));
        if !is_form {
            return Err(CheckRejection::NotAForm);
        }
        let (remote_ip, accept_language) = client_of(&check, &mut parts, state).await?;
        let bytes =
            axum::body::to_bytes(body, MAX_FORM_BYTES).await.map_err(|_| CheckRejection::Unreadable)?;
        let form: T =
            serde_urlencoded::from_bytes(&bytes).map_err(|e| CheckRejection::InvalidForm(e.to_string()))?;
        let fields = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&bytes).unwrap_or_default();
        let field = |wanted: Option<&str>| {
            let wanted = wanted?;
            fields.iter().find(|(name, _)| name == wanted).map(|(_, value)| value.clone())
        };
        let named = (field(check.account_field.as_deref()), field(check.organization_field.as_deref()));
        Ok(Self {
            form,
            token: field(Some(TOKEN_FIELD)).unwrap_or_default(),
            remote_ip,
            accept_language,
            named,
            check,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic, reason = "tests fail by panicking")]
mod tests {
    use std::net::{IpAddr, SocketAddr};
    use std::sync::Arc;

    use axum::Router;
    use axum::body::Body;
    use axum::extract::connect_info::MockConnectInfo;
    use axum::http::{Request, StatusCode, header};
    use axum::routing::post;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;
    use crate::replay::MemoryReplayStore;
    use crate::testkit::Minter;
    use crate::{Policy, Verifier};

    #[derive(serde::Deserialize)]
    struct Login {
        email: String,
    }

    /// Echoes what the handler received: `email verdict codes`.
    async fn login(login: Checked<Login>) -> String {
        let mut codes: Vec<&str> = login.outcome.error_codes.iter().map(|c| c.as_str()).collect();
        codes.extend(login.outcome.reasons.iter().map(|r| r.code.as_str()));
        format!("{} {} {}", login.form.email, login.verdict().as_str(), codes.join(","))
    }

    fn app(minter: &Minter, check: impl FnOnce(LoginCheck) -> LoginCheck) -> Router {
        let verifier =
            Verifier::new(minter.keys.clone(), Policy::default(), Arc::new(MemoryReplayStore::new(100)));
        Router::new().route("/login", post(login)).with_state(check(LoginCheck::new(Arc::new(verifier))))
    }

    async fn post_form(app: &Router, body: String, extra: &[(&str, &str)]) -> (StatusCode, String) {
        let mut request =
            Request::post("/login").header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        for (name, value) in extra {
            request = request.header(*name, *value);
        }
        let response = app.clone().oneshot(request.body(Body::from(body)).unwrap()).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    fn peer(app: Router, ip: [u8; 4]) -> Router {
        app.layer(MockConnectInfo(SocketAddr::from((ip, 40_000))))
    }

    #[tokio::test]
    async fn the_handler_gets_its_form_and_the_verdict() {
        let minter = Minter::new(41);
        let app = peer(app(&minter, |c| c), [192, 0, 2, 7]);
        let now = jiff::Timestamp::now().as_millisecond();
        let token = minter.token(IpAddr::from([192, 0, 2, 7]), now, [1; 16]);
        let body = format!("email=ada%40example.com&meridian-token={token}");
        assert_eq!(
            post_form(&app, body.clone(), &[]).await,
            (StatusCode::OK, "ada@example.com allow ip_country_unknown".into())
        );
        assert_eq!(
            post_form(&app, body, &[]).await,
            (StatusCode::OK, "ada@example.com deny replayed".into()),
            "a token is spent once"
        );
        let (_, text) = post_form(&app, "email=a%40b.c".into(), &[]).await;
        assert_eq!(text, "a@b.c deny missing-input-token");
        let (_, text) = post_form(
            &app,
            "email=a%40b.c&meridian-token=meridian-error%3Achallenge-unreachable".into(),
            &[],
        )
        .await;
        assert_eq!(text, "a@b.c review collector-error", "the policy decides what the marker means");
    }

    #[tokio::test]
    async fn trusted_proxies_and_bindings_apply() {
        let minter = Minter::new(42);
        let proxies = TrustedProxies::parse(["10.0.0.0/8"]).unwrap();
        let app =
            peer(app(&minter, |c| c.with_trusted_proxies(proxies).expect_action(Some("pay"))), [10, 1, 2, 3]);
        let now = jiff::Timestamp::now().as_millisecond();
        let token = minter.token(IpAddr::from([192, 0, 2, 9]), now, [2; 16]);
        let body = format!("email=x%40y.z&meridian-token={token}");
        let forwarded = [("x-forwarded-for", "192.0.2.9")];
        // The example claims' action is `login`, not `pay`.
        assert_eq!(post_form(&app, body, &forwarded).await.1, "x@y.z deny action-mismatch");

        let app = peer(app_with_login_action(&minter), [10, 1, 2, 3]);
        let token = minter.token(IpAddr::from([192, 0, 2, 9]), now, [3; 16]);
        let body = format!("email=x%40y.z&meridian-token={token}");
        assert_eq!(
            post_form(&app, body.clone(), &forwarded).await.1,
            "x@y.z allow ip_country_unknown",
            "the forwarded IP is the client"
        );
    }

    #[derive(serde::Deserialize)]
    struct PasswordLogin {
        email: String,
        password: String,
    }

    /// A password form: the account is named only once its password is right.
    async fn password_login(login: Unchecked<PasswordLogin>) -> String {
        let account = (login.form.password == "right").then(|| login.form.email.clone());
        let checked = login.verify(account.as_deref(), None).await;
        format!("{} {}", account.is_some(), checked.verdict().as_str())
    }

    #[tokio::test]
    async fn a_password_form_names_the_account_only_once_the_password_is_right() {
        use crate::history::{History, SqliteHistory, SubjectKey};
        let minter = Minter::new(43);
        let key = SubjectKey::new([7; 32]);
        let history = History::new(Arc::new(SqliteHistory::in_memory().unwrap()), key.clone());
        let verifier =
            Verifier::new(minter.keys.clone(), Policy::default(), Arc::new(MemoryReplayStore::new(100)))
                .with_history(history.clone());
        let check = LoginCheck::new(Arc::new(verifier)).account_field("email");
        let app = peer(Router::new().route("/login", post(password_login)).with_state(check), [192, 0, 2, 7]);
        let now = jiff::Timestamp::now().as_millisecond();
        let mut answers = Vec::new();
        for (n, password) in [(10, "wrong"), (11, "wrong"), (12, "right")] {
            let token = minter.token(IpAddr::from([192, 0, 2, 7]), now, [n; 16]);
            let body = format!("email=ada%40example.com&password={password}&meridian-token={token}");
            answers.push(post_form(&app, body, &[]).await.1);
        }
        assert_eq!(answers, ["false allow", "false allow", "true allow"]);
        history.flush().await.unwrap();
        let ada = history.store().recent(&key.account("ada@example.com").unwrap(), 0, 100).await.unwrap();
        assert_eq!(ada.len(), 1, "only the attempt whose password was right is the account's");
        let all = history.store().scan(0, 0, 100).await.unwrap();
        assert_eq!(all.len(), 3, "the others are recorded under no account");
        assert!(all.iter().all(|(_, event)| event.error.is_none()), "every token was spent and accepted");
    }

    fn app_with_login_action(minter: &Minter) -> Router {
        let proxies = TrustedProxies::parse(["10.0.0.0/8"]).unwrap();
        app(minter, |c| c.with_trusted_proxies(proxies))
    }

    #[tokio::test]
    async fn broken_requests_are_refused_with_a_clear_status() {
        let minter = Minter::new(43);
        let served = peer(app(&minter, |c| c), [192, 0, 2, 7]);
        let response = served
            .clone()
            .oneshot(
                Request::post("/login")
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from("{}"))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert_eq!(post_form(&served, "nothing=here".into(), &[]).await.0, StatusCode::BAD_REQUEST);
        assert_eq!(
            post_form(&served, "a".repeat(MAX_FORM_BYTES + 1), &[]).await.0,
            StatusCode::PAYLOAD_TOO_LARGE
        );
        // Not served with connect info: a server error that names the fix.
        let bare = app(&minter, |c| c);
        let (status, text) = post_form(&bare, "email=a%40b.c".into(), &[]).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(text.contains("into_make_service_with_connect_info"), "{text}");
    }
}

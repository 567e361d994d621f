//! Who may read the console: the operator secret, sessions held here, the
//! cookie that names one, and the tokens every form carries.
//!
//! - **Sign-in.** The secret is compared by its SHA-256, in constant time.
//!   Attempts are limited per client address.
//! - **Sessions** live in this process only (a restart or another instance
//!   asks again): 32 random bytes in an `HttpOnly`, `SameSite=Strict`
//!   cookie, `Secure` when the request came over TLS, kept by their hash,
//!   ended by logout, after [`Sessions::idle`] without a request, or
//!   [`MAX_AGE`] after sign-in, whichever comes first.
//! - **Forms.** Every form that changes something carries a token the
//!   server checks: the session's own, or for the sign-in form one paired
//!   with a short-lived cookie (a login made from another site fails).
//!   Requests the browser marks as cross-site are refused before that.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

/// The session cookie.
pub(crate) const SESSION_COOKIE: &str = "meridian_console";
/// The sign-in form's cookie, paired with its hidden field.
pub(crate) const LOGIN_COOKIE: &str = "meridian_console_login";
/// The longest a session lasts, however busy.
pub(crate) const MAX_AGE: Duration = Duration::from_secs(12 * 3600);
/// How long a sign-in form stays usable.
pub(crate) const LOGIN_FORM_AGE: Duration = Duration::from_secs(600);
/// Sessions held at most; past that, sign-in waits for some to end.
const MAX_SESSIONS: usize = 1_000;

/// One signed-in operator.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    /// The token its forms carry.
    pub csrf: String,
    /// Unix ms, by the verifier's clock.
    started: i64,
    seen: i64,
}

/// The operator secret and the sessions it opened.
#[derive(Clone)]
pub(crate) struct Sessions {
    secret: [u8; 32],
    idle: Duration,
    open: Arc<Mutex<HashMap<[u8; 32], Session>>>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions").field("idle", &self.idle).finish_non_exhaustive()
    }
}

/// 32 random bytes as base64url.
pub(crate) fn random_token() -> Option<String> {
    let mut bytes = [0u8; 32];
    crate::random_bytes(&mut bytes).ok()?;
    Some(meridian_protocol::base64url_encode(&bytes))
}

/// Whether two texts are equal, in time that does not depend on where they
/// differ (nor on their lengths: their hashes are compared).
pub(crate) fn same(a: &str, b: &str) -> bool {
    Sha256::digest(a.as_bytes()).ct_eq(&Sha256::digest(b.as_bytes())).into()
}

impl Sessions {
    /// Sessions opened by `secret`, ended after `idle` without a request.
    pub(crate) fn new(secret: &str, idle: Duration) -> Self {
        Self { secret: Sha256::digest(secret.as_bytes()).into(), idle, open: Arc::default() }
    }

    /// Whether `attempt` is the operator secret.
    pub(crate) fn is_secret(&self, attempt: &str) -> bool {
        Sha256::digest(attempt.as_bytes()).ct_eq(&self.secret).into()
    }

    /// Opens a session at `now` (Unix ms): its cookie value, or `None` when
    /// full or without randomness.
    pub(crate) fn open(&self, now: i64) -> Option<String> {
        let token = random_token()?;
        let csrf = random_token()?;
        let mut open = self.open.lock().ok()?;
        if open.len() >= MAX_SESSIONS {
            open.retain(|_, session| self.live(session, now));
            if open.len() >= MAX_SESSIONS {
                tracing::warn!("console: {MAX_SESSIONS} sessions open; refusing another sign-in");
                return None;
            }
        }
        open.insert(Sha256::digest(token.as_bytes()).into(), Session { csrf, started: now, seen: now });
        Some(token)
    }

    fn live(&self, session: &Session, now: i64) -> bool {
        let within = |since: i64, limit: Duration| {
            u128::try_from(now.saturating_sub(since)).is_ok_and(|age| age < limit.as_millis())
        };
        within(session.seen, self.idle) && within(session.started, MAX_AGE)
    }

    /// The session `token` names, when it is open and live at `now`; marks
    /// it seen.
    pub(crate) fn get(&self, token: &str, now: i64) -> Option<Session> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut open = self.open.lock().ok()?;
        let live = open.get(&key).is_some_and(|session| self.live(session, now));
        if !live {
            open.remove(&key);
            return None;
        }
        let session = open.get_mut(&key)?;
        session.seen = now;
        Some(session.clone())
    }

    /// Ends the session `token` names.
    pub(crate) fn close(&self, token: &str) {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Ok(mut open) = self.open.lock() {
            open.remove(&key);
        }
    }
}

/// A `Set-Cookie` value: `HttpOnly`, `SameSite=Strict`, path `/console`,
/// `Secure` when `secure`; `max_age` `None` deletes it.
pub(crate) fn cookie(name: &str, value: &str, max_age: Option<Duration>, secure: bool) -> String {
    let age = max_age.map_or(0, |age| age.as_secs());
    let value = if max_age.is_some() { value } else { "" };
    let secure = if secure { "; Secure" } else { "" };
    format!("{name}={value}; Path=/console; Max-Age={age}; HttpOnly; SameSite=Strict{secure}")
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub(crate) fn cookie_value<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|line| line.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// Whether the browser says the request comes from another site: a
/// `Sec-Fetch-Site` of `cross-site` or `same-site`, or an `Origin` that is
/// not the request's own host.
pub(crate) fn cross_site(headers: &axum::http::HeaderMap) -> bool {
    use axum::http::header;
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        return !matches!(site, "same-origin" | "none");
    }
    match (headers.get(header::ORIGIN), headers.get(header::HOST)) {
        (None, _) => false,
        (Some(origin), Some(host)) => {
            let origin = origin.to_str().unwrap_or("");
            let host = host.to_str().unwrap_or("");
            let without_scheme = origin.split_once("://").map_or("", |(_, rest)| rest);
            without_scheme != host
        }
        (Some(_), None) => true,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail by panicking")]
mod tests {
    use super::*;
    use axum::http::{HeaderMap, HeaderValue};

    #[test]
    fn sessions_open_close_and_expire() {
        let sessions = Sessions::new("operator-secret-0123456789", Duration::from_secs(60));
        assert!(sessions.is_secret("operator-secret-0123456789"));
        assert!(!sessions.is_secret("operator-secret-012345678"));
        assert!(!sessions.is_secret(""));
        let token = sessions.open(0).unwrap();
        let session = sessions.get(&token, 59_000).unwrap();
        assert_eq!(session.csrf.len(), 43);
        assert!(sessions.get(&token, 118_000).is_some(), "each request keeps it alive");
        assert!(sessions.get("not-a-session", 0).is_none());
        sessions.close(&token);
        assert!(sessions.get(&token, 118_000).is_none(), "logged out");
        let token = sessions.open(0).unwrap();
        assert!(sessions.get(&token, 61_000).is_none(), "idle too long");
        let token = sessions.open(0).unwrap();
        let mut at = 0;
        while at < 12 * 3_600_000 - 30_000 {
            at += 30_000;
            assert!(sessions.get(&token, at).is_some());
        }
        assert!(sessions.get(&token, at + 30_000).is_none(), "twelve hours after sign-in, however busy");
        assert!(sessions.get(&sessions.open(0).unwrap(), -5).is_none(), "a clock that went back");
    }

    #[test]
    fn cookies_are_http_only_strict_and_secure_over_tls() {
        let set = cookie(SESSION_COOKIE, "abc", Some(Duration::from_secs(60)), true);
        assert_eq!(set, "meridian_console=abc; Path=/console; Max-Age=60; HttpOnly; SameSite=Strict; Secure");
        assert!(!cookie(SESSION_COOKIE, "abc", Some(Duration::from_secs(60)), false).contains("Secure"));
        assert!(
            cookie(SESSION_COOKIE, "abc", None, false)
                .starts_with("meridian_console=; Path=/console; Max-Age=0")
        );
        let mut headers = HeaderMap::new();
        headers.append("cookie", HeaderValue::from_static("a=1; meridian_console=xyz"));
        assert_eq!(cookie_value(&headers, SESSION_COOKIE), Some("xyz"));
        assert_eq!(cookie_value(&headers, LOGIN_COOKIE), None);
    }

    #[test]
    fn cross_site_requests_are_told_apart() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut map = HeaderMap::new();
            for (k, v) in pairs {
                map.append(*k, HeaderValue::from_static(v));
            }
            map
        };
        assert!(!cross_site(&headers(&[("sec-fetch-site", "same-origin")])));
        assert!(cross_site(&headers(&[("sec-fetch-site", "cross-site")])));
        assert!(cross_site(&headers(&[("sec-fetch-site", "same-site")])));
        assert!(!cross_site(&headers(&[("origin", "http://127.0.0.1:9"), ("host", "127.0.0.1:9")])));
        assert!(cross_site(&headers(&[("origin", "http://evil.example"), ("host", "127.0.0.1:9")])));
        assert!(cross_site(&headers(&[("origin", "null"), ("host", "127.0.0.1:9")])));
        assert!(!cross_site(&headers(&[])), "no browser signal: the form token decides");
    }
}

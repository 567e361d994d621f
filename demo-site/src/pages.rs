//! The demo's HTML, written as maud templates. The engine escapes every
//! value spliced into text or an attribute, so nothing a browser sends —
//! claims, reason sentences quoting them, the e-mail field — can add markup;
//! no template here splices a value pre-escaped. The look lives in
//! `static/demo.css`, so the pages carry no inline style the
//! Content-Security-Policy would have to allow.

use maud::{DOCTYPE, Markup, html};
use meridian_protocol::Claims;
use meridian_verifier::verdict::Verdict;
use meridian_verifier::{Network, VerifyOutcome};

use crate::SimulatedOrigin;

/// Where the pages link their style sheet.
pub(crate) const STYLESHEET_PATH: &str = "/static/demo.css";

/// The style sheet, built into the binary so the demo looks the same
/// wherever it is started from.
pub(crate) const STYLESHEET: &str = include_str!("../static/demo.css");

/// A whole page: head, `body` and the footer with the data credits.
fn page(title: &str, body: Markup) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
                link rel="stylesheet" href=(STYLESHEET_PATH);
            }
            body {
                main {
                    (body)
                    footer {
                        "Meridian checks whether a browser's own clock, time zone and language agree with where \
                         its traffic comes from. Nothing leaves this server. IP data: country by the NRO \
                         (CC BY 4.0), ASN by RouteViews and "
                        a href="https://db-ip.com" { "IP Geolocation by DB-IP" }
                        " (CC BY 4.0)."
                    }
                }
            }
        }
    }
    .into_string()
}

/// What the demo checks and what it does not, on both pages.
fn about() -> Markup {
    html! {
        section class="about" id="about" aria-labelledby="about-title" {
            h2 id="about-title" { "About Meridian" }
            p {
                "Meridian asks one question: does this browser's own clock, time zone and language agree with \
                 where its connection comes from? It is meant for login pages, to notice people who hide where \
                 they are behind a VPN or proxy."
            }
            h3 { "What it checks" }
            ul {
                li {
                    "The time zone and UTC offset your browser reports against the zones and offsets in use in \
                     the country of your IP."
                }
                li {
                    "Your browser's languages against the languages of that country, and against the "
                    code { "Accept-Language" }
                    " header your browser sends."
                }
                li {
                    "Whether the time and language functions in the page are the browser's own, and whether a \
                     background worker sees the same zone and languages as the page (spoofing extensions \
                     usually patch only the page)."
                }
                li {
                    "Your clock against the server's, whether the IP belongs to a cloud, hosting or VPN \
                     network, and whether the signals point into a region the site restricts."
                }
            }
            h3 { "What it does not do" }
            ul {
                li {
                    "It does not fingerprint or identify you, and stores nothing but a used-challenge number \
                     for two minutes."
                }
                li { "It knows countries, not cities or exact places." }
                li {
                    "It cannot see a change made below the page — an operating-system time zone set to match a \
                     VPN, or a modified browser engine — because then everything in the browser agrees; only \
                     the network checks remain."
                }
                li {
                    "A signed token proves the claims were not edited after the collector made them, not that \
                     they are true."
                }
            }
        }
    }
}

/// The login page: a normal form, marked for the drop-in collector, with
/// the demo's simulated network origin selector.
pub(crate) fn login(simulated: &[SimulatedOrigin], wasm_signer: bool) -> String {
    page(
        "Sign in — Meridian demo",
        html! {
            h1 { "Sign in" }
            p class="lead" {
                "A demo login. When you press "
                em { "Sign in" }
                ", Meridian's collector signs what your browser says about its clock, time zone and \
                 languages, and the server compares it with where your connection comes from."
            }
            form class="login" method="post" action="/login" data-meridian {
                label {
                    "Email "
                    input type="email" name="email" autocomplete="username" required value="ada@example.com";
                }
                label {
                    "Password "
                    input type="password" name="password" autocomplete="current-password" required
                        value="demo-password";
                }
                label {
                    "Simulated network origin "
                    select name="simulate" id="simulate" {
                        option value="" { "My real connection" }
                        @for origin in simulated {
                            option value=(origin.ip) { (origin.label) " — " (origin.ip) }
                        }
                    }
                }
                p class="note" {
                    "On localhost every visitor comes from 127.0.0.1, which belongs to no country. Pick a \
                     sample IP to see what the verdict would be if your connection came from there. (Demo \
                     only.)"
                }
                input type="hidden" name="meridian-token" value="";
                button type="submit" id="sign-in" { "Sign in" }
            }
            script type="module" src="/pkg/meridian.js" data-action="login"
                data-signer=[wasm_signer.then_some("wasm")] {}
            (about())
        },
    )
}

/// The result page: the verdict, why, and the browser's claims beside the
/// network's facts.
pub(crate) fn result(email: &str, outcome: &VerifyOutcome, simulated: Option<&SimulatedOrigin>) -> String {
    let (class, headline) = match (outcome.success, outcome.verdict) {
        (false, _) => ("deny", "Token rejected"),
        (true, Verdict::Allow) => ("allow", "Allowed"),
        (true, Verdict::Review) => ("review", "Review"),
        (true, Verdict::Deny) => ("deny", "Denied"),
    };
    let country = outcome.network.as_ref().and_then(|n| n.country.as_deref());
    page(
        "Sign-in result — Meridian demo",
        html! {
            h1 { "Sign-in result" }
            p class="lead" { "for " (email) }
            div class={ "verdict " (class) } id="verdict" data-success=(outcome.success)
                data-verdict=(outcome.verdict.as_str()) {
                strong { (headline) }
                " — risk score " (outcome.score) "/100"
            }
            @if !outcome.error_codes.is_empty() {
                h2 { "Why the token was not accepted" }
                ul class="errors" id="error-codes" {
                    @for code in &outcome.error_codes {
                        li { code { (code.as_str()) } " — " (explain_error(code.as_str())) }
                    }
                }
            }
            @if outcome.success {
                h2 { "What looks off" }
                (reasons(outcome))
            }
            div class="sides" {
                @if let Some(claims) = &outcome.claims {
                    (claims_table(claims, outcome))
                }
                @if let Some(network) = &outcome.network {
                    (network_table(network, simulated))
                }
            }
            @if let Some(claims) = &outcome.claims {
                (offset_figure(
                    claims.time_zone.offset_now_min,
                    &claims.time_zone.zone,
                    country,
                    jiff::Timestamp::from_millisecond(claims.signed_at_ms)
                        .unwrap_or_else(|_| jiff::Timestamp::now()),
                ))
            }
            p { a href="/" { "Try again" } " · " a href="#about" { "What is checked" } }
            (about())
        },
    )
}

/// What looks off: each reason with its title, weight, confidence and
/// sentence, or a line saying nothing does.
fn reasons(outcome: &VerifyOutcome) -> Markup {
    html! {
        @if outcome.reasons.is_empty() {
            p id="reasons" {
                "Nothing: the browser's clock, time zone and languages fit where its connection comes from."
            }
        } @else {
            ul class="reasons" id="reasons" {
                @for reason in &outcome.reasons {
                    li data-code=(reason.code.as_str()) {
                        strong { (reason.code.title()) }
                        " "
                        span class="weight" { (format!("{:+}", reason.weight)) }
                        " "
                        span class="confidence" { (reason.confidence.as_str()) " confidence" }
                        br;
                        (reason.detail)
                        " "
                        code { (reason.code.as_str()) }
                    }
                }
            }
        }
    }
}

/// The browser's side: what its claims say, and its clock skew.
fn claims_table(claims: &Claims, outcome: &VerifyOutcome) -> Markup {
    let tz = &claims.time_zone;
    let locale = &claims.locale;
    let offsets = format!(
        "now {}, 1 Jan {}, 1 Jul {}",
        utc_offset(tz.offset_now_min),
        utc_offset(tz.offset_jan_min),
        utc_offset(tz.offset_jul_min)
    );
    let languages = locale.languages.join(", ");
    let intl = format!("{} / {} / {}", locale.calendar, locale.numbering, locale.hour_cycle);
    let rows = [
        ("Time zone", tz.zone.as_str()),
        ("UTC offsets", offsets.as_str()),
        ("Locale", locale.locale.as_str()),
        ("Languages", languages.as_str()),
        ("Calendar / numbering / hour cycle", intl.as_str()),
        ("Page origin", claims.origin.as_str()),
        ("Action", claims.action.as_str()),
    ];
    html! {
        section {
            h2 { "What the browser says" }
            table id="claims" {
                @for (name, value) in rows {
                    tr { th scope="row" { (name) } td { (value) } }
                }
                @if let Some(clock) = outcome.clock {
                    tr {
                        th scope="row" { "Clock skew" }
                        td { (clock.skew_ms) " ms ± " (clock.uncertainty_ms) " ms" }
                    }
                }
            }
        }
    }
}

/// The network's side: the IP (and whether it is simulated), its country,
/// network and whether that is a hosting or VPN network.
fn network_table(network: &Network, simulated: Option<&SimulatedOrigin>) -> Markup {
    let asn = match (network.asn, &network.org) {
        (Some(asn), Some(org)) => format!("AS{asn} {org}"),
        (Some(asn), None) => format!("AS{asn}"),
        _ => "unknown".to_owned(),
    };
    let hosting = match network.hosting {
        Some(true) => "yes — a hosting, cloud or VPN network",
        Some(false) => "no",
        None => "unknown",
    };
    html! {
        section {
            h2 { "What the network says" }
            table id="network" {
                tr {
                    th scope="row" { "IP" }
                    td {
                        (network.ip)
                        @if let Some(origin) = simulated {
                            " "
                            span class="note" {
                                "(simulated: " (origin.label) "; the IP-changed check is skipped)"
                            }
                        }
                    }
                }
                tr {
                    th scope="row" { "Country" }
                    td id="network-country" { (network.country.as_deref().unwrap_or("unknown")) }
                }
                tr { th scope="row" { "Network" } td { (asn) } }
                tr { th scope="row" { "Hosting / VPN" } td { (hosting) } }
            }
        }
    }
}

/// Left edge of the offset strip (UTC−12) and the width of one hour, in
/// SVG units; the strip runs to UTC+14, the easternmost offset in use.
const STRIP_X: f64 = 20.0;
const HOUR: f64 = 20.0;

fn strip_x(offset_min: i32) -> f64 {
    STRIP_X + (f64::from(offset_min.clamp(-12 * 60, 14 * 60)) / 60.0 + 12.0) * HOUR
}

/// A whole hour as the strip labels it: `+9`, `−5`, `0`.
fn hour_label(hour: i32) -> String {
    match hour {
        1.. => format!("+{hour}"),
        0 => "0".to_owned(),
        _ => format!("−{}", -hour),
    }
}

/// The browser's UTC offset on a strip of every offset from UTC−12 to
/// UTC+14, beside the offsets in use in the IP's country at `at`: an SVG
/// drawn here, with a caption in words for those who cannot see it.
///
/// SVG elements are closed explicitly (`{}`): inside an HTML page an
/// unclosed `<rect>` would swallow the elements after it.
fn offset_figure(browser_min: i32, zone: &str, country: Option<&str>, at: jiff::Timestamp) -> Markup {
    let offsets = country.map(|c| meridian_verifier::checks::tz::country_offsets(c, at)).unwrap_or_default();
    let description = match (country, offsets.is_empty()) {
        (Some(code), false) => format!(
            "The browser is at {}; {code} uses {}.",
            utc_offset(browser_min),
            offsets.iter().map(|o| utc_offset(*o)).collect::<Vec<_>>().join(", ")
        ),
        _ => format!("The browser is at {}; the IP's country is unknown.", utc_offset(browser_min)),
    };
    let verdict = match (country, offsets.is_empty()) {
        (Some(code), false) if offsets.contains(&browser_min) => {
            format!("The browser's offset is one {code} uses.")
        }
        (Some(code), false) => format!("No zone of {code} is at the browser's offset right now."),
        _ => "Without a country for the IP there is nothing to compare.".to_owned(),
    };
    let country_name = country.unwrap_or("");
    // The browser's marker and label, kept inside the picture near its edges.
    let x = strip_x(browser_min);
    let anchor = if x < 120.0 {
        "start"
    } else if x > 440.0 {
        "end"
    } else {
        "middle"
    };
    html! {
        figure aria-label="UTC offsets" {
            h2 { "Clock against country" }
            svg id="offset-strip" viewBox="0 0 560 150" role="img" aria-labelledby="strip-title strip-desc"
                xmlns="http://www.w3.org/2000/svg" font-family="system-ui, sans-serif" font-size="13" {
                title id="strip-title" { "The browser's UTC offset against the offsets of the IP's country" }
                desc id="strip-desc" { (description) }
                // The strip, hour ticks and labels every three hours.
                rect x=(STRIP_X) y="58" width=(26.0 * HOUR) height="28" rx="4" fill="#e4e7ef" {}
                @for hour in -12..=14 {
                    @let tick = strip_x(hour * 60);
                    line x1=(tick) y1="86" x2=(tick) y2=(if hour % 3 == 0 { 94 } else { 90 }) stroke="#8a90a0" {}
                    @if hour % 3 == 0 {
                        text x=(tick) y="108" text-anchor="middle" fill="#667" { (hour_label(hour)) }
                    }
                }
                // The country's offsets: green bands, labelled above.
                @for (i, offset) in offsets.iter().enumerate() {
                    rect class="country-offset" data-offset=(offset) x=(strip_x(*offset) - HOUR / 2.0) y="58"
                        width=(HOUR) height="28" fill="#1f7a3d" fill-opacity="0.75" {}
                    @if offsets.len() <= 3 {
                        text x=(strip_x(*offset)) y=(if i % 2 == 0 { 50 } else { 34 }) text-anchor="middle"
                            fill="#1f7a3d" font-weight="600" {
                            (country_name) " " (utc_offset(*offset))
                        }
                    }
                }
                @if let (Some(first), Some(last)) = (offsets.first(), offsets.last())
                    && offsets.len() > 3 {
                    text x=((strip_x(*first) + strip_x(*last)) / 2.0) y="50" text-anchor="middle" fill="#1f7a3d"
                        font-weight="600" {
                        (country_name) ": " (utc_offset(*first)) " to " (utc_offset(*last))
                    }
                }
                // The browser: a blue marker with its label below the axis.
                g id="browser-offset" data-offset=(browser_min) {
                    line x1=(x) y1="52" x2=(x) y2="92" stroke="#2457d6" stroke-width="4" {}
                    path d={ "M" (x - 7.0) " 118 l7 -10 l7 10 z" } fill="#2457d6" {}
                    text x=(x) y="138" text-anchor=(anchor) fill="#2457d6" font-weight="600" {
                        "Browser " (utc_offset(browser_min)) " (" (zone) ")"
                    }
                }
            }
            figcaption { (description) " " (verdict) }
        }
    }
}

fn explain_error(code: &str) -> &'static str {
    match code {
        "missing-input-token" => {
            "the form arrived without a token (scripts blocked, or the collector could not run)."
        }
        "malformed-token" => "the token is not a Meridian token.",
        "unsupported-algorithm" => "the token is not signed with Ed25519.",
        "unknown-key" => "the token was signed by a collector build this server does not trust.",
        "bad-signature" => "the token was altered after it was signed.",
        "bad-challenge" => "the token is bound to a challenge this server did not issue.",
        "expired" => "the page was open too long; the challenge expired. Reload and try again.",
        "replayed" => "this token was already used once.",
        "origin-mismatch" => "the token was collected on another site.",
        "action-mismatch" => "the token was collected for another action.",
        "internal-error" => "the server could not check single use right now.",
        "collector-error" => {
            "the browser could not run Meridian's collector (verifier unreachable or WebAssembly blocked); the form was sent without a token."
        }
        _ => "the request could not be checked.",
    }
}

fn utc_offset(minutes: i32) -> String {
    let sign = if minutes < 0 { '−' } else { '+' };
    let minutes = minutes.unsigned_abs();
    format!("UTC{sign}{:02}:{:02}", minutes / 60, minutes % 60)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic, reason = "tests fail by panicking")]
mod tests {
    use meridian_verifier::TokenError;
    use meridian_verifier::geo::IpFacts;
    use meridian_verifier::verdict::{Reason, ReasonCode};

    use super::*;

    /// A verified outcome whose every browser-stated value is `payload`, as
    /// a hostile page could make its collector sign.
    fn outcome_claiming(payload: &str) -> VerifyOutcome {
        let mut claims = Claims::example();
        claims.time_zone.zone = payload.into();
        claims.locale.locale = payload.into();
        claims.locale.languages = vec![payload.into(), "en".into()];
        claims.locale.calendar = payload.into();
        claims.origin = payload.into();
        claims.action = payload.into();
        let mut network = Network::new([192, 0, 2, 10].into(), IpFacts::default());
        network.country = Some("SG".into());
        // Built from a rejection and turned into a verified outcome, so that
        // fields added to the outcome later need no change here.
        let mut outcome = VerifyOutcome::rejected(TokenError::Missing, network);
        outcome.success = true;
        outcome.verdict = Verdict::Review;
        outcome.error_codes.clear();
        outcome.reasons =
            vec![Reason::new(ReasonCode::TzCountryMismatch, 10, format!("{payload} is not a zone of SG."))];
        outcome.claims = Some(claims);
        outcome
    }

    #[test]
    fn browser_values_are_escaped_on_the_result_page() {
        for payload in ["<script>alert(1)</script>", r#""><img src=x onerror=alert(1)>"#] {
            let page = result(payload, &outcome_claiming(payload), None);
            let escaped = payload
                .replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
                .replace('"', "&quot;");
            assert!(!page.contains(payload), "{payload} appears raw:\n{page}");
            assert!(!page.contains("<script") && !page.contains("<img"), "{payload} made markup:\n{page}");
            for shown in [
                format!(r#"<p class="lead">for {escaped}</p>"#),
                format!("<td>{escaped}</td>"),
                format!("<td>{escaped}, en</td>"),
                format!("<td>{escaped} / latn / h23</td>"),
                format!("<br>{escaped} is not a zone of SG."),
                format!("({escaped})</text>"),
            ] {
                assert!(page.contains(&shown), "{payload}: no {shown:?} in\n{page}");
            }
        }
    }

    #[test]
    fn pages_carry_no_inline_style() {
        // The policy allows style sheets from this origin only: an inline
        // style would be dropped by the browser, not drawn.
        for page in [
            login(&[], false),
            login(&[], true),
            result("ada@example.com", &outcome_claiming("Asia/Tokyo"), None),
        ] {
            assert!(page.contains(r#"<link rel="stylesheet" href="/static/demo.css">"#), "{page}");
            assert!(!page.contains(" style=") && !page.contains("<style"), "{page}");
        }
    }

    #[test]
    fn the_signer_is_chosen_on_the_script_tag() {
        assert!(!login(&[], false).contains("data-signer"));
        assert!(login(&[], true).contains(r#"data-action="login" data-signer="wasm""#));
    }

    #[test]
    fn formats_offsets() {
        assert_eq!(utc_offset(330), "UTC+05:30");
        assert_eq!(utc_offset(-300), "UTC−05:00");
        assert_eq!([-12, -3, 0, 3, 14].map(hour_label), ["−12", "−3", "0", "+3", "+14"]);
    }

    #[test]
    fn offset_figure_places_the_browser_among_the_country_offsets() {
        let at = jiff::Timestamp::from_second(1_813_309_200).unwrap(); // 2027-06-18T09:00Z
        let same = offset_figure(480, "Asia/Shanghai", Some("SG"), at).into_string();
        assert!(same.contains(r#"class="country-offset" data-offset="480""#), "{same}");
        assert!(same.contains(r#"id="browser-offset" data-offset="480""#), "{same}");
        assert!(same.contains("The browser is at UTC+08:00; SG uses UTC+08:00."), "{same}");
        assert!(same.contains("is one SG uses"), "{same}");

        let apart = offset_figure(120, "Europe/Berlin", Some("US"), at).into_string();
        for offset in [-240, -300, -360, -420, -480, -600] {
            assert!(
                apart.contains(&format!(r#"data-offset="{offset}""#)),
                "US summer offset {offset}: {apart}"
            );
        }
        assert!(apart.contains("No zone of US is at the browser's offset"), "{apart}");
        assert!(apart.contains("US: UTC−10:00 to UTC−04:00"), "{apart}");

        let unknown = offset_figure(-210, "America/St_Johns", None, at).into_string();
        assert!(unknown.contains("the IP's country is unknown"), "{unknown}");
        assert!(!unknown.contains("country-offset"), "{unknown}");
    }
}

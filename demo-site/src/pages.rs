//! The demo's HTML. Every value from a request or a token is escaped.

use std::fmt::Write;

use meridian_verifier::VerifyOutcome;
use meridian_verifier::verdict::Verdict;

use crate::SimulatedOrigin;

/// Where the pages link their style sheet.
pub const STYLESHEET_PATH: &str = "/static/demo.css";

/// The style sheet, built into the binary so the demo looks the same
/// wherever it is started from.
pub const STYLESHEET: &str = include_str!("../static/demo.css");

/// What the demo checks and what it does not, on both pages.
const ABOUT: &str = r#"<section class="about" id="about" aria-labelledby="about-title">
<h2 id="about-title">About Meridian</h2>
<p>Meridian asks one question: does this browser's own clock, time zone and language agree with where its connection
comes from? It is meant for login pages, to notice people who hide where they are behind a VPN or proxy.</p>
<h3>What it checks</h3>
<ul>
<li>The time zone and UTC offset your browser reports against the zones and offsets in use in the country of your IP.</li>
<li>Your browser's languages against the languages of that country, and against the <code>Accept-Language</code> header
your browser sends.</li>
<li>Whether the time and language functions in the page are the browser's own, and whether a background worker sees the
same zone and languages as the page (spoofing extensions usually patch only the page).</li>
<li>Your clock against the server's, whether the IP belongs to a cloud, hosting or VPN network, and whether the
signals point into a region the site restricts.</li>
</ul>
<h3>What it does not do</h3>
<ul>
<li>It does not fingerprint or identify you, and stores nothing but a used-challenge number for two minutes.</li>
<li>It knows countries, not cities or exact places.</li>
<li>It cannot see a change made below the page — an operating-system time zone set to match a VPN, or a modified
browser engine — because then everything in the browser agrees; only the network checks remain.</li>
<li>A signed token proves the claims were not edited after the collector made them, not that they are true.</li>
</ul>
</section>"#;

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{title}</title><link rel=\"stylesheet\" href=\"{STYLESHEET_PATH}\"></head><body><main>{body}\
<footer>Meridian checks whether a browser's own clock, time zone and language agree with where its traffic comes from. \
Nothing leaves this server. IP data: country by the NRO (CC BY 4.0), ASN by RouteViews and \
<a href=\"https://db-ip.com\">IP Geolocation by DB-IP</a> (CC BY 4.0).</footer></main></body></html>\n",
        title = escape(title),
    )
}

/// The login page: a normal form, marked for the drop-in collector, with
/// the demo's simulated network origin selector.
pub fn login(simulated: &[SimulatedOrigin]) -> String {
    let mut options = String::from("<option value=\"\">My real connection</option>");
    for origin in simulated {
        let _ = write!(
            options,
            "<option value=\"{}\">{} — {}</option>",
            escape(&origin.ip.to_string()),
            escape(&origin.label),
            escape(&origin.ip.to_string())
        );
    }
    page(
        "Sign in — Meridian demo",
        &format!(
            r#"<h1>Sign in</h1>
<p class="lead">A demo login. When you press <em>Sign in</em>, Meridian's collector signs what your browser says about its
clock, time zone and languages, and the server compares it with where your connection comes from.</p>
<form class="login" method="post" action="/login" data-meridian>
  <label>Email <input type="email" name="email" autocomplete="username" required value="ada@example.com"></label>
  <label>Password <input type="password" name="password" autocomplete="current-password" required value="demo-password"></label>
  <label>Simulated network origin <select name="simulate" id="simulate">{options}</select></label>
  <p class="note">On localhost every visitor comes from 127.0.0.1, which belongs to no country. Pick a sample IP to see
  what the verdict would be if your connection came from there. (Demo only.)</p>
  <input type="hidden" name="meridian-token" value="">
  <button type="submit" id="sign-in">Sign in</button>
</form>
<script type="module" src="/pkg/meridian.js" data-action="login"></script>
{ABOUT}"#
        ),
    )
}

/// The result page: the verdict, why, and the browser's claims beside the
/// network's facts.
pub fn result(email: &str, outcome: &VerifyOutcome, simulated: Option<&SimulatedOrigin>) -> String {
    let mut body = String::new();
    let (class, headline) = match (outcome.success, outcome.verdict) {
        (false, _) => ("deny", "Token rejected"),
        (true, Verdict::Allow) => ("allow", "Allowed"),
        (true, Verdict::Review) => ("review", "Review"),
        (true, Verdict::Deny) => ("deny", "Denied"),
    };
    let _ = write!(
        body,
        "<h1>Sign-in result</h1><p class=\"lead\">for {}</p>\
<div class=\"verdict {class}\" id=\"verdict\" data-success=\"{}\" data-verdict=\"{}\"><strong>{headline}</strong> — risk score {}/100</div>",
        escape(email),
        outcome.success,
        outcome.verdict.as_str(),
        outcome.score,
    );
    if !outcome.error_codes.is_empty() {
        body.push_str("<h2>Why the token was not accepted</h2><ul class=\"errors\" id=\"error-codes\">");
        for code in &outcome.error_codes {
            let _ =
                write!(body, "<li><code>{}</code> — {}</li>", code.as_str(), explain_error(code.as_str()));
        }
        body.push_str("</ul>");
    }
    if outcome.success {
        body.push_str("<h2>What looks off</h2>");
        if outcome.reasons.is_empty() {
            body.push_str(
                "<p id=\"reasons\">Nothing: the browser's clock, time zone and languages fit where its connection comes from.</p>",
            );
        } else {
            body.push_str("<ul class=\"reasons\" id=\"reasons\">");
            for reason in &outcome.reasons {
                let _ = write!(
                    body,
                    "<li data-code=\"{code}\"><strong>{title}</strong> <span class=\"weight\">+{weight}</span> <span class=\"confidence\">{confidence} confidence</span><br>{detail} <code>{code}</code></li>",
                    code = reason.code.as_str(),
                    title = escape(reason.code.title()),
                    confidence = reason.confidence.as_str(),
                    weight = reason.weight,
                    detail = escape(&reason.detail),
                );
            }
            body.push_str("</ul>");
        }
    }
    body.push_str("<div class=\"sides\">");
    if let Some(claims) = &outcome.claims {
        body.push_str("<section><h2>What the browser says</h2><table id=\"claims\">");
        let offsets = format!(
            "now {}, 1 Jan {}, 1 Jul {}",
            utc_offset(claims.time_zone.offset_now_min),
            utc_offset(claims.time_zone.offset_jan_min),
            utc_offset(claims.time_zone.offset_jul_min)
        );
        let rows = [
            ("Time zone", claims.time_zone.zone.clone()),
            ("UTC offsets", offsets),
            ("Locale", claims.locale.locale.clone()),
            ("Languages", claims.locale.languages.join(", ")),
            (
                "Calendar / numbering / hour cycle",
                format!(
                    "{} / {} / {}",
                    claims.locale.calendar, claims.locale.numbering, claims.locale.hour_cycle
                ),
            ),
            ("Page origin", claims.origin.clone()),
            ("Action", claims.action.clone()),
        ];
        for (name, value) in rows {
            let _ = write!(body, "<tr><th scope=\"row\">{name}</th><td>{}</td></tr>", escape(&value));
        }
        if let Some(clock) = outcome.clock {
            let _ = write!(
                body,
                "<tr><th scope=\"row\">Clock skew</th><td>{} ms ± {} ms</td></tr>",
                clock.skew_ms, clock.uncertainty_ms
            );
        }
        body.push_str("</table></section>");
    }
    if let Some(network) = &outcome.network {
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
        let _ = write!(
            body,
            "<section><h2>What the network says</h2><table id=\"network\"><tr><th scope=\"row\">IP</th><td>{}{}</td></tr>\
<tr><th scope=\"row\">Country</th><td id=\"network-country\">{}</td></tr><tr><th scope=\"row\">Network</th><td>{}</td></tr>\
<tr><th scope=\"row\">Hosting / VPN</th><td>{}</td></tr></table></section>",
            escape(&network.ip.to_string()),
            simulated
                .map(|o| format!(
                    " <span class=\"note\">(simulated: {}; the IP-changed check is skipped)</span>",
                    escape(&o.label)
                ))
                .unwrap_or_default(),
            escape(network.country.as_deref().unwrap_or("unknown")),
            escape(&asn),
            hosting,
        );
    }
    body.push_str("</div>");
    if let Some(claims) = &outcome.claims {
        let country = outcome.network.as_ref().and_then(|n| n.country.as_deref());
        let at =
            jiff::Timestamp::from_millisecond(claims.signed_at_ms).unwrap_or_else(|_| jiff::Timestamp::now());
        body.push_str(&offset_figure(claims.time_zone.offset_now_min, &claims.time_zone.zone, country, at));
    }
    body.push_str("<p><a href=\"/\">Try again</a> · <a href=\"#about\">What is checked</a></p>");
    body.push_str(ABOUT);
    page("Sign-in result — Meridian demo", &body)
}

/// Left edge of the offset strip (UTC−12) and the width of one hour, in
/// SVG units; the strip runs to UTC+14, the easternmost offset in use.
const STRIP_X: f64 = 20.0;
const HOUR: f64 = 20.0;

fn strip_x(offset_min: i32) -> f64 {
    STRIP_X + (f64::from(offset_min.clamp(-12 * 60, 14 * 60)) / 60.0 + 12.0) * HOUR
}

/// The browser's UTC offset on a strip of every offset from UTC−12 to
/// UTC+14, beside the offsets in use in the IP's country at `at`: an SVG
/// drawn here, with a caption in words for those who cannot see it.
fn offset_figure(browser_min: i32, zone: &str, country: Option<&str>, at: jiff::Timestamp) -> String {
    let offsets = country.map(|c| meridian_verifier::checks::tz::country_offsets(c, at)).unwrap_or_default();
    let mut svg = String::new();
    let _ = write!(
        svg,
        "<svg id=\"offset-strip\" viewBox=\"0 0 560 150\" role=\"img\" aria-labelledby=\"strip-title strip-desc\" \
xmlns=\"http://www.w3.org/2000/svg\" font-family=\"system-ui, sans-serif\" font-size=\"13\">\
<title id=\"strip-title\">The browser's UTC offset against the offsets of the IP's country</title>"
    );
    let description = match (country, offsets.is_empty()) {
        (Some(code), false) => format!(
            "The browser is at {}; {code} uses {}.",
            utc_offset(browser_min),
            offsets.iter().map(|o| utc_offset(*o)).collect::<Vec<_>>().join(", ")
        ),
        _ => format!("The browser is at {}; the IP's country is unknown.", utc_offset(browser_min)),
    };
    let _ = write!(svg, "<desc id=\"strip-desc\">{}</desc>", escape(&description));
    // The strip, hour ticks and labels every three hours.
    let _ = write!(
        svg,
        "<rect x=\"{STRIP_X}\" y=\"58\" width=\"{}\" height=\"28\" rx=\"4\" fill=\"#e4e7ef\"/>",
        26.0 * HOUR
    );
    for hour in -12..=14 {
        let x = strip_x(hour * 60);
        let _ = write!(
            svg,
            "<line x1=\"{x}\" y1=\"86\" x2=\"{x}\" y2=\"{}\" stroke=\"#8a90a0\"/>",
            if hour % 3 == 0 { 94 } else { 90 }
        );
        if hour % 3 == 0 {
            let label = if hour > 0 {
                format!("+{hour}")
            } else if hour < 0 {
                format!("−{}", -hour)
            } else {
                "0".into()
            };
            let _ =
                write!(svg, "<text x=\"{x}\" y=\"108\" text-anchor=\"middle\" fill=\"#667\">{label}</text>");
        }
    }
    // The country's offsets: green bands, labelled above.
    for (i, offset) in offsets.iter().enumerate() {
        let x = strip_x(*offset);
        let _ = write!(
            svg,
            "<rect class=\"country-offset\" data-offset=\"{offset}\" x=\"{}\" y=\"58\" width=\"{}\" height=\"28\" fill=\"#1f7a3d\" fill-opacity=\"0.75\"/>",
            x - HOUR / 2.0,
            HOUR
        );
        if offsets.len() <= 3 {
            let y = if i % 2 == 0 { 50 } else { 34 };
            let _ = write!(
                svg,
                "<text x=\"{x}\" y=\"{y}\" text-anchor=\"middle\" fill=\"#1f7a3d\" font-weight=\"600\">{} {}</text>",
                escape(country.unwrap_or("")),
                utc_offset(*offset)
            );
        }
    }
    if let (Some(first), Some(last)) = (offsets.first(), offsets.last())
        && offsets.len() > 3
    {
        let _ = write!(
            svg,
            "<text x=\"{}\" y=\"50\" text-anchor=\"middle\" fill=\"#1f7a3d\" font-weight=\"600\">{}: {} to {}</text>",
            (strip_x(*first) + strip_x(*last)) / 2.0,
            escape(country.unwrap_or("")),
            utc_offset(*first),
            utc_offset(*last)
        );
    }
    // The browser: a blue marker with its label below the axis.
    let x = strip_x(browser_min);
    let anchor = if x < 120.0 {
        "start"
    } else if x > 440.0 {
        "end"
    } else {
        "middle"
    };
    let _ = write!(
        svg,
        "<g id=\"browser-offset\" data-offset=\"{browser_min}\"><line x1=\"{x}\" y1=\"52\" x2=\"{x}\" y2=\"92\" stroke=\"#2457d6\" stroke-width=\"4\"/>\
<path d=\"M{} 118 l7 -10 l7 10 z\" fill=\"#2457d6\"/><text x=\"{x}\" y=\"138\" text-anchor=\"{anchor}\" fill=\"#2457d6\" font-weight=\"600\">Browser {} ({})</text></g>",
        x - 7.0,
        utc_offset(browser_min),
        escape(zone)
    );
    svg.push_str("</svg>");
    let verdict = match (country, offsets.is_empty()) {
        (Some(code), false) if offsets.contains(&browser_min) => {
            format!("The browser's offset is one {code} uses.")
        }
        (Some(code), false) => format!("No zone of {code} is at the browser's offset right now."),
        _ => "Without a country for the IP there is nothing to compare.".to_owned(),
    };
    format!(
        "<figure aria-label=\"UTC offsets\"><h2>Clock against country</h2>{svg}<figcaption>{} {}</figcaption></figure>",
        escape(&description),
        escape(&verdict)
    )
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

/// Escapes text for HTML element content and quoted attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic, reason = "tests fail by panicking")]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(escape("<script>\"x\"&'"), "&lt;script&gt;&quot;x&quot;&amp;&#39;");
        assert_eq!(utc_offset(330), "UTC+05:30");
        assert_eq!(utc_offset(-300), "UTC−05:00");
    }

    #[test]
    fn offset_figure_places_the_browser_among_the_country_offsets() {
        let at = jiff::Timestamp::from_second(1_813_309_200).unwrap(); // 2027-06-18T09:00Z
        let same = offset_figure(480, "Asia/Shanghai", Some("SG"), at);
        assert!(same.contains(r#"class="country-offset" data-offset="480""#), "{same}");
        assert!(same.contains(r#"id="browser-offset" data-offset="480""#), "{same}");
        assert!(same.contains("The browser is at UTC+08:00; SG uses UTC+08:00."), "{same}");
        assert!(same.contains("is one SG uses"), "{same}");

        let apart = offset_figure(120, "Europe/Berlin", Some("US"), at);
        for offset in [-240, -300, -360, -420, -480, -600] {
            assert!(
                apart.contains(&format!(r#"data-offset="{offset}""#)),
                "US summer offset {offset}: {apart}"
            );
        }
        assert!(apart.contains("No zone of US is at the browser&#39;s offset"), "{apart}");
        assert!(apart.contains("US: UTC−10:00 to UTC−04:00"), "{apart}");

        let unknown = offset_figure(-210, "America/St_Johns", None, at);
        assert!(unknown.contains("the IP&#39;s country is unknown"), "{unknown}");
        assert!(!unknown.contains("country-offset"), "{unknown}");
        // Markup from the token is escaped.
        assert!(!offset_figure(0, "<x>", None, at).contains("<x>"));
    }
}

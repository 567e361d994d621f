//! The console's pages. Every value is escaped by [`maud`]; nothing here
//! is marked pre-escaped. Zones, locales and reason names shown here may
//! have come from a forged token.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use maud::{DOCTYPE, Markup, html};

use super::charts::{self, Stack};
use super::{RiskFilter, Row, Sort};
use crate::history::report::{RelayingNetwork, Risk, SubjectReport};
use crate::history::{Counts, Event, SubjectKind};

/// A whole page, rendered.
pub(super) type Page = axum::response::Html<String>;

/// A page: header with the navigation (when signed in), then `body`;
/// reloaded every `refresh` seconds when given.
fn page(title: &str, csrf: Option<&str>, refresh: Option<u32>, body: Markup) -> Page {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                @if let Some(seconds) = refresh { meta http-equiv="refresh" content=(seconds); }
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Meridian console" }
                link rel="stylesheet" href="/console/static/console.css";
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    span.brand { "Meridian console" }
                    @if let Some(csrf) = csrf {
                        nav aria-label="Console" {
                            ul {
                                li { a href="/console" { "Overview" } }
                                li { a href="/console/accounts" { "Accounts" } }
                                li { a href="/console/organizations" { "Organisations" } }
                                li { a href="/console/networks" { "Networks" } }
                                li { a href="/console/live" { "Live" } }
                            }
                        }
                        form.find method="post" action="/console/find" {
                            input type="hidden" name="csrf" value=(csrf);
                            label for="find-kind" { "Look up" }
                            select id="find-kind" name="kind" {
                                option value="account" { "account" }
                                option value="organization" { "organisation" }
                            }
                            label.visually-hidden for="find-id" { "Id, as your backend sends it" }
                            input id="find-id" name="id" type="search" required maxlength="256" placeholder="id";
                            button type="submit" { "Find" }
                        }
                        form.logout method="post" action="/console/logout" {
                            input type="hidden" name="csrf" value=(csrf);
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main id="main" tabindex="-1" { (body) }
            }
        }
    };
    axum::response::Html(markup.into_string())
}

/// A page that says why a request was refused.
pub(super) fn refusal(status: StatusCode, message: &str) -> Page {
    page(
        status.canonical_reason().unwrap_or("Refused"),
        None,
        None,
        html! {
            h1 { (status.canonical_reason().unwrap_or("Refused")) }
            p.error role="alert" { (message) }
            p { a href="/console" { "Back to the console" } }
        },
    )
}

/// The sign-in form.
pub(super) fn sign_in(csrf: &str, error: Option<&str>) -> Page {
    page(
        "Sign in",
        None,
        None,
        html! {
            h1 { "Sign in" }
            @if let Some(error) = error {
                p.error role="alert" id="sign-in-error" { (error) }
            }
            form.sign-in method="post" action="/console/login" {
                input type="hidden" name="csrf" value=(csrf);
                label for="secret" { "Operator secret" }
                input id="secret" name="secret" type="password" autocomplete="current-password" required
                    autofocus aria-describedby=[error.map(|_| "sign-in-error")];
                button type="submit" { "Sign in" }
            }
        },
    )
}

/// What the overview shows.
pub(super) struct OverviewView {
    pub range: &'static str,
    pub ranges: [&'static str; 4],
    pub since: i64,
    pub end: i64,
    pub bucket: i64,
    pub counts: Counts,
    pub accounts: Vec<Row>,
    pub organizations: Vec<Row>,
}

/// `2026-12-04 09:00` (UTC).
fn time(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map_or_else(|_| ms.to_string(), |t| t.strftime("%Y-%m-%d %H:%M").to_string())
}

/// Rows sorted by total, largest first, at most `top`.
fn largest<K: ToString>(map: BTreeMap<K, Stack>, top: usize) -> Vec<(String, Stack)> {
    let mut rows: Vec<(String, Stack)> = map.into_iter().map(|(k, s)| (k.to_string(), s)).collect();
    rows.sort_by(|a, b| b.1.total().cmp(&a.1.total()).then_with(|| a.0.cmp(&b.0)));
    rows.truncate(top);
    rows
}

pub(super) fn overview(csrf: &str, view: &OverviewView) -> Page {
    let mut buckets: BTreeMap<i64, Stack> = BTreeMap::new();
    let mut start = view.since;
    while start < view.end {
        buckets.insert(start, Stack::default());
        start += view.bucket;
    }
    let mut totals = Stack::default();
    for (at, verdict, n) in &view.counts.series {
        if let Some(stack) = buckets.get_mut(at) {
            stack.add(*verdict, *n);
            totals.add(*verdict, *n);
        }
    }
    let label = |at: i64| {
        let text = time(at);
        let part = if view.bucket >= super::DAY { text.get(5..10) } else { text.get(5..) };
        part.unwrap_or(&text).to_owned()
    };
    let series: Vec<(String, Stack)> = buckets.into_iter().map(|(at, s)| (label(at), s)).collect();
    let mut countries: BTreeMap<String, Stack> = BTreeMap::new();
    for (country, verdict, n) in &view.counts.countries {
        countries.entry(country.clone()).or_default().add(*verdict, *n);
    }
    let mut reasons: BTreeMap<&'static str, Stack> = BTreeMap::new();
    for (code, verdict, n) in &view.counts.reasons {
        reasons.entry(code.as_str()).or_default().add(*verdict, *n);
    }
    page(
        "Overview",
        Some(csrf),
        None,
        html! {
            h1 { "Overview" }
            nav.ranges aria-label="Period" {
                @for range in view.ranges {
                    @if range == view.range {
                        a href={ "/console?range=" (range) } aria-current="page" { (range) }
                    } @else {
                        a href={ "/console?range=" (range) } { (range) }
                    }
                }
            }
            p.period { "From " (time(view.since)) " to " (time(view.end)) " UTC." }
            dl.totals id="totals" {
                div { dt { "Verifications" } dd data-total=(totals.total()) { (totals.total()) } }
                div.allow { dt { "Allowed" } dd { (totals.allow) } }
                div.review { dt { "Held for review" } dd { (totals.review) } }
                div.deny { dt { "Denied" } dd { (totals.deny) } }
            }
            (charts::columns("chart-time", "Verifications over time", &series))
            div.pair {
                (charts::bars("chart-countries", "By network country", "country", &largest(countries, 12)))
                (charts::bars("chart-reasons", "By reason", "reason", &largest(reasons, 15)))
            }
            div.pair {
                section {
                    h2 { "Riskiest accounts" }
                    (short_list(SubjectKind::Account, &view.accounts))
                    p { a href="/console/accounts" { "All flagged accounts" } }
                }
                section {
                    h2 { "Riskiest organisations" }
                    (short_list(SubjectKind::Organization, &view.organizations))
                    p { a href="/console/organizations" { "All flagged organisations" } }
                }
            }
        },
    )
}

fn path(kind: SubjectKind) -> &'static str {
    match kind {
        SubjectKind::Account => "accounts",
        SubjectKind::Organization => "organizations",
    }
}

/// The first characters of a stored id: enough to tell them apart.
fn short(subject: &str) -> &str {
    subject.get(..12).unwrap_or(subject)
}

fn risk_badge(risk: Risk) -> Markup {
    html! { span class={ "risk " (risk.as_str()) } { (risk.as_str()) } }
}

fn short_list(kind: SubjectKind, rows: &[Row]) -> Markup {
    html! {
        @if rows.is_empty() {
            p.empty { "None flagged." }
        } @else {
            ol.short {
                @for row in rows {
                    li {
                        (risk_badge(row.risk)) " "
                        a href={ "/console/" (path(kind)) "/" (row.summary.subject.as_str()) } {
                            code { (short(row.summary.subject.as_str())) }
                        }
                        " — " (row.why.first().map_or("", String::as_str))
                    }
                }
            }
        }
    }
}

/// What a riskiest list shows.
pub(super) struct ListView {
    pub kind: SubjectKind,
    pub filter: RiskFilter,
    pub sort: Sort,
    pub descending: bool,
    pub rows: Vec<Row>,
}

pub(super) fn list(csrf: &str, view: &ListView) -> Page {
    let (title, noun) = match view.kind {
        SubjectKind::Account => ("Accounts", "account"),
        SubjectKind::Organization => ("Organisations", "organisation"),
    };
    let filter = match view.filter {
        RiskFilter::High => "high",
        RiskFilter::Flagged => "flagged",
        RiskFilter::All => "all",
    };
    let base = format!("/console/{}", path(view.kind));
    let header = |sort: Sort, label: &str| {
        let name = Sort::ALL.iter().find(|(s, _)| *s == sort).map_or("risk", |(_, n)| *n);
        let current = sort == view.sort;
        let next = if current && view.descending { "asc" } else { "desc" };
        let aria = match (current, view.descending) {
            (false, _) => None,
            (true, true) => Some("descending"),
            (true, false) => Some("ascending"),
        };
        html! {
            th scope="col" aria-sort=[aria] {
                a href={ (base) "?risk=" (filter) "&sort=" (name) "&order=" (next) } { (label) }
            }
        }
    };
    page(
        title,
        Some(csrf),
        None,
        html! {
            h1 { (title) }
            form.filters method="get" action=(base) {
                label for="risk" { "Show" }
                select id="risk" name="risk" {
                    option value="high" selected[view.filter == RiskFilter::High] { "high risk" }
                    option value="flagged" selected[view.filter == RiskFilter::Flagged] { "medium and high risk" }
                    option value="all" selected[view.filter == RiskFilter::All] { "all (most recent)" }
                }
                label for="sort" { "sorted by" }
                select id="sort" name="sort" {
                    @for (sort, name) in Sort::ALL {
                        option value=(name) selected[sort == view.sort] { (name) }
                    }
                }
                button type="submit" { "Apply" }
            }
            p { (view.rows.len()) " " (noun) "(s), over everything retained." }
            div.scroll {
                table.list id="subjects" {
                    thead {
                        tr {
                            (header(Sort::Risk, "Risk"))
                            th scope="col" { "Id (keyed hash)" }
                            (header(Sort::Logins, "Sign-ins"))
                            (header(Sort::Restricted, "Restricted device"))
                            (header(Sort::Held, "Denied or held"))
                            @if view.kind == SubjectKind::Organization { th scope="col" { "Accounts (restricted)" } }
                            (header(Sort::Last, "Last seen"))
                            th scope="col" { "Why" }
                        }
                    }
                    tbody {
                        @for row in &view.rows {
                            @let e = &row.summary.evidence;
                            tr data-risk=(row.risk.as_str()) {
                                td { (risk_badge(row.risk)) }
                                td { a href={ (base) "/" (row.summary.subject.as_str()) } { code { (short(row.summary.subject.as_str())) } } }
                                td { (e.logins) }
                                td { (e.restricted_device) }
                                td { (e.held) }
                                @if let Some(share) = row.summary.share {
                                    td { (share.accounts) " (" (share.restricted_accounts) ")" }
                                }
                                td { (time(row.summary.last_ms)) }
                                td { (row.why.join("; ")) }
                            }
                        }
                    }
                }
            }
        },
    )
}

/// The device's offset at the time of a sign-in, from its zone.
fn device_offset(event: &Event) -> Option<i32> {
    let zone = crate::checks::tz::zone(event.zone.as_deref()?)?;
    let at = jiff::Timestamp::from_millisecond(event.at_ms).ok()?;
    Some(crate::checks::tz::offset_min(&zone, at))
}

fn counted(map: &BTreeMap<String, u32>) -> Markup {
    let mut rows: Vec<(&String, &u32)> = map.iter().collect();
    rows.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
    html! {
        ul.counted {
            @for (name, n) in rows { li { (name) " " span.n { "×" (n) } } }
        }
    }
}

pub(super) fn subject(csrf: &str, kind: SubjectKind, report: &SubjectReport, policy: &crate::Policy) -> Page {
    let noun = match kind {
        SubjectKind::Account => "Account",
        SubjectKind::Organization => "Organisation",
    };
    // The strip: offsets in use in the countries the sign-ins came from
    // (at the latest sign-in), and the device offsets with how often.
    let latest = report.recent.first().and_then(|e| jiff::Timestamp::from_millisecond(e.at_ms).ok());
    let mut bands: Vec<i32> = latest
        .map(|at| report.countries.keys().flat_map(|c| crate::checks::tz::country_offsets(c, at)).collect())
        .unwrap_or_default();
    bands.sort_unstable();
    bands.dedup();
    let mut devices: BTreeMap<i32, u32> = BTreeMap::new();
    for offset in report.recent.iter().filter_map(device_offset) {
        *devices.entry(offset).or_default() += 1;
    }
    let devices: Vec<(i32, u32)> = devices.into_iter().collect();
    let outside = devices.iter().filter(|(o, _)| !bands.contains(o)).map(|(_, n)| n).sum::<u32>();
    let caption = format!(
        "{} of the {} sign-ins listed came from a device whose clock is at an offset none of the networks' countries ({}) uses.",
        outside,
        report.recent.len(),
        report.countries.keys().cloned().collect::<Vec<_>>().join(", ")
    );
    let restricted: Vec<&str> = policy.restricted_regions.iter().map(|c| c.as_str()).collect();
    page(
        &format!("{noun} {}", short(report.subject.as_str())),
        Some(csrf),
        None,
        html! {
            h1 { (noun) " " code.subject { (report.subject.as_str()) } }
            p { "Risk: " (risk_badge(report.risk)) " over the last " (report.window_days) " days." }
            @if !report.risk_reasons.is_empty() {
                ul.why { @for why in &report.risk_reasons { li { (why) } } }
            }
            dl.totals {
                div { dt { "Sign-ins" } dd id="logins" { (report.logins) } }
                div { dt { "From a restricted-region device" } dd { (report.restricted_device_logins) } }
                @for (verdict, n) in &report.verdicts {
                    div class=(verdict) { dt { (verdict) } dd { (n) } }
                }
                @if let Some(share) = report.accounts {
                    div { dt { "Accounts (mostly restricted)" } dd { (share.accounts) " (" (share.restricted_accounts) ")" } }
                }
            }
            div.pair {
                section { h2 { "Network countries" } (counted(&report.countries)) }
                section { h2 { "Device zones" } (counted(&report.zones)) }
            }
            @if !restricted.is_empty() {
                p.note { "Restricted regions in the policy: " (restricted.join(", ")) "." }
            }
            (charts::offset_strip(&bands, &devices, &caption))
            h2 id="timeline-title" { "Timeline" }
            p { "The " (report.recent.len()) " most recent sign-ins, newest first (times in UTC)." }
            (timeline(&report.recent, kind == SubjectKind::Organization))
        },
    )
}

/// Sign-ins as a table; with `accounts`, each links to its account.
fn timeline(events: &[Event], accounts: bool) -> Markup {
    html! {
        div.scroll {
            table.timeline aria-labelledby="timeline-title" {
                thead {
                    tr {
                        th scope="col" { "Time" }
                        @if accounts { th scope="col" { "Account" } }
                        th scope="col" { "Country" }
                        th scope="col" { "Network" }
                        th scope="col" { "Device zone" }
                        th scope="col" { "Offset" }
                        th scope="col" { "Locale" }
                        th scope="col" { "Verdict" }
                        th scope="col" { "Reasons" }
                    }
                }
                tbody {
                    @for event in events {
                        tr.event data-verdict=(event.verdict.as_str()) {
                            td { (time(event.at_ms)) }
                            @if accounts {
                                td {
                                    @if let Some(account) = &event.account {
                                        a href={ "/console/accounts/" (account.as_str()) } { code { (short(account.as_str())) } }
                                    }
                                }
                            }
                            td { (event.country.as_ref().map_or("??", |c| c.as_str())) }
                            td { (event.network) @if let Some(asn) = event.asn { " AS" (asn) } }
                            td.zone { (event.zone.as_deref().unwrap_or("—")) }
                            td { (device_offset(event).map_or_else(|| "—".to_owned(), charts::utc_offset)) }
                            td.locale { (event.locale.as_deref().unwrap_or("—")) }
                            td { span class={ "verdict " (event.verdict.as_str()) } { (event.verdict.as_str()) } " " (event.score) }
                            td {
                                @if let Some(error) = event.error { code { (error.as_str()) } " " }
                                @for code in &event.reasons {
                                    span.reason title=(code.title()) { (code.as_str()) } " "
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The networks page's columns.
const NETWORK_COLUMNS: [&str; 9] = [
    "Network",
    "Country",
    "AS",
    "Relayed sign-ins",
    "Held",
    "Accounts",
    "Organisations",
    "Restricted devices",
    "What it looks like",
];

/// The networks the latest sign-ins were relayed through.
pub(super) fn networks(csrf: &str, read: usize, networks: &[RelayingNetwork]) -> Page {
    page(
        "Networks",
        Some(csrf),
        None,
        html! {
            h1 { "Networks that relayed sign-ins" }
            p {
                "Among the latest " (read) " verifications (read at most once a minute), the networks accepted "
                "sign-ins came through by way "
                "of a relay: the echo showed a hidden leg (" code { "relay_latency" } "), or the browser's UDP "
                "left from elsewhere (" code { "udp_origin_mismatch" } "). Staff behind their company's gateway "
                "are held for review at every sign-in until it is listed in " code { "trusted_networks" } ". "
                "Decide with care: one organisation's accounts only is also what a subsidiary's staff relayed "
                "through head office look like, and a listed network makes every country it names believable "
                "for everyone behind it."
            }
            @if networks.is_empty() {
                p.empty { "None." }
            } @else {
                div.scroll {
                    table.list id="networks" {
                        thead {
                            tr {
                                @for title in NETWORK_COLUMNS { th scope="col" { (title) } }
                            }
                        }
                        tbody {
                            @for network in networks {
                                tr data-look=(network.looks_like.as_str()) {
                                    td { code { (network.network) } }
                                    td { (network.country) }
                                    td { @if let Some(asn) = network.asn { (asn) } @else { "—" } }
                                    td { (network.relayed) }
                                    td { (network.held) }
                                    td { (network.accounts) }
                                    td {
                                        (network.organizations)
                                        @if let Some(organization) = &network.organization {
                                            " ("
                                            a href={ "/console/organizations/" (organization.as_str()) } {
                                                code { (short(organization.as_str())) }
                                            }
                                            ")"
                                        }
                                    }
                                    td { (network.restricted_device) }
                                    td { (network.looks_like.sentence()) }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

/// The latest verifications, refreshed every 5 seconds.
pub(super) fn live(csrf: &str, events: &[Event], now: jiff::Timestamp) -> Page {
    page(
        "Live",
        Some(csrf),
        Some(5),
        html! {
            h1 { "Live" }
            p { "The latest " (events.len()) " verifications at " (time(now.as_millisecond())) " UTC; this page reloads every 5 seconds." }
            (timeline(events, true))
        },
    )
}

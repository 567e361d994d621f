//! The labelled scenario corpus and its generator.
//!
//! The generator is deterministic: every family draws from its own ChaCha
//! stream seeded from [`SEED`] and the family's name, so adding a family or
//! appending cases to one never changes the cases already committed. The
//! corpus file (`eval/corpus.jsonl`) is its output; `meridian-eval generate
//! --check` proves the two agree.

use jiff::Timestamp;
use jiff::tz::TimeZone;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::world::{self, COUNTRIES, NetworkKind, Origin, accept_language, languages_for};

/// The corpus seed.
pub const SEED: u64 = 0x4d45_5249_4449_414e;

/// Whether the person behind the case is evading the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Class {
    /// Not evading anything: the right verdict is `allow`.
    Honest,
    /// Hiding where they are: the right verdict is `review` or `deny`.
    Evasion,
}

/// A spoof injected into the page before any of its scripts run (the kinds
/// the lie-detection checks target).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Spoof {
    /// `Intl.DateTimeFormat().resolvedOptions().timeZone` reports `zone`.
    ZoneName {
        /// The zone claimed.
        zone: String,
    },
    /// `Date.prototype.getTimezoneOffset` returns a constant.
    Offset {
        /// What it returns (minutes west of UTC, as JavaScript counts).
        minutes_west: i32,
    },
    /// Zone name and `getTimezoneOffset` both follow `zone`, consistently.
    Consistent {
        /// The zone claimed.
        zone: String,
    },
    /// As `consistent`, with `Function.prototype.toString` patched to make
    /// the replaced functions look native.
    Hidden {
        /// The zone claimed.
        zone: String,
    },
    /// `navigator.language(s)` report `language`.
    Languages {
        /// The language claimed.
        language: String,
    },
}

/// The browser engine, whose own outputs the simulation models.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Engine {
    /// Chrome, Edge, Opera, Brave…: legacy zone names (`Asia/Calcutta`),
    /// the 1880 offset in fractional minutes.
    #[default]
    Chromium,
    /// Firefox (and Tor Browser, Mullvad Browser, LibreWolf): modern zone
    /// names (`Asia/Kolkata`), the 1880 offset in fractional minutes.
    Firefox,
    /// Safari and every iOS browser: the 1880 offset in whole minutes, one
    /// entry in `navigator.languages` (the locale) and one `Accept-Language` tag.
    Webkit,
}

impl Engine {
    /// Whether this is the default (kept out of the JSON, so cases written
    /// before engines existed stay byte-identical).
    pub fn is_chromium(&self) -> bool {
        *self == Self::Chromium
    }
}

/// One labelled case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Case {
    /// Unique and stable: `family-NNN`.
    pub id: String,
    /// The scenario family.
    pub family: String,
    /// The label.
    pub class: Class,
    /// The browser engine (`chromium` when absent).
    #[serde(default, skip_serializing_if = "Engine::is_chromium")]
    pub engine: Engine,
    /// Who this is, in words.
    pub story: String,
    /// When the login happens (UTC).
    pub at: Timestamp,
    /// The zone the browser engine runs in.
    pub zone: String,
    /// The Intl locale.
    pub locale: String,
    /// `navigator.languages` (also the `Accept-Language` header's order).
    pub languages: Vec<String>,
    /// The `Accept-Language` header the login request carries.
    pub accept_language: String,
    /// A spoof in the page, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spoof: Option<Spoof>,
    /// Where the login comes from, as the backend sees it.
    pub login_from: Origin,
    /// Where the challenge was fetched from, when that differs (relays).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub challenge_from: Option<Origin>,
    /// How far the browser's clock is ahead of the server's, seconds.
    #[serde(default)]
    pub skew_s: i32,
    /// The policy: `restrict-cn`, `neutral` or `restrict-cn-corporate`.
    pub policy: String,
}

/// Restricted-region users' exits next door.
const NEIGHBOURS: &[&str] =
    &["HK", "MO", "TW", "JP", "KR", "SG", "VN", "MN", "RU", "KZ", "PH", "MY", "TH", "LA", "MM", "IN", "NP"];
/// Restricted-region users' exits far away.
const FAR: &[&str] = &["US", "CA", "DE", "GB", "NL", "FR", "AU", "BR", "ZA", "AE", "TR", "IT"];
/// Countries with several languages in everyday use.
const MULTILINGUAL: &[&str] = &["CH", "BE", "CA", "IN", "SG", "LU", "ZA", "MY", "FI", "HK", "KE", "PH", "IE"];
/// Zones that change offset during the year, with their country.
const DST_ZONES: &[(&str, &str)] = &[
    ("America/New_York", "US"),
    ("America/Chicago", "US"),
    ("America/Los_Angeles", "US"),
    ("America/Toronto", "CA"),
    ("America/St_Johns", "CA"),
    ("America/Santiago", "CL"),
    ("Europe/London", "GB"),
    ("Europe/Berlin", "DE"),
    ("Europe/Paris", "FR"),
    ("Europe/Helsinki", "FI"),
    ("Asia/Jerusalem", "IL"),
    ("Africa/Cairo", "EG"),
    ("Australia/Sydney", "AU"),
    ("Australia/Adelaide", "AU"),
    ("Pacific/Auckland", "NZ"),
    ("Pacific/Chatham", "NZ"),
];
/// Zones a quarter or half an hour off the hour, with their country.
const ODD_ZONES: &[(&str, &str)] = &[
    ("Asia/Kolkata", "IN"),
    ("Asia/Kathmandu", "NP"),
    ("Asia/Tehran", "IR"),
    ("Asia/Kabul", "AF"),
    ("Asia/Yangon", "MM"),
    ("Asia/Colombo", "LK"),
    ("Australia/Adelaide", "AU"),
    ("Australia/Darwin", "AU"),
    ("Australia/Eucla", "AU"),
    ("America/St_Johns", "CA"),
    ("Pacific/Chatham", "NZ"),
    ("Pacific/Marquesas", "PF"),
];

/// Draws for one family.
struct Draw {
    rng: ChaCha8Rng,
    family: &'static str,
    engine: Engine,
    cases: Vec<Case>,
}

fn pick<'a, T>(rng: &mut ChaCha8Rng, items: &'a [T]) -> &'a T {
    &items[rng.random_range(0..items.len())]
}

fn residential(country: &str) -> Origin {
    Origin { country: country.to_owned(), network: NetworkKind::Residential }
}

fn hosting(country: &str) -> Origin {
    Origin { country: country.to_owned(), network: NetworkKind::Hosting }
}

/// A person's browser environment.
struct Person {
    zone: String,
    locale: String,
    languages: Vec<String>,
}

impl Draw {
    fn new(family: &'static str) -> Self {
        let salt = family.bytes().fold(0u64, |h, b| h.rotate_left(7) ^ u64::from(b));
        Self {
            rng: ChaCha8Rng::seed_from_u64(SEED ^ salt),
            family,
            engine: Engine::Chromium,
            cases: Vec::new(),
        }
    }

    /// A minute in 2027, uniformly.
    fn instant(&mut self) -> Timestamp {
        let start = 1_798_761_600; // 2027-01-01T00:00:00Z
        let minute = self.rng.random_range(0..365 * 24 * 60);
        Timestamp::from_second(start + minute * 60).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    /// An honest clock: mostly right, sometimes minutes off.
    fn skew(&mut self) -> i32 {
        let roll = self.rng.random_range(0..100);
        let magnitude = match roll {
            0..90 => self.rng.random_range(0..2),
            90..97 => self.rng.random_range(2..120),
            _ => self.rng.random_range(120..900),
        };
        if self.rng.random_bool(0.5) { magnitude } else { -magnitude }
    }

    /// A typical resident of `code`.
    fn resident_of(&mut self, code: &str) -> Person {
        let country = world::country(code);
        let zone = (*pick(&mut self.rng, country.zones)).to_owned();
        let locale = (*pick(&mut self.rng, country.locales)).to_owned();
        let english = self.rng.random_bool(0.35);
        Person { zone, languages: languages_for(&locale, english), locale }
    }

    /// A user in the restricted region (CN).
    fn restricted_user(&mut self) -> Person {
        let zone = if self.rng.random_bool(0.9) { "Asia/Shanghai" } else { "Asia/Urumqi" };
        let english = self.rng.random_bool(0.3);
        Person { zone: zone.into(), locale: "zh-CN".into(), languages: languages_for("zh-CN", english) }
    }

    /// A country other than `not`, never the restricted one.
    fn other_country(&mut self, not: &[&str]) -> &'static str {
        loop {
            let code = pick(&mut self.rng, COUNTRIES).code;
            if code != "CN" && !not.contains(&code) {
                return code;
            }
        }
    }

    #[allow(clippy::too_many_arguments, reason = "one call site per family, every field named there")]
    fn push(
        &mut self,
        class: Class,
        story: String,
        at: Timestamp,
        person: Person,
        spoof: Option<Spoof>,
        login_from: Origin,
        challenge_from: Option<Origin>,
        skew_s: i32,
        policy: &str,
    ) {
        let id = format!("{}-{:03}", self.family, self.cases.len() + 1);
        let mut person = person;
        if self.engine == Engine::Webkit {
            // WebKit's navigator.languages is the locale alone.
            person.languages = vec![person.locale.clone()];
        }
        self.cases.push(Case {
            id,
            family: self.family.to_owned(),
            class,
            engine: self.engine,
            story,
            at,
            accept_language: accept_language(&person.languages),
            zone: person.zone,
            locale: person.locale,
            languages: person.languages,
            spoof,
            login_from,
            challenge_from,
            skew_s,
            policy: policy.to_owned(),
        });
    }
}

/// The anchors every evaluation reports by name.
fn anchors() -> Vec<Case> {
    let mut draw = Draw::new("anchor");
    let at = Timestamp::from_second(1_813_309_200).unwrap_or(Timestamp::UNIX_EPOCH); // 2027-06-18T09:00Z
    let person = |zone: &str, locale: &str, languages: &[&str]| Person {
        zone: zone.into(),
        locale: locale.into(),
        languages: languages.iter().map(|l| (*l).to_owned()).collect(),
    };
    draw.push(
        Class::Evasion,
        "The motivating case: a browser in Asia/Shanghai with zh-CN behind a Singapore IP, CN restricted"
            .into(),
        at,
        person("Asia/Shanghai", "zh-CN", &["zh-CN", "zh"]),
        None,
        residential("SG"),
        None,
        0,
        "restrict-cn",
    );
    draw.push(
        Class::Honest,
        "A German traveller in Tokyo whose device switched to the local zone".into(),
        at,
        person("Asia/Tokyo", "de-DE", &["de-DE", "de", "en"]),
        None,
        residential("JP"),
        None,
        0,
        "restrict-cn",
    );
    // Filed under the families they belong to, with names of their own.
    for (case, (id, family)) in draw.cases.iter_mut().zip([
        ("anchor-motivating", "restricted-neighbour-exit"),
        ("anchor-german-in-tokyo", "traveller-local-zone"),
    ]) {
        case.id = id.into();
        case.family = family.into();
    }
    draw.cases
}

fn residents() -> Vec<Case> {
    let mut d = Draw::new("resident");
    for _ in 0..60 {
        let code = d.other_country(&[]);
        let person = d.resident_of(code);
        let (at, skew) = (d.instant(), d.skew());
        let story = format!("A resident of {code} at home ({}, {})", person.zone, person.locale);
        d.push(Class::Honest, story, at, person, None, residential(code), None, skew, "restrict-cn");
    }
    d.cases
}

fn unrestricted_residents() -> Vec<Case> {
    let mut d = Draw::new("resident-unrestricted-policy");
    for _ in 0..6 {
        let person = d.restricted_user();
        let (at, skew) = (d.instant(), d.skew());
        let story = format!("A resident of CN at home ({}), on a site that restricts no region", person.zone);
        d.push(Class::Honest, story, at, person, None, residential("CN"), None, skew, "neutral");
    }
    d.cases
}

fn travellers(local_zone: bool) -> Vec<Case> {
    let mut d = Draw::new(if local_zone { "traveller-local-zone" } else { "traveller-home-zone" });
    for _ in 0..30 {
        let home = d.other_country(&[]);
        let away = d.other_country(&[home]);
        let mut person = d.resident_of(home);
        if local_zone {
            person.zone = (*pick(&mut d.rng, world::country(away).zones)).to_owned();
        }
        let (at, skew) = (d.instant(), d.skew());
        let story = format!(
            "A traveller from {home} in {away}, {} zone ({}, {})",
            if local_zone { "local" } else { "home" },
            person.zone,
            person.locale
        );
        d.push(Class::Honest, story, at, person, None, residential(away), None, skew, "restrict-cn");
    }
    d.cases
}

fn roaming() -> Vec<Case> {
    let mut d = Draw::new("roaming");
    for _ in 0..10 {
        let home = d.other_country(&[]);
        let away = d.other_country(&[home]);
        let mut person = d.resident_of(home);
        person.zone = (*pick(&mut d.rng, world::country(away).zones)).to_owned();
        let (at, skew) = (d.instant(), d.skew());
        let story = format!(
            "A traveller from {home} in {away} on a roaming SIM: local zone {}, traffic leaves through the home network",
            person.zone
        );
        d.push(Class::Honest, story, at, person, None, residential(home), None, skew, "restrict-cn");
    }
    d.cases
}

fn expatriates() -> Vec<Case> {
    let mut d = Draw::new("expatriate");
    for _ in 0..25 {
        let origin = d.other_country(&[]);
        let home = d.other_country(&[origin]);
        let mut person = d.resident_of(origin);
        person.zone = (*pick(&mut d.rng, world::country(home).zones)).to_owned();
        if d.rng.random_bool(0.5) {
            let local = world::country(home).locales[0];
            if let Some((language, _)) = local.split_once('-')
                && !person.languages.iter().any(|l| l == language)
            {
                person.languages.push(language.to_owned());
            }
        }
        let (at, skew) = (d.instant(), d.skew());
        let story = format!("Someone from {origin} living in {home} ({}, {})", person.zone, person.locale);
        d.push(Class::Honest, story, at, person, None, residential(home), None, skew, "restrict-cn");
    }
    d.cases
}

fn multilingual() -> Vec<Case> {
    let mut d = Draw::new("multilingual");
    for _ in 0..30 {
        let code = *pick(&mut d.rng, MULTILINGUAL);
        let person = d.resident_of(code);
        let (at, skew) = (d.instant(), d.skew());
        let story = format!("A resident of multilingual {code} using {} ({})", person.locale, person.zone);
        d.push(Class::Honest, story, at, person, None, residential(code), None, skew, "restrict-cn");
    }
    d.cases
}

/// The UTC offset transitions of `zone` in 2027.
fn transitions_2027(zone: &str) -> Vec<Timestamp> {
    let Ok(tz) = TimeZone::get(zone) else { return Vec::new() };
    let start = Timestamp::from_second(1_798_761_600).unwrap_or(Timestamp::UNIX_EPOCH);
    let end = Timestamp::from_second(1_830_297_600).unwrap_or(Timestamp::UNIX_EPOCH);
    tz.following(start).map(|t| t.timestamp()).take_while(|t| *t < end).collect()
}

fn dst_transitions() -> Vec<Case> {
    let mut d = Draw::new("dst-transition");
    for _ in 0..25 {
        let (zone, code) = *pick(&mut d.rng, DST_ZONES);
        let transitions = transitions_2027(zone);
        if transitions.is_empty() {
            continue;
        }
        let transition = *pick(&mut d.rng, &transitions);
        let minutes = d.rng.random_range(1..=90) * if d.rng.random_bool(0.5) { 1 } else { -1 };
        let at = transition + jiff::SignedDuration::from_mins(minutes);
        let skew = if d.rng.random_bool(0.3) { d.rng.random_range(-90..=90) } else { 0 };
        let mut person = d.resident_of(code);
        person.zone = zone.to_owned();
        let story =
            format!("A resident of {code} ({zone}) {minutes:+} min from a clock change, clock {skew:+} s");
        d.push(Class::Honest, story, at, person, None, residential(code), None, skew, "restrict-cn");
    }
    d.cases
}

fn odd_offsets() -> Vec<Case> {
    let mut d = Draw::new("half-hour-zone");
    for _ in 0..15 {
        let (zone, code) = *pick(&mut d.rng, ODD_ZONES);
        let mut person = d.resident_of(code);
        person.zone = zone.to_owned();
        let (at, skew) = (d.instant(), d.skew());
        let story = format!("A resident of {code} in {zone}, off the whole hour");
        d.push(Class::Honest, story, at, person, None, residential(code), None, skew, "restrict-cn");
    }
    d.cases
}

fn restricted_exits(family: &'static str, exits: &[&'static str], network: NetworkKind) -> Vec<Case> {
    let mut d = Draw::new(family);
    let count = if family == "restricted-neighbour-exit" { 30 } else { 25 };
    for _ in 0..count {
        let exit = *pick(&mut d.rng, exits);
        let person = d.restricted_user();
        let (at, skew) = (d.instant(), d.skew());
        let kind = if network == NetworkKind::Hosting { "a hosting/VPN exit" } else { "a residential exit" };
        let story = format!("A user in CN ({}, zh-CN) behind {kind} in {exit}", person.zone);
        let origin = Origin { country: exit.to_owned(), network };
        d.push(Class::Evasion, story, at, person, None, origin, None, skew, "restrict-cn");
    }
    d.cases
}

fn spoofed_zones() -> Vec<Case> {
    let mut d = Draw::new("spoofed-zone");
    let exits: Vec<&str> = NEIGHBOURS.iter().chain(FAR).copied().collect();
    for _ in 0..30 {
        let exit = *pick(&mut d.rng, &exits);
        let target = world::country(exit);
        let zone = target.zones[0].to_owned();
        let at = d.instant();
        let spoof = match d.rng.random_range(0..5) {
            0 => Spoof::ZoneName { zone },
            1 => {
                let offset = TimeZone::get(&zone).map(|tz| tz.to_offset(at).seconds() / 60).unwrap_or(0);
                Spoof::Offset { minutes_west: -offset }
            }
            2 => Spoof::Consistent { zone },
            3 => Spoof::Hidden { zone },
            _ => Spoof::Languages { language: target.locales[0].to_owned() },
        };
        let network = if d.rng.random_bool(0.5) { NetworkKind::Hosting } else { NetworkKind::Residential };
        let person = d.restricted_user();
        let skew = d.skew();
        let story = format!(
            "A user in CN ({}) behind an exit in {exit}, spoofing in the page: {spoof:?}",
            person.zone
        );
        let origin = Origin { country: exit.to_owned(), network };
        d.push(Class::Evasion, story, at, person, Some(spoof), origin, None, skew, "restrict-cn");
    }
    d.cases
}

fn relays() -> Vec<Case> {
    let mut d = Draw::new("relay");
    for index in 0..15 {
        let exit = *pick(&mut d.rng, NEIGHBOURS);
        let (at, skew) = (d.instant(), d.skew());
        if index % 2 == 0 {
            // The token is made in the user's own browser in CN; the login
            // is sent through a proxy.
            let person = d.restricted_user();
            let network =
                if d.rng.random_bool(0.5) { NetworkKind::Hosting } else { NetworkKind::Residential };
            let story = format!(
                "A user in CN ({}) fetches the challenge directly and sends the login through an exit in {exit}",
                person.zone
            );
            let login = Origin { country: exit.to_owned(), network };
            d.push(
                Class::Evasion,
                story,
                at,
                person,
                None,
                login,
                Some(residential("CN")),
                skew,
                "restrict-cn",
            );
        } else {
            // A clean remote browser in a data centre makes the token; the
            // user in CN logs in with it directly.
            let person = d.resident_of(exit);
            let story = format!(
                "A token made by a remote browser in a data centre in {exit} ({}), the login sent from CN",
                person.zone
            );
            d.push(
                Class::Evasion,
                story,
                at,
                person,
                None,
                residential("CN"),
                Some(hosting(exit)),
                skew,
                "restrict-cn",
            );
        }
    }
    d.cases
}

/// People in CN behind a residential proxy exit with the system zone set
/// to the exit's (no trace in the page); with `echo_blocked` they also
/// block the verifier's echo (one filter rule on `/v1/echo`), so that the
/// relay's distance goes unmeasured.
fn engine_spoofs(echo_blocked: bool) -> Vec<Case> {
    let mut d = Draw::new(if echo_blocked { "echo-blocked-engine-spoof" } else { "engine-spoof" });
    let exits: Vec<&str> = NEIGHBOURS.iter().chain(FAR).copied().collect();
    for index in 0..10 {
        let exit = *pick(&mut d.rng, &exits);
        let mut person = if index % 2 == 0 { d.restricted_user() } else { d.resident_of(exit) };
        person.zone = world::country(exit).zones[0].to_owned();
        let (at, skew) = (d.instant(), d.skew());
        let story = format!(
            "A user in CN behind a residential exit in {exit}, with the system zone set to {}{} (no trace in the page){}",
            person.zone,
            if index % 2 == 0 { " and zh-CN kept" } else { " and the exit country's locale" },
            if echo_blocked { ", the verifier's echo blocked by a filter rule" } else { "" }
        );
        d.push(Class::Evasion, story, at, person, None, residential(exit), None, skew, "restrict-cn");
    }
    d.cases
}

/// Countries whose zone Chromium and WebKit name by its legacy name.
const LEGACY_NAMED: &[&str] = &["IN", "UA", "VN", "NP", "MM", "AR"];
/// Satellite users: where they are, and the country of the operator's
/// gateway their IP geolocates to.
const SATELLITE: &[(&str, &str)] = &[
    ("MX", "US"),
    ("CA", "US"),
    ("AT", "DE"),
    ("BE", "FR"),
    ("PT", "ES"),
    ("NZ", "AU"),
    ("CO", "BR"),
    ("CL", "AR"),
    ("IE", "GB"),
    ("NO", "SE"),
    ("PH", "JP"),
    ("KE", "ZA"),
    ("NG", "ZA"),
    ("MY", "SG"),
    ("PL", "DE"),
    ("FI", "SE"),
];

fn via(country: &str, network: NetworkKind) -> Origin {
    Origin { country: country.to_owned(), network }
}

impl Draw {
    /// An engine, as common as on the web: Chromium 65 %, WebKit 20 %, Firefox 15 %.
    fn any_engine(&mut self) -> Engine {
        match self.rng.random_range(0..100) {
            0..65 => Engine::Chromium,
            65..85 => Engine::Webkit,
            _ => Engine::Firefox,
        }
    }

    /// `person` in a privacy browser that withholds the zone (Firefox's
    /// `resistFingerprinting`, Tor Browser, Mullvad Browser): `Atlantic/Reykjavik`
    /// (Firefox 128 and later) or `UTC`, Intl locale `en-US`, the person's own
    /// languages. Returns the person as the browser shows them and their real zone.
    fn withholding(&mut self, person: Person) -> (Person, String) {
        let zone = if self.rng.random_bool(0.7) { "Atlantic/Reykjavik" } else { "UTC" };
        (Person { zone: zone.into(), locale: "en-US".into(), languages: person.languages }, person.zone)
    }
}

fn engine_residents(family: &'static str, engine: Engine) -> Vec<Case> {
    let mut d = Draw::new(family);
    d.engine = engine;
    for index in 0..20 {
        let code = if index % 4 == 0 { *pick(&mut d.rng, LEGACY_NAMED) } else { d.other_country(&[]) };
        let person = d.resident_of(code);
        let (at, skew) = (d.instant(), d.skew());
        let story =
            format!("A {engine:?} user, resident of {code} at home ({}, {})", person.zone, person.locale);
        d.push(Class::Honest, story, at, person, None, residential(code), None, skew, "restrict-cn");
    }
    d.cases
}

fn webkit_travellers() -> Vec<Case> {
    let mut d = Draw::new("webkit-traveller");
    d.engine = Engine::Webkit;
    for _ in 0..20 {
        let home = d.other_country(&[]);
        let away = d.other_country(&[home]);
        let mut person = d.resident_of(home);
        person.zone = (*pick(&mut d.rng, world::country(away).zones)).to_owned();
        let (at, skew) = (d.instant(), d.skew());
        let story = format!(
            "An iPhone/Safari user from {home} travelling in {away}, zone switched to {} ({})",
            person.zone, person.locale
        );
        d.push(Class::Honest, story, at, person, None, residential(away), None, skew, "restrict-cn");
    }
    d.cases
}

fn icelanders() -> Vec<Case> {
    let mut d = Draw::new("resident-iceland");
    for index in 0..6 {
        d.engine = [Engine::Chromium, Engine::Firefox, Engine::Webkit][index % 3];
        let english = d.rng.random_bool(0.5);
        let person = Person {
            zone: "Atlantic/Reykjavik".into(),
            locale: "is-IS".into(),
            languages: languages_for("is-IS", english),
        };
        let (at, skew) = (d.instant(), d.skew());
        let policy = if index < 4 { "restrict-cn" } else { "neutral" };
        let story = format!(
            "An Icelander at home in a {:?} browser (Atlantic/Reykjavik, is-IS): the zone privacy browsers report, but with Icelandic signs",
            d.engine
        );
        d.push(Class::Honest, story, at, person, None, residential("IS"), None, skew, policy);
    }
    d.cases
}

fn privacy_honest() -> Vec<Case> {
    let mut d = Draw::new("privacy-browser-honest");
    d.engine = Engine::Firefox;
    for index in 0..20 {
        let code = d.other_country(&[]);
        let home = d.resident_of(code);
        let (person, real) = d.withholding(home);
        let (at, skew) = (d.instant(), d.skew());
        let policy = if index % 2 == 0 { "neutral" } else { "restrict-cn" };
        let story = format!(
            "A resident of {code} (really {real}) in a privacy browser reporting {} and Intl en-US, languages {}",
            person.zone,
            person.languages.join(", ")
        );
        d.push(Class::Honest, story, at, person, None, residential(code), None, skew, policy);
    }
    d.cases
}

fn privacy_hiding() -> Vec<Case> {
    let mut d = Draw::new("privacy-browser-hiding");
    d.engine = Engine::Firefox;
    for _ in 0..20 {
        let exit = *pick(&mut d.rng, NEIGHBOURS);
        let user = d.restricted_user();
        let (person, real) = d.withholding(user);
        let (at, skew) = (d.instant(), d.skew());
        let story = format!(
            "A user in CN ({real}) in a privacy browser reporting {}, languages {}, behind a residential exit in {exit}",
            person.zone,
            person.languages.join(", ")
        );
        d.push(Class::Evasion, story, at, person, None, residential(exit), None, skew, "restrict-cn");
    }
    d.cases
}

fn private_relay() -> Vec<Case> {
    let mut d = Draw::new("private-relay");
    d.engine = Engine::Webkit;
    for _ in 0..20 {
        let code = d.other_country(&[]);
        let person = d.resident_of(code);
        let (at, skew) = (d.instant(), d.skew());
        let story = format!(
            "An iPhone/Safari user at home in {code} ({}, {}) with iCloud Private Relay, egress listed for {code}",
            person.zone, person.locale
        );
        d.push(
            Class::Honest,
            story,
            at,
            person,
            None,
            via(code, NetworkKind::PrivateRelay),
            None,
            skew,
            "restrict-cn",
        );
    }
    d.cases
}

fn warp() -> Vec<Case> {
    let mut d = Draw::new("warp");
    for _ in 0..20 {
        d.engine = d.any_engine();
        let code = d.other_country(&[]);
        let person = d.resident_of(code);
        let (at, skew) = (d.instant(), d.skew());
        let story = format!(
            "A {:?} user at home in {code} ({}, {}) with Cloudflare WARP on",
            d.engine, person.zone, person.locale
        );
        d.push(
            Class::Honest,
            story,
            at,
            person,
            None,
            via(code, NetworkKind::Warp),
            None,
            skew,
            "restrict-cn",
        );
    }
    d.cases
}

fn tor() -> Vec<Case> {
    let mut d = Draw::new("tor");
    for index in 0..20 {
        let exit = *pick(&mut d.rng, world::TOR_EXIT_COUNTRIES);
        let user = d.restricted_user();
        let (person, how) = if index % 2 == 0 {
            // Tor Browser: the zone withheld, the Intl locale and the
            // languages forced to US English.
            d.engine = Engine::Firefox;
            let (mut person, real) = d.withholding(user);
            person.languages = vec!["en-US".into(), "en".into()];
            (person, format!("Tor Browser (really {real}, zh-CN)"))
        } else {
            d.engine = Engine::Chromium;
            let how = format!("an ordinary browser over Tor ({}, zh-CN)", user.zone);
            (user, how)
        };
        let (at, skew) = (d.instant(), d.skew());
        let story = format!("A user in CN in {how}, through a Tor exit in {exit}");
        d.push(
            Class::Evasion,
            story,
            at,
            person,
            None,
            via(exit, NetworkKind::Tor),
            None,
            skew,
            "restrict-cn",
        );
    }
    d.cases
}

fn corporate(restricted: bool) -> Vec<Case> {
    let family = if restricted { "corporate-egress-restricted" } else { "corporate-egress-honest" };
    staff_behind_gateway(family, restricted, "egress", "restrict-cn-corporate")
}

/// Staff in the company's countries logging in through its Singapore
/// gateway (a proxy: their connections end there) on a site that does not
/// know the gateway (`restrict-cn`, no trusted networks).
fn untrusted_gateway() -> Vec<Case> {
    staff_behind_gateway("corporate-gateway-untrusted", false, "gateway, unknown to the site", "restrict-cn")
}

/// Twenty staff behind the company's Singapore egress: in CN when
/// `restricted`, else in one of its countries; `what` ends the story.
fn staff_behind_gateway(family: &'static str, restricted: bool, what: &str, policy: &str) -> Vec<Case> {
    let mut d = Draw::new(family);
    for _ in 0..20 {
        d.engine = d.any_engine();
        let (person, code) = if restricted {
            (d.restricted_user(), "CN")
        } else {
            let code = *pick(&mut d.rng, world::CORPORATE_COUNTRIES);
            (d.resident_of(code), code)
        };
        let (at, skew) = (d.instant(), d.skew());
        let story = format!(
            "Staff in {code} ({}, {}) logging in through the company's Singapore {what}",
            person.zone, person.locale
        );
        let class = if restricted { Class::Evasion } else { Class::Honest };
        d.push(class, story, at, person, None, via("SG", NetworkKind::CorporateEgress), None, skew, policy);
    }
    d.cases
}

/// Residents at home outside the restricted region whose network lets
/// no WebSocket through (a filtering proxy, security software): the
/// drop-in takes the echo over plain requests instead.
fn echo_blocked_honest() -> Vec<Case> {
    let mut d = Draw::new("echo-blocked-honest");
    for _ in 0..10 {
        d.engine = d.any_engine();
        let code = *pick(&mut d.rng, world::CORPORATE_COUNTRIES);
        let person = d.resident_of(code);
        let (at, skew) = (d.instant(), d.skew());
        let story = format!(
            "A resident of {code} ({}, {}) whose network blocks WebSockets, so the echo runs over plain requests",
            person.zone, person.locale
        );
        d.push(Class::Honest, story, at, person, None, residential(code), None, skew, "restrict-cn");
    }
    d.cases
}

fn satellite() -> Vec<Case> {
    let mut d = Draw::new("satellite");
    for _ in 0..20 {
        d.engine = d.any_engine();
        let (home, gateway) = *pick(&mut d.rng, SATELLITE);
        let person = d.resident_of(home);
        let (at, skew) = (d.instant(), d.skew());
        let story = format!(
            "A satellite-internet user at home in {home} ({}, {}) whose IP geolocates to the gateway in {gateway}",
            person.zone, person.locale
        );
        d.push(Class::Honest, story, at, person, None, residential(gateway), None, skew, "restrict-cn");
    }
    d.cases
}

/// People in CN whose VPN carries their own connections to an exit (an IP
/// tunnel: WireGuard, OpenVPN, IPsec), with zh-CN and the Shanghai clock
/// kept, or with the system zone (and half the time the locale) set to
/// the exit's: the echo sees no hidden leg through a full tunnel.
fn full_tunnels(engine_spoof: bool) -> Vec<Case> {
    let mut d = Draw::new(if engine_spoof { "full-tunnel-engine-spoof" } else { "full-tunnel-exit" });
    let exits: Vec<&str> = NEIGHBOURS.iter().chain(FAR).copied().collect();
    for index in 0..10 {
        d.engine = d.any_engine();
        let exit = *pick(&mut d.rng, &exits);
        let network = if d.rng.random_bool(0.5) { NetworkKind::Hosting } else { NetworkKind::Residential };
        let mut person =
            if engine_spoof && index % 2 == 1 { d.resident_of(exit) } else { d.restricted_user() };
        if engine_spoof {
            person.zone = world::country(exit).zones[0].to_owned();
        }
        let (at, skew) = (d.instant(), d.skew());
        let story = if engine_spoof {
            format!(
                "A user in CN through a full-tunnel VPN to a {} exit in {exit}, with the system zone set to {}{}",
                if network == NetworkKind::Hosting { "hosting" } else { "residential" },
                person.zone,
                if index % 2 == 0 { " and zh-CN kept" } else { " and the exit country's locale" }
            )
        } else {
            format!(
                "A user in CN through a full-tunnel VPN to a {} exit in {exit}, browser untouched ({}, {})",
                if network == NetworkKind::Hosting { "hosting" } else { "residential" },
                person.zone,
                person.locale
            )
        };
        d.push(Class::Evasion, story, at, person, None, via(exit, network), None, skew, "restrict-cn");
    }
    d.cases
}

/// People in CN behind a proxy exit of their own in a data centre, the
/// system zone set to the exit country's (no trace in the page), whose exit
/// holds back its TCP acknowledgements so that the verifier's round trip
/// reads almost as long as the echo, and whose browser sends no UDP around
/// the proxy: someone who knows how the hidden leg is measured.
fn stretched_exits() -> Vec<Case> {
    let mut d = Draw::new("stretched-exit-engine-spoof");
    let exits: Vec<&str> = NEIGHBOURS.iter().chain(FAR).copied().collect();
    for index in 0..10 {
        d.engine = d.any_engine();
        let exit = *pick(&mut d.rng, &exits);
        let mut person = if index % 2 == 1 { d.resident_of(exit) } else { d.restricted_user() };
        person.zone = world::country(exit).zones[0].to_owned();
        let (at, skew) = (d.instant(), d.skew());
        let story = format!(
            "A user in CN behind a proxy exit of their own in a data centre in {exit} that holds back its TCP acknowledgements, so the verifier's round trip reads as long as the echo, with the system zone set to {}{}",
            person.zone,
            if index % 2 == 0 { " and zh-CN kept" } else { " and the exit country's locale" }
        );
        d.push(Class::Evasion, story, at, person, None, hosting(exit), None, skew, "restrict-cn");
    }
    d.cases
}

/// The whole corpus, in a fixed order.
pub fn generate() -> Vec<Case> {
    [
        anchors(),
        residents(),
        unrestricted_residents(),
        travellers(true),
        travellers(false),
        roaming(),
        expatriates(),
        multilingual(),
        dst_transitions(),
        odd_offsets(),
        restricted_exits("restricted-neighbour-exit", NEIGHBOURS, NetworkKind::Residential),
        restricted_exits("restricted-far-exit", FAR, NetworkKind::Residential),
        restricted_exits(
            "restricted-hosting-exit",
            &NEIGHBOURS.iter().chain(FAR).copied().collect::<Vec<_>>(),
            NetworkKind::Hosting,
        ),
        spoofed_zones(),
        relays(),
        engine_spoofs(false),
        engine_residents("firefox-resident", Engine::Firefox),
        engine_residents("webkit-resident", Engine::Webkit),
        webkit_travellers(),
        icelanders(),
        privacy_honest(),
        privacy_hiding(),
        private_relay(),
        warp(),
        tor(),
        corporate(false),
        corporate(true),
        satellite(),
        full_tunnels(false),
        full_tunnels(true),
        untrusted_gateway(),
        engine_spoofs(true),
        echo_blocked_honest(),
        stretched_exits(),
    ]
    .concat()
}

/// The corpus as JSON lines.
pub fn to_jsonl(cases: &[Case]) -> String {
    cases.iter().filter_map(|c| serde_json::to_string(c).ok()).map(|line| line + "\n").collect()
}

/// Reads JSON lines.
///
/// # Errors
/// The first line that is not a case, with its number.
pub fn from_jsonl(text: &str) -> Result<Vec<Case>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| serde_json::from_str(line).map_err(|e| format!("line {}: {e}", i + 1)))
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail by panicking")]
mod tests {
    use super::*;

    #[test]
    fn engines_are_written_only_when_not_chromium_and_webkit_has_one_language() {
        let cases = generate();
        for case in &cases {
            let line = serde_json::to_string(case).unwrap();
            assert_eq!(line.contains("\"engine\""), case.engine != Engine::Chromium, "{}", case.id);
            if case.engine == Engine::Webkit {
                assert_eq!(case.languages, std::slice::from_ref(&case.locale), "{}", case.id);
                assert_eq!(case.accept_language, case.locale, "{}", case.id);
            }
        }
        for engine in [Engine::Chromium, Engine::Firefox, Engine::Webkit] {
            assert!(cases.iter().filter(|c| c.engine == engine && c.class == Class::Honest).count() >= 20);
        }
        // Families draw from their own streams: every family's cases are
        // the same whether or not the others exist.
        assert_eq!(
            private_relay(),
            generate().into_iter().filter(|c| c.family == "private-relay").collect::<Vec<_>>()
        );
    }
}

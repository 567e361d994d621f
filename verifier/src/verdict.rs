//! The verdict a verification returns, and the reasons behind it.

use serde::Serialize;

/// What the backend should do with the login.
/// Ordered from mildest to strictest, so a policy's floor is a `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "http", derive(utoipa::ToSchema))]
pub enum Verdict {
    /// Nothing or little is off.
    Allow,
    /// Enough is off that a human or a step-up check should look.
    Review,
    /// Strong, combined evidence against the claims, or no valid token.
    Deny,
}

impl Verdict {
    /// The verdict named `name` (`allow`, `review`, `deny`).
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Allow, Self::Review, Self::Deny].into_iter().find(|v| v.as_str() == name)
    }

    /// `allow`, `review` or `deny`, as in the answer.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Review => "review",
            Self::Deny => "deny",
        }
    }
}

/// Declares [`ReasonCode`] and its one table of facts: every reason is one
/// entry, and everything else (the wire name, the title on pages, the
/// sentence in the docs, the policy's default weight, the confidence its
/// evidence alone gives) is read from here.
macro_rules! reason_codes {
    ($(
        $(#[doc = $doc:literal])*
        $variant:ident = $code:literal {
            title: $title:literal,
            fires_when: $fires_when:literal,
            weight: $weight:literal,
            confidence: $confidence:ident $(,)?
        }
    ),* $(,)?) => {
        /// Stable reason codes (`reasons[].code`). Never renamed; new ones may come.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize)]
        #[serde(rename_all = "snake_case")]
        #[non_exhaustive]
        #[cfg_attr(feature = "http", derive(utoipa::ToSchema))]
        pub enum ReasonCode {
            $( $(#[doc = $doc])* $variant, )*
        }

        impl ReasonCode {
            /// Every reason code, in the order of the table.
            pub const ALL: &'static [ReasonCode] = &[$(Self::$variant),*];

            /// What is known about this reason.
            pub const fn spec(self) -> &'static ReasonSpec {
                match self {
                    $(Self::$variant => &ReasonSpec {
                        code: $code,
                        title: $title,
                        fires_when: $fires_when,
                        default_weight: $weight,
                        confidence: Confidence::$confidence,
                    },)*
                }
            }
        }
    };
}

/// The facts of one [`ReasonCode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReasonSpec {
    /// The stable snake_case name, as in the answer and the policy's `[weights]`.
    pub code: &'static str,
    /// A short title for people (the demo's result page, consoles).
    pub title: &'static str,
    /// When it fires, in a sentence (the README's table).
    pub fires_when: &'static str,
    /// Its weight unless the policy says otherwise; below 0 only for
    /// `outside_region_by_latency`, the one reason that speaks for a login.
    pub default_weight: i32,
    /// What its evidence is worth on its own ([`grade`] raises it).
    pub confidence: Confidence,
}

reason_codes! {
    /// The claimed UTC offset is none of the IP country's offsets. Default
    /// weight 20: travellers with a home clock trip it, together with the
    /// zone and language mismatches they also trip (20 + 10 + 10), so the
    /// three together still allow (docs/EVALUATION.md).
    TzOffsetMismatch = "tz_offset_mismatch" {
        title: "The clock's UTC offset is not used in the IP's country",
        fires_when: "the browser's UTC offset at signing is none of the offsets in use in the IP's country at that instant (far-away exits)",
        weight: 20,
        confidence: Low,
    },
    /// The claimed zone is not a zone of the IP country.
    TzCountryMismatch = "tz_country_mismatch" {
        title: "The time zone belongs to another country",
        fires_when: "the browser's zone (links resolved: `Asia/Calcutta`, `Europe/Kiev`) is not a zone of the IP's country — catches near exits with the same offset",
        weight: 10,
        confidence: Low,
    },
    /// The zone name disagrees with the offsets the browser reported.
    /// Default weight 50: an honest browser cannot produce it.
    TzInternalInconsistent = "tz_internal_inconsistent" {
        title: "The time zone and the clock disagree",
        fires_when: "the zone name disagrees with the offsets the browser reported now and on 1 Jan / 1 Jul (naive spoofing)",
        weight: 50,
        confidence: High,
    },
    /// The locale's region and languages do not fit the IP country.
    LocaleCountryMismatch = "locale_country_mismatch" {
        title: "The language is not one of the IP country's",
        fires_when: "neither the Intl locale's language nor the first preferred language is spoken in the IP's country (CLDR)",
        weight: 10,
        confidence: Low,
    },
    /// The `Accept-Language` header disagrees with `navigator.languages`.
    AcceptLanguageMismatch = "accept_language_mismatch" {
        title: "The page and the network stack report different languages",
        fires_when: "the `Accept-Language` header prefers another language than `navigator.languages`",
        weight: 25,
        confidence: Medium,
    },
    /// A time or language API was replaced in the page.
    TamperedApi = "tampered_api" {
        title: "Time or language functions were replaced in the page",
        fires_when: "a time or language API in the page is not the browser's own (replaced, Proxy-wrapped, or hidden behind a patched `toString`)",
        weight: 60,
        confidence: High,
    },
    /// A worker sees another zone or language than the page.
    WorkerScopeMismatch = "worker_scope_mismatch" {
        title: "A worker sees a different zone or language",
        fires_when: "a dedicated Worker sees another zone, offset or language than the page",
        weight: 50,
        confidence: High,
    },
    /// The browser clock is off by more than the tolerance.
    ClockSkew = "clock_skew" {
        title: "The clock is far off",
        fires_when: "the skew interval lies entirely outside the tolerance (300 s)",
        weight: 10,
        confidence: Low,
    },
    /// The IP is in a restricted region. Default weight 100: deny on its own.
    RestrictedRegionIp = "restricted_region_ip" {
        title: "The connection comes from a restricted region",
        fires_when: "the IP is in a restricted region",
        weight: 100,
        confidence: High,
    },
    /// The browser's zone and languages point into a restricted region
    /// while the IP is elsewhere. Default weight 75: deny together with the
    /// zone mismatch that always comes with it.
    RestrictedRegionClaim = "restricted_region_claim" {
        title: "The browser points to a restricted region",
        fires_when: "the zone points into a restricted region and the locale's region or main language agrees, while the IP is elsewhere",
        weight: 75,
        confidence: Medium,
    },
    /// The IP belongs to a hosting or VPN network.
    HostingIp = "hosting_ip" {
        title: "The connection comes from a hosting or VPN network",
        fires_when: "the IP's AS is on the hosting/VPN list (`verifier/data/hosting_asns.csv`)",
        weight: 25,
        confidence: Medium,
    },
    /// The IP changed between challenge and verification.
    IpChanged = "ip_changed" {
        title: "The connection's IP changed during sign-in",
        fires_when: "the IP at challenge time differs from the IP at login",
        weight: 10,
        confidence: Medium,
    },
    /// The browser is driven by automation.
    Automation = "automation" {
        title: "The browser is automated",
        fires_when: "`navigator.webdriver` is true",
        weight: 40,
        confidence: High,
    },
    /// The replay store could not be asked and the verifier is configured
    /// to fail open: this token may have been used before.
    ReplayUnchecked = "replay_unchecked" {
        title: "Single use could not be checked",
        fires_when: "the replay store could not answer and the verifier is configured to fail open",
        weight: 50,
        confidence: High,
    },
    /// The browser withholds its time zone the way privacy browsers do
    /// (Firefox's `resistFingerprinting`, Tor Browser, Mullvad Browser,
    /// LibreWolf): the zone is not a claim, so zone checks are skipped.
    /// Default weight 10: many careful people use one; under restricted
    /// regions the policy's `withheld_zone` decides.
    PrivacyBrowser = "privacy_browser" {
        title: "The browser withholds its time zone",
        fires_when: "the browser withholds its zone (`UTC`, or `Atlantic/Reykjavik` without an Icelandic sign, offset 0 all year — Firefox's resistFingerprinting, Tor and Mullvad Browser): zone checks are skipped; under restricted regions the policy's `withheld_zone` (default `review`) is the least verdict",
        weight: 10,
        confidence: High,
    },
    /// The IP is an egress of a privacy relay (iCloud Private Relay,
    /// Cloudflare WARP) that keeps the user's region, not a VPN exit.
    /// Default weight 10: ordinary phones use it.
    PrivacyRelay = "privacy_relay" {
        title: "The connection comes through a privacy relay",
        fires_when: "the IP is an iCloud Private Relay egress (country from Apple's list) or Cloudflare WARP, not a VPN exit",
        weight: 10,
        confidence: High,
    },
    /// The IP is a Tor exit: the network says nothing about the user's
    /// place. Default weight 50 (review on its own).
    TorExit = "tor_exit" {
        title: "The connection comes from Tor",
        fires_when: "the IP is a Tor exit",
        weight: 50,
        confidence: High,
    },
    /// The IP's country is unknown: a private or reserved address, or one
    /// the country database does not locate. Unknown is not innocent.
    /// Default weight 15: a misconfigured proxy or a fresh range is not an
    /// attack, but no network check can speak for the login.
    IpCountryUnknown = "ip_country_unknown" {
        title: "The connection's country is unknown",
        fires_when: "no country is known for the IP (private, reserved or unlocated); with restricted-region claims the verdict is at least `review`",
        weight: 15,
        confidence: Medium,
    },
    /// Two sign-ins of one account from countries farther apart than a
    /// plane could fly in the time between them: a relay hop, or a shared
    /// account. Default weight 40.
    ImpossibleTravel = "impossible_travel" {
        title: "The account moved faster than a plane",
        fires_when: "the account's previous sign-in came from a country farther away than 1 000 km/h allows in the time since (borders nearer than 500 km never count)",
        weight: 40,
        confidence: Medium,
    },
    /// Most of the account's recent sign-ins came from devices whose zone
    /// points into a restricted region. Default weight 40.
    AccountRegionHistory = "account_region_history" {
        title: "The account mostly signs in from a restricted region's devices",
        fires_when: "at least half of the account's most recent accepted sign-ins (up to 32, in the last 30 days, 3 or more) came from a device whose zone points into a restricted region",
        weight: 40,
        confidence: Medium,
    },
    /// The device's zone or locale changed between sign-ins while the
    /// network stayed the same: someone started spoofing. Default weight 30.
    ZoneFlip = "zone_flip" {
        title: "The device's zone or language changed on the same network",
        fires_when: "an earlier sign-in of the account from the same /24 or /48 in the last week reported another zone or locale",
        weight: 30,
        confidence: Medium,
    },
    /// Enough of the organisation's accounts mostly sign in from devices
    /// pointing into a restricted region: a pattern, not a traveller.
    /// Default weight 30.
    OrganizationRegionShare = "organization_region_share" {
        title: "The organisation's accounts point to a restricted region",
        fires_when: "at least 30 % of the organisation's accounts seen in the last 30 days (3 or more) mostly sign in from devices whose zone points into a restricted region",
        weight: 30,
        confidence: Medium,
    },
    /// The page answered the verifier's echoes much later than the
    /// connection's own round trip allows: the browser sits far behind the
    /// connection's exit (a proxy, Shadowsocks, V2Ray, a relay service).
    /// Default weight 50: `review` alone (company gateways and satellite
    /// accelerators relay honestly); at least the deny threshold when the
    /// device's zone points into a restricted region.
    RelayLatency = "relay_latency" {
        title: "The browser is far behind its network exit",
        fires_when: "the echo round trip through the page exceeds the connection's TCP round trip by more than `relay_latency_ms` (25 ms), the TCP round trip of a hosting network counted at most what a data centre in its country can take from `server_location`; weighs at least the deny threshold when the zone points into a restricted region; never for `trusted_networks`",
        weight: 50,
        confidence: Medium,
    },
    /// The echo came back so fast that the browser must be nearer the
    /// verifier than any restricted region: light covers at most 150 km
    /// per millisecond of round trip. Default weight −50, but it never
    /// takes away more than the zone and language reasons of the same
    /// answer add: it clears what only the device's settings said, never
    /// what the network or tampering showed.
    OutsideRegionByLatency = "outside_region_by_latency" {
        title: "The browser is too near to be in a restricted region",
        fires_when: "with `server_location` set, the echo round trip puts the browser within 150 km per ms of round trip (light in vacuum; fibre is slower) of the verifier, and every restricted region is farther; takes away at most the weight of the answer's zone and language reasons",
        weight: -50,
        confidence: High,
    },
    /// The browser's UDP (WebRTC, sent around an HTTP or SOCKS proxy) came
    /// from another country than its login. Default weight 30; when that
    /// country is restricted, `restricted_region_ip` comes with it.
    UdpOriginMismatch = "udp_origin_mismatch" {
        title: "The browser's UDP comes from another country",
        fires_when: "the source of the browser's UDP probe (`udp_listen`) is in another country than the login's IP; a restricted country adds `restricted_region_ip`; no probe is no penalty",
        weight: 30,
        confidence: High,
    },
    /// The history could not be read or written: the history reasons are
    /// missing from this answer. Default weight 0: the rest of the answer
    /// stands on its own.
    HistoryUnavailable = "history_unavailable" {
        title: "The account history could not be consulted",
        fires_when: "the history database could not answer in time; the answer has no history reasons",
        weight: 0,
        confidence: High,
    },
    /// The client took its challenge without the echo, so its distance
    /// behind its network exit went unmeasured. A client chooses that (one
    /// filter rule blocks a WebSocket), so under restricted regions the
    /// policy's `withheld_echo` is the least verdict. Default weight 0: a
    /// floor, never a step towards `deny` (honest networks block
    /// WebSockets too). Never for trusted networks or listed relays, where
    /// the echo has nothing to show.
    EchoWithheld = "echo_withheld" {
        title: "The client skipped the echo",
        fires_when: "under restricted regions, with the policy's `withheld_echo` other than `allow`, the token carries a challenge not taken through the echo (`GET /v1/echo`; the drop-in and `meridian collect` take it), or one whose echo ran from another country than the login: `withheld_echo` is the least verdict; never for `trusted_networks` or listed relays",
        weight: 0,
        confidence: Medium,
    },
}

impl ReasonCode {
    /// The stable snake_case name, as in the answer.
    pub const fn as_str(self) -> &'static str {
        self.spec().code
    }

    /// A short title for people (the demo's result page, consoles).
    pub const fn title(self) -> &'static str {
        self.spec().title
    }

    /// The code named `name` (its snake_case wire name).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|code| code.as_str() == name)
    }

    /// The README's table of reasons, generated from [`ReasonCode::ALL`]
    /// (a test keeps README.md equal to it).
    pub fn markdown_table() -> String {
        let mut table = String::from("| reason | default weight | fires when |\n|---|---|---|\n");
        for code in Self::ALL {
            let spec = code.spec();
            table.push_str(&format!("| `{}` | {} | {} |\n", spec.code, spec.default_weight, spec.fires_when));
        }
        table
    }
}

impl std::fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How strongly a reason's own evidence, together with the rest of the
/// answer, supports what it says.
///
/// `low`: one soft signal with innocent explanations (a zone mismatch
/// alone is a traveller as often as a liar). `medium`: a fact, or a soft
/// signal another reason corroborates. `high`: direct evidence (a replaced
/// API, a restricted-region IP) or independent signals that agree (a zone
/// mismatch behind a relay with the restricted region's language).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "http", derive(utoipa::ToSchema))]
pub enum Confidence {
    /// One soft signal.
    Low,
    /// A fact, or a soft signal with support.
    Medium,
    /// Direct or independently corroborated evidence.
    High,
}

/// One thing that is off, with its weight in the score and a sentence a
/// person can read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "http", derive(utoipa::ToSchema))]
pub struct Reason {
    /// Stable code.
    pub code: ReasonCode,
    /// Points this adds to the score (taken away, for the one exonerating
    /// reason, `outside_region_by_latency`).
    pub weight: i32,
    /// A sentence that explains it.
    pub detail: String,
    /// How strongly the evidence supports it.
    pub confidence: Confidence,
}

impl Reason {
    /// A reason with the confidence its evidence alone gives; the checks
    /// raise it when other reasons corroborate ([`grade`]).
    pub fn new(code: ReasonCode, weight: i32, detail: String) -> Self {
        Self { code, weight, detail, confidence: code.spec().confidence }
    }
}

impl Confidence {
    /// `low`, `medium` or `high`, as in the answer.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
        }
    }
}

/// Raises the confidence of soft reasons that other reasons corroborate:
/// a zone or language mismatch is `medium` behind a relay, hosting or
/// changed network, or with a second soft mismatch, and `high` when a
/// restricted-region claim (zone plus language) also agrees; a
/// restricted-region claim behind a relay is `high`.
pub fn grade(reasons: &mut [Reason]) {
    use ReasonCode as C;
    let has = |code: C, reasons: &[Reason]| reasons.iter().any(|r| r.code == code);
    let relayed =
        [C::HostingIp, C::PrivacyRelay, C::TorExit, C::IpChanged].into_iter().any(|c| has(c, reasons));
    let claim = has(C::RestrictedRegionClaim, reasons);
    let soft =
        [C::TzOffsetMismatch, C::TzCountryMismatch, C::LocaleCountryMismatch, C::AcceptLanguageMismatch];
    let soft_count = reasons.iter().filter(|r| soft.contains(&r.code)).count();
    for reason in reasons.iter_mut() {
        let raised = match reason.code {
            code if soft.contains(&code) => {
                if claim && relayed {
                    Confidence::High
                } else if claim || relayed || soft_count >= 2 {
                    Confidence::Medium
                } else {
                    Confidence::Low
                }
            }
            C::RestrictedRegionClaim if relayed => Confidence::High,
            _ => reason.confidence,
        };
        reason.confidence = reason.confidence.max(raised);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic, reason = "tests fail by panicking")]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_the_wire_names() {
        for code in ReasonCode::ALL {
            let json = serde_json::to_value(code).unwrap();
            assert_eq!(json.as_str(), Some(code.as_str()), "serde and the table agree");
            assert_eq!(ReasonCode::from_name(code.as_str()), Some(*code));
            assert!(code.title().len() > 8 && code.spec().fires_when.len() > 8, "{code}");
        }
        let mut names: Vec<&str> = ReasonCode::ALL.iter().map(|c| c.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ReasonCode::ALL.len(), "every name is unique");
    }

    #[test]
    fn the_readme_table_is_generated_from_the_table() {
        let readme = include_str!("../../README.md");
        let table = ReasonCode::markdown_table();
        assert!(
            readme.contains(&table),
            "README.md's reason table differs from verdict.rs; replace it with:\n\n{table}"
        );
    }
}

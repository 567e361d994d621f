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
    /// `allow`, `review` or `deny`, as in the answer.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Review => "review",
            Self::Deny => "deny",
        }
    }
}

/// Stable reason codes (`reasons[].code`). Never renamed; new ones may come.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
#[cfg_attr(feature = "http", derive(utoipa::ToSchema))]
pub enum ReasonCode {
    /// The claimed UTC offset is none of the IP country's offsets.
    TzOffsetMismatch,
    /// The claimed zone is not a zone of the IP country.
    TzCountryMismatch,
    /// The zone name disagrees with the offsets the browser reported.
    TzInternalInconsistent,
    /// The locale's region and languages do not fit the IP country.
    LocaleCountryMismatch,
    /// The `Accept-Language` header disagrees with `navigator.languages`.
    AcceptLanguageMismatch,
    /// A time or language API was replaced in the page.
    TamperedApi,
    /// A worker sees another zone or language than the page.
    WorkerScopeMismatch,
    /// The browser clock is off by more than the tolerance.
    ClockSkew,
    /// The IP is in a restricted region.
    RestrictedRegionIp,
    /// The browser's zone and languages point into a restricted region.
    RestrictedRegionClaim,
    /// The IP belongs to a hosting or VPN network.
    HostingIp,
    /// The IP changed between challenge and verification.
    IpChanged,
    /// The browser is driven by automation.
    Automation,
    /// The replay store could not be asked and the verifier is configured
    /// to fail open: this token may have been used before.
    ReplayUnchecked,
    /// The browser withholds its time zone the way privacy browsers do
    /// (Firefox's `resistFingerprinting`, Tor Browser, Mullvad Browser,
    /// LibreWolf): the zone is not a claim, so zone checks are skipped.
    PrivacyBrowser,
    /// The IP is an egress of a privacy relay (iCloud Private Relay,
    /// Cloudflare WARP) that keeps the user's region, not a VPN exit.
    PrivacyRelay,
    /// The IP is a Tor exit: the network says nothing about the user's place.
    TorExit,
    /// The IP's country is unknown: a private or reserved address, or one
    /// the country database does not locate. Unknown is not innocent.
    IpCountryUnknown,
}

impl ReasonCode {
    /// The stable snake_case name, as in the answer.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TzOffsetMismatch => "tz_offset_mismatch",
            Self::TzCountryMismatch => "tz_country_mismatch",
            Self::TzInternalInconsistent => "tz_internal_inconsistent",
            Self::LocaleCountryMismatch => "locale_country_mismatch",
            Self::AcceptLanguageMismatch => "accept_language_mismatch",
            Self::TamperedApi => "tampered_api",
            Self::WorkerScopeMismatch => "worker_scope_mismatch",
            Self::ClockSkew => "clock_skew",
            Self::RestrictedRegionIp => "restricted_region_ip",
            Self::RestrictedRegionClaim => "restricted_region_claim",
            Self::HostingIp => "hosting_ip",
            Self::IpChanged => "ip_changed",
            Self::Automation => "automation",
            Self::ReplayUnchecked => "replay_unchecked",
            Self::PrivacyBrowser => "privacy_browser",
            Self::PrivacyRelay => "privacy_relay",
            Self::TorExit => "tor_exit",
            Self::IpCountryUnknown => "ip_country_unknown",
        }
    }

    /// A short title for people (the demo's result page, consoles).
    pub fn title(self) -> &'static str {
        match self {
            Self::TzOffsetMismatch => "The clock's UTC offset is not used in the IP's country",
            Self::TzCountryMismatch => "The time zone belongs to another country",
            Self::TzInternalInconsistent => "The time zone and the clock disagree",
            Self::LocaleCountryMismatch => "The language is not one of the IP country's",
            Self::AcceptLanguageMismatch => "The page and the network stack report different languages",
            Self::TamperedApi => "Time or language functions were replaced in the page",
            Self::WorkerScopeMismatch => "A worker sees a different zone or language",
            Self::ClockSkew => "The clock is far off",
            Self::RestrictedRegionIp => "The connection comes from a restricted region",
            Self::RestrictedRegionClaim => "The browser points to a restricted region",
            Self::HostingIp => "The connection comes from a hosting or VPN network",
            Self::IpChanged => "The connection's IP changed during sign-in",
            Self::Automation => "The browser is automated",
            Self::ReplayUnchecked => "Single use could not be checked",
            Self::PrivacyBrowser => "The browser withholds its time zone",
            Self::PrivacyRelay => "The connection comes through a privacy relay",
            Self::TorExit => "The connection comes from Tor",
            Self::IpCountryUnknown => "The connection's country is unknown",
        }
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
    /// Points this adds to the score.
    pub weight: u32,
    /// A sentence that explains it.
    pub detail: String,
    /// How strongly the evidence supports it.
    pub confidence: Confidence,
}

impl Reason {
    /// A reason with the confidence its evidence alone gives; the checks
    /// raise it when other reasons corroborate ([`grade`]).
    pub fn new(code: ReasonCode, weight: u32, detail: String) -> Self {
        Self { code, weight, detail, confidence: base_confidence(code) }
    }
}

/// What a reason's evidence is worth on its own.
fn base_confidence(code: ReasonCode) -> Confidence {
    use ReasonCode as C;
    match code {
        C::TamperedApi
        | C::TzInternalInconsistent
        | C::WorkerScopeMismatch
        | C::Automation
        | C::RestrictedRegionIp
        | C::ReplayUnchecked
        | C::TorExit
        | C::PrivacyRelay
        | C::PrivacyBrowser => Confidence::High,
        C::RestrictedRegionClaim
        | C::AcceptLanguageMismatch
        | C::HostingIp
        | C::IpChanged
        | C::IpCountryUnknown => Confidence::Medium,
        C::TzOffsetMismatch | C::TzCountryMismatch | C::LocaleCountryMismatch | C::ClockSkew => {
            Confidence::Low
        }
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

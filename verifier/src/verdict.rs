//! The verdict a verification returns, and the reasons behind it.

use serde::Serialize;

/// What the backend should do with the login.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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
}

//! What the machine says about where it is: its time zone and that zone's
//! offsets, its locale and preferred languages.
//!
//! All of it is what the user (or whoever runs the program) set: `TZ`,
//! `/etc/localtime`, `LANG` and the OS settings. The verifier weighs it
//! against the network, which the machine does not choose.

use jiff::Timestamp;
use jiff::civil::date;
use jiff::tz::TimeZone;
use meridian_protocol::{LocaleClaims, TimeZoneClaims};

/// The POSIX variables that name the language, in glibc's order of
/// precedence for messages.
const LOCALE_VARIABLES: [&str; 3] = ["LC_ALL", "LC_MESSAGES", "LANG"];

/// The zone claims of the system's zone at `now`: its IANA name (empty
/// when the system names none, e.g. a POSIX `TZ=CST-8`) and its offsets
/// now, at local midnight of 1 January and of 1 July of `now`'s year.
pub fn time_zone(now: Timestamp) -> TimeZoneClaims {
    time_zone_of(&TimeZone::system(), now)
}

/// [`time_zone`] for `zone`.
pub fn time_zone_of(zone: &TimeZone, now: Timestamp) -> TimeZoneClaims {
    let minutes = |at: Timestamp| zone.to_offset(at).seconds() / 60;
    let year = zone.to_datetime(now).year();
    let midnight = |month: i8| zone.to_timestamp(date(year, month, 1).at(0, 0, 0, 0)).unwrap_or(now);
    TimeZoneClaims {
        zone: zone.iana_name().unwrap_or_default().to_owned(),
        offset_now_min: minutes(now),
        offset_jan_min: minutes(midnight(1)),
        offset_jul_min: minutes(midnight(7)),
    }
}

/// The locale claims from the process's environment, or from the OS's
/// settings when no variable names a language.
pub fn locale() -> LocaleClaims {
    let variable = |name: &str| std::env::var(name).ok();
    locale_from(variable, sys_locale::get_locales().collect())
}

/// The locale claims from the POSIX variables `variable` gives, falling
/// back to `system` (the OS's preferred languages, BCP 47).
pub fn locale_from(variable: impl Fn(&str) -> Option<String>, system: Vec<String>) -> LocaleClaims {
    // The first variable set to something decides, as in glibc: `LC_ALL=C`
    // means no language even when `LANG` names one.
    let set = LOCALE_VARIABLES.iter().find_map(|name| variable(name).filter(|value| !value.is_empty()));
    let (locale, mut languages) = match set {
        Some(value) => {
            let locale = bcp47(&value);
            // `LANGUAGE` (a list) orders the languages, unless the locale is C.
            let listed: Vec<String> = match (&locale, variable("LANGUAGE")) {
                (Some(_), Some(list)) => list.split(':').filter_map(bcp47).collect(),
                _ => Vec::new(),
            };
            let languages = if listed.is_empty() { locale.iter().cloned().collect() } else { listed };
            (locale, languages)
        }
        None => {
            let languages: Vec<String> = system.into_iter().filter(|tag| !tag.is_empty()).collect();
            (languages.first().cloned(), languages)
        }
    };
    // Browsers list a regional language's base too (`zh-CN`, `zh`).
    let mut with_bases = Vec::new();
    for tag in languages.drain(..) {
        let base = tag.split('-').next().unwrap_or_default().to_owned();
        if !with_bases.contains(&tag) {
            with_bases.push(tag);
        }
        if !base.is_empty() && !with_bases.contains(&base) {
            with_bases.push(base);
        }
    }
    let locale = locale.unwrap_or_else(|| "und".to_owned());
    LocaleClaims {
        language: with_bases.first().cloned().unwrap_or_else(|| locale.clone()),
        languages: with_bases,
        locale,
        calendar: "gregory".to_owned(),
        numbering: "latn".to_owned(),
        hour_cycle: String::new(),
    }
}

/// A POSIX locale name (`zh_CN.UTF-8@pinyin`) as a BCP 47 tag (`zh-CN`);
/// `None` for `C`, `POSIX` and names that are no language.
pub fn bcp47(posix: &str) -> Option<String> {
    let name = posix.split(['.', '@']).next().unwrap_or_default().trim();
    if name.is_empty() || name == "C" || name == "POSIX" {
        return None;
    }
    let mut parts = name.split(['_', '-']);
    let language =
        parts.next().filter(|l| (2..=3).contains(&l.len()) && l.bytes().all(|b| b.is_ascii_alphabetic()))?;
    let mut tag = language.to_ascii_lowercase();
    for part in parts.filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric())) {
        tag.push('-');
        match part.len() {
            2 => tag.push_str(&part.to_ascii_uppercase()),
            4 => {
                // A script: title case (`Hant`).
                let (first, rest) = part.split_at(1);
                tag.push_str(&first.to_ascii_uppercase());
                tag.push_str(&rest.to_ascii_lowercase());
            }
            _ => tag.push_str(part),
        }
    }
    Some(tag)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail by panicking")]
mod tests {
    use super::*;

    fn vars(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_owned())
    }

    #[test]
    fn posix_locale_names_become_bcp47_tags() {
        assert_eq!(bcp47("zh_CN.UTF-8").as_deref(), Some("zh-CN"));
        assert_eq!(bcp47("de_DE@euro").as_deref(), Some("de-DE"));
        assert_eq!(bcp47("sr_RS.UTF-8@latin").as_deref(), Some("sr-RS"));
        assert_eq!(bcp47("zh_hant_TW").as_deref(), Some("zh-Hant-TW"));
        assert_eq!(bcp47("en").as_deref(), Some("en"));
        for none in ["C", "POSIX", "C.UTF-8", "", ".UTF-8", "12_34", "<script>"] {
            assert_eq!(bcp47(none), None, "{none:?}");
        }
    }

    #[test]
    fn variables_decide_in_glibc_order_and_language_orders_the_list() {
        let claims = locale_from(vars(&[("LANG", "zh_CN.UTF-8")]), vec!["en-US".into()]);
        assert_eq!(
            (claims.locale.as_str(), claims.languages.clone()),
            ("zh-CN", vec!["zh-CN".into(), "zh".into()])
        );
        let claims = locale_from(vars(&[("LANG", "en_US.UTF-8"), ("LC_ALL", "de_DE.UTF-8")]), Vec::new());
        assert_eq!(claims.locale, "de-DE", "LC_ALL wins");
        let claims = locale_from(vars(&[("LANG", "en_GB.UTF-8"), ("LANGUAGE", "fr_FR:en_GB")]), Vec::new());
        assert_eq!(claims.languages, ["fr-FR", "fr", "en-GB", "en"]);
        assert_eq!(claims.language, "fr-FR");
        let claims =
            locale_from(vars(&[("LC_ALL", "C"), ("LANG", "zh_CN.UTF-8"), ("LANGUAGE", "zh_CN")]), Vec::new());
        assert_eq!((claims.locale.as_str(), claims.languages.len()), ("und", 0), "C means no language");
    }

    #[test]
    fn without_variables_the_system_languages_count() {
        let claims = locale_from(vars(&[]), vec!["ja-JP".into(), "en-US".into()]);
        assert_eq!(claims.locale, "ja-JP");
        assert_eq!(claims.languages, ["ja-JP", "ja", "en-US", "en"]);
    }

    #[test]
    fn offsets_follow_the_zone_rules() {
        let now: Timestamp = "2026-12-03T12:00:00Z".parse().unwrap();
        let shanghai = time_zone_of(&TimeZone::get("Asia/Shanghai").unwrap(), now);
        assert_eq!(
            (
                shanghai.zone.as_str(),
                shanghai.offset_now_min,
                shanghai.offset_jan_min,
                shanghai.offset_jul_min
            ),
            ("Asia/Shanghai", 480, 480, 480)
        );
        let berlin = time_zone_of(&TimeZone::get("Europe/Berlin").unwrap(), now);
        assert_eq!((berlin.offset_now_min, berlin.offset_jan_min, berlin.offset_jul_min), (60, 60, 120));
        let posix = time_zone_of(&TimeZone::posix("CST-8").unwrap(), now);
        assert_eq!((posix.zone.as_str(), posix.offset_now_min), ("", 480), "no IANA name to give");
    }
}

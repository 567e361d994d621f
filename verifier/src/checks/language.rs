//! Language tags, as loosely as browsers write them.

use meridian_protocol::Claims;

/// The primary language subtag, lower case: `zh-Hans-CN` → `zh`. The
/// POSIX locale (`C`, `POSIX`, which WebKit reports without a `LANG`) is no
/// language.
pub fn primary_language(tag: &str) -> Option<String> {
    let primary = tag.trim().split(['-', '_', '.']).next()?;
    (primary.len() >= 2
        && primary.len() <= 8
        && primary.bytes().all(|b| b.is_ascii_alphabetic())
        && !primary.eq_ignore_ascii_case("posix"))
    .then(|| primary.to_ascii_lowercase())
}

/// The region subtag if it is a two-letter country: `zh-Hans-CN` → `CN`.
pub fn locale_region(tag: &str) -> Option<&str> {
    tag.split(['-', '_']).skip(1).find(|s| s.len() == 2 && s.bytes().all(|b| b.is_ascii_alphabetic()))
}

/// The browser's own languages: Intl's locale and the first of
/// `navigator.languages`, as primary subtags, without duplicates.
pub(super) fn browser_languages(claims: &Claims) -> Vec<String> {
    let mut languages = Vec::with_capacity(2);
    let candidates =
        [Some(claims.locale.locale.as_str()), claims.locale.languages.first().map(String::as_str)];
    for language in candidates.into_iter().flatten().filter_map(primary_language) {
        if !languages.contains(&language) {
            languages.push(language);
        }
    }
    languages
}

/// The header's most preferred language (highest q, first on ties).
fn preferred_in_header(header: &str) -> Option<String> {
    let mut best: Option<(f32, String)> = None;
    for item in header.split(',').take(32) {
        let mut parts = item.split(';');
        let Some(language) = parts.next().and_then(primary_language) else { continue };
        let q = parts
            .find_map(|p| p.trim().strip_prefix("q="))
            .and_then(|q| q.trim().parse::<f32>().ok())
            .filter(|q| q.is_finite())
            .unwrap_or(1.0);
        if q > 0.0 && best.as_ref().is_none_or(|(b, _)| q > *b) {
            best = Some((q, language));
        }
    }
    best.map(|(_, language)| language)
}

/// A sentence when the header's preferred language is not the page's.
pub(super) fn accept_language_mismatch(header: &str, navigator_languages: &[String]) -> Option<String> {
    let header_first = preferred_in_header(header)?;
    let page_first = navigator_languages.first().and_then(|l| primary_language(l))?;
    (header_first != page_first).then(|| {
        format!(
            "The browser's Accept-Language header prefers {header_first:?}, but navigator.languages in the page starts with {page_first:?}."
        )
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic, reason = "tests fail by panicking")]
mod tests {
    use super::*;

    #[test]
    fn tags() {
        assert_eq!(primary_language("zh-Hans-CN").as_deref(), Some("zh"));
        assert_eq!(primary_language("EN_us").as_deref(), Some("en"));
        assert_eq!(primary_language("*"), None);
        assert_eq!(locale_region("zh-Hans-CN"), Some("CN"));
        assert_eq!(locale_region("de"), None);
        assert_eq!(preferred_in_header("en;q=0.5, zh-CN;q=0.9, de;q=0").as_deref(), Some("zh"));
        // WebKit without a LANG: the POSIX locale is no language at all, and
        // its Intl locale carries a `-u-va-posix` extension.
        assert_eq!(primary_language("C"), None);
        assert_eq!(primary_language("POSIX"), None);
        assert_eq!(primary_language("en-US-u-va-posix").as_deref(), Some("en"));
        assert_eq!(locale_region("en-US-u-va-posix"), Some("US"));
        assert!(accept_language_mismatch("en-US", &["C".into()]).is_none());
        assert_eq!(preferred_in_header("zh-CN,zh;q=0.9,en;q=0.8").as_deref(), Some("zh"));
        assert!(accept_language_mismatch("zh-CN,zh;q=0.9", &["en-US".into()]).is_some());
        assert!(accept_language_mismatch("en-US,en;q=0.9", &["en-GB".into()]).is_none());
        assert!(accept_language_mismatch("", &["en-GB".into()]).is_none());
    }
}

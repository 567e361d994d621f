//! The list of hosting, cloud and VPN networks (by ASN).
//!
//! The built-in list is `verifier/data/hosting_asns.csv`, kept in the
//! repository with a source for every entry; operators can load their own.

use std::collections::HashMap;

/// The built-in list, compiled in.
const BUILTIN: &str = include_str!("../../data/hosting_asns.csv");

/// ASNs of hosting, cloud and VPN networks, with their organisation and kind.
#[derive(Debug, Clone, Default)]
pub struct HostingAsns {
    by_asn: HashMap<u32, (String, String)>,
}

/// Why a hosting list cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("hosting ASN list, line {line}: {reason}")]
pub struct HostingError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

impl HostingAsns {
    /// The list shipped with Meridian.
    pub fn builtin() -> Self {
        // OK because the built-in file is checked by this module's tests.
        Self::parse(BUILTIN).unwrap_or_default()
    }

    /// Parses CSV with the header `asn,organisation,kind,source`; `#` starts
    /// a comment line. Fields may be double-quoted.
    ///
    /// # Errors
    /// The first line that is not a valid entry.
    pub fn parse(text: &str) -> Result<Self, HostingError> {
        let mut by_asn = HashMap::new();
        let mut header_seen = false;
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if !header_seen {
                header_seen = true;
                if line.starts_with("asn,") {
                    continue;
                }
            }
            let fields = split_csv(line);
            let error = |reason: &str| HostingError { line: index + 1, reason: reason.to_owned() };
            let asn = fields
                .first()
                .map(|f| f.trim().trim_start_matches("AS"))
                .and_then(|f| f.parse::<u32>().ok())
                .ok_or_else(|| error("first field is not an ASN"))?;
            let org = fields.get(1).cloned().unwrap_or_default();
            let kind = fields.get(2).cloned().unwrap_or_default();
            by_asn.insert(asn, (org, kind));
        }
        Ok(Self { by_asn })
    }

    /// Whether `asn` is on the list.
    pub fn contains(&self, asn: u32) -> bool {
        self.by_asn.contains_key(&asn)
    }

    /// The organisation and kind (`cloud`, `hosting`, `vpn`, …) of a listed ASN.
    pub fn get(&self, asn: u32) -> Option<(&str, &str)> {
        self.by_asn.get(&asn).map(|(org, kind)| (org.as_str(), kind.as_str()))
    }

    /// Number of listed ASNs.
    pub fn len(&self) -> usize {
        self.by_asn.len()
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.by_asn.is_empty()
    }
}

/// Splits one CSV line, honouring double quotes (`""` is a quote).
fn split_csv(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(std::mem::take(&mut field)),
            (c, _) => field.push(c),
        }
    }
    fields.push(field);
    fields
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic, reason = "tests fail by panicking")]
mod tests {
    use super::*;

    #[test]
    fn builtin_list_parses_and_has_the_big_clouds() {
        let list = HostingAsns::parse(BUILTIN).unwrap();
        assert!(list.len() >= 30, "{}", list.len());
        assert!(list.contains(16509), "AWS");
        assert!(list.contains(14061), "DigitalOcean");
        assert!(!list.contains(3320), "Deutsche Telekom is an ISP");
    }

    #[test]
    fn parses_quotes_and_reports_bad_lines() {
        let list =
            HostingAsns::parse("asn,organisation,kind,source\n# c\n64500,\"Example, Inc.\",vpn,test\n")
                .unwrap();
        assert_eq!(list.get(64500), Some(("Example, Inc.", "vpn")));
        assert_eq!(HostingAsns::parse("asn,organisation\nx,y").err().map(|e| e.line), Some(2));
    }
}

//! `meridian update-data`: fetches fresher IP databases and relay lists.
//!
//! Each source is downloaded next to its target (`NAME.part`), checked for
//! its format — a MaxMind DB must open, a relay list must parse whole, and
//! a file must not be implausibly small — and only then renamed over the
//! old file, which is atomic on one file system: a reader sees the old file
//! or the new one, never half of either. A source that fails leaves its
//! previous file in place and the others still update. A running
//! `meridian serve` loads the new files on SIGHUP.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::geo::{self, RelayLists};

/// What a source holds, and so how it is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A MaxMind DB (country or ASN).
    Mmdb,
    /// Apple's Private Relay egress CSV.
    PrivateRelayCsv,
    /// The Tor Project's exit list.
    TorExitList,
}

/// One file to refresh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// A short name for progress lines.
    pub name: &'static str,
    /// Where to fetch it (`http://` or `https://`).
    pub url: String,
    /// The file it replaces.
    pub target: PathBuf,
    /// Its format.
    pub format: Format,
}

/// Where each source is published. The npm copy of the country database
/// that the set-up installs is a frozen snapshot; this is its live twin.
pub const COUNTRY_DB_URL: &str =
    "https://cdn.jsdelivr.net/npm/@ip-location-db/geo-whois-asn-country-mmdb/geo-whois-asn-country.mmdb";
/// Apple's list of iCloud Private Relay egress ranges.
pub const PRIVATE_RELAY_URL: &str = "https://mask-api.icloud.com/egress-ip-ranges.csv";
/// The Tor Project's bulk exit list.
pub const TOR_EXITS_URL: &str = "https://check.torproject.org/torbulkexitlist";

/// The largest file accepted: the country databases are tens of MB; a
/// server streaming without end must not fill the memory.
pub const MAX_DOWNLOAD_BYTES: usize = 512 << 20;

/// Why one source did not update.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpdateError {
    /// The server could not be reached or the transfer broke off.
    #[error("{name}: cannot download {url}: {reason} (offline? the previous file is kept)")]
    Download {
        /// The source.
        name: &'static str,
        /// Its address.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The server answered, but not with the file.
    #[error("{name}: {url} answered HTTP {status}; the previous file is kept")]
    Status {
        /// The source.
        name: &'static str,
        /// Its address.
        url: String,
        /// The status code.
        status: u16,
    },
    /// The file arrived but is not of its format.
    #[error("{name}: the download is not a valid {what}: {reason}; the previous file is kept")]
    Format {
        /// The source.
        name: &'static str,
        /// What it should have been.
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The file could not be written.
    #[error("{name}: cannot write {path}: {reason}")]
    Write {
        /// The source.
        name: &'static str,
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
}

/// The sources of a data directory: the relay lists, and the country
/// database when `with_country_db`.
pub fn default_sources(dir: &Path, with_country_db: bool) -> Vec<Source> {
    let mut sources = vec![
        Source {
            name: "private relay",
            url: PRIVATE_RELAY_URL.into(),
            target: dir.join(geo::PRIVATE_RELAY_FILE),
            format: Format::PrivateRelayCsv,
        },
        Source {
            name: "tor exits",
            url: TOR_EXITS_URL.into(),
            target: dir.join(geo::TOR_EXITS_FILE),
            format: Format::TorExitList,
        },
    ];
    if with_country_db {
        sources.push(Source {
            name: "country db",
            url: COUNTRY_DB_URL.into(),
            target: dir.join(geo::COUNTRY_DB_FILE),
            format: Format::Mmdb,
        });
    }
    sources
}

/// Downloads, checks and installs one source; `progress` receives lines
/// for a person. Returns the bytes installed.
///
/// # Errors
/// See [`UpdateError`]; on any error the previous file is untouched.
pub async fn update(
    client: &reqwest::Client,
    source: &Source,
    progress: &mut dyn FnMut(&str),
) -> Result<u64, UpdateError> {
    let download =
        |reason: String| UpdateError::Download { name: source.name, url: source.url.clone(), reason };
    let mut response = client.get(&source.url).send().await.map_err(|e| download(error_chain(&e)))?;
    if !response.status().is_success() {
        return Err(UpdateError::Status {
            name: source.name,
            url: source.url.clone(),
            status: response.status().as_u16(),
        });
    }
    let total = response.content_length();
    let mut body = Vec::with_capacity(usize::try_from(total.unwrap_or(0)).unwrap_or(0).min(256 << 20));
    let mut reported = 0usize;
    while let Some(chunk) = response.chunk().await.map_err(|e| download(error_chain(&e)))? {
        if body.len() + chunk.len() > MAX_DOWNLOAD_BYTES {
            return Err(download(format!("larger than {} MB", MAX_DOWNLOAD_BYTES >> 20)));
        }
        body.extend_from_slice(&chunk);
        if body.len() - reported >= 4 << 20 {
            reported = body.len();
            progress(&match total {
                Some(total) => format!("{}: {} of {} MB", source.name, reported >> 20, total >> 20),
                None => format!("{}: {} MB", source.name, reported >> 20),
            });
        }
    }
    check(source, &body)?;
    install(source, &body)?;
    Ok(body.len() as u64)
}

/// Checks that `body` is a usable file of the source's format.
///
/// # Errors
/// [`UpdateError::Format`] naming what is wrong.
pub fn check(source: &Source, body: &[u8]) -> Result<(), UpdateError> {
    let format_error = |what, reason: String| UpdateError::Format { name: source.name, what, reason };
    match source.format {
        Format::Mmdb => {
            let reader = maxminddb::Reader::from_source(body)
                .map_err(|e| format_error("MaxMind DB", e.to_string()))?;
            if reader.metadata().node_count < 1_000 {
                return Err(format_error("MaxMind DB", "it has almost no networks".into()));
            }
        }
        Format::PrivateRelayCsv | Format::TorExitList => {
            let what =
                if source.format == Format::TorExitList { "Tor exit list" } else { "Private Relay list" };
            let text = std::str::from_utf8(body).map_err(|_| format_error(what, "not UTF-8 text".into()))?;
            let parsed = if source.format == Format::TorExitList {
                RelayLists::none().with_tor_exits(text)
            } else {
                RelayLists::none().with_private_relay_csv(text)
            };
            parsed.map_err(|e| format_error(what, e.to_string()))?;
        }
    }
    Ok(())
}

/// Writes `body` to `TARGET.part`, flushes it to disk and renames it over
/// the target.
fn install(source: &Source, body: &[u8]) -> Result<(), UpdateError> {
    let write_error = |path: &Path, e: std::io::Error| UpdateError::Write {
        name: source.name,
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    if let Some(dir) = source.target.parent() {
        std::fs::create_dir_all(dir).map_err(|e| write_error(dir, e))?;
    }
    crate::fs::replace(&source.target, body).map_err(|e| write_error(&source.target, e))
}

/// An HTTP client for downloads: bounded connect and total times, so an
/// offline machine fails in seconds, not minutes.
///
/// # Errors
/// When the TLS stack cannot start.
pub fn client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(600))
        .user_agent(concat!("meridian/", env!("CARGO_PKG_VERSION"), " (update-data)"))
        .build()
        .map_err(|e| format!("cannot start an HTTP client: {e}"))
}

/// An error and its causes, for one line of output.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        cause = inner.source();
    }
    text
}

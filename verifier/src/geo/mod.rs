//! IP intelligence: IP → country, autonomous system and whether that system
//! is a hosting or VPN network.
//!
//! Country and ASN come from MaxMind DB (`.mmdb`) files. Both record shapes
//! in use are read: the flat ip-location-db shape (`{"country_code": "SG"}`)
//! and the GeoIP2 shape (`{"country": {"iso_code": "SG"}}`), so operators can
//! drop in GeoLite2, DB-IP or commercial files. ASN records use the GeoLite2
//! ASN field names (`autonomous_system_number`, `autonomous_system_organization`).
//! A missing database is not an error at lookup time: the fact is simply
//! unknown, and the checks that need it stay silent.

pub mod distance;
mod hosting;
mod relays;

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use maxminddb::Reader;
use serde::Deserialize;

pub use hosting::{HostingAsns, HostingError};
pub use relays::{Relay, RelayKind, RelayListError, RelayLists, WARP_ASN};

use crate::net::canonical_ip;

/// An ISO 3166-1 alpha-2 country code, upper case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Country([u8; 2]);

impl Country {
    /// Parses two ASCII letters, any case.
    pub fn parse(code: &str) -> Option<Self> {
        match code.as_bytes() {
            [a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => {
                Some(Self([a.to_ascii_uppercase(), b.to_ascii_uppercase()]))
            }
            _ => None,
        }
    }

    /// The code, e.g. `SG`.
    pub fn as_str(&self) -> &str {
        // OK because both bytes are ASCII letters by construction.
        std::str::from_utf8(&self.0).unwrap_or("??")
    }
}

impl std::fmt::Display for Country {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Country {
    type Err = String;

    fn from_str(code: &str) -> Result<Self, Self::Err> {
        Self::parse(code.trim()).ok_or_else(|| format!("{code:?} is not an ISO 3166-1 alpha-2 code"))
    }
}

impl<'de> serde::Deserialize<'de> for Country {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let code = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        code.parse().map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for Country {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// What is known about one IP.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpFacts {
    /// Country, when a country database knows the IP.
    pub country: Option<Country>,
    /// Autonomous system number, when an ASN database knows the IP.
    pub asn: Option<u32>,
    /// The AS's organisation.
    pub org: Option<String>,
    /// Whether the AS is on the hosting/VPN list (unknown without an ASN).
    pub hosting: Option<bool>,
    /// The privacy relay or Tor exit the IP belongs to, if any.
    pub relay: Option<Relay>,
}

/// Why a database cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GeoError {
    /// The file cannot be read or is not a MaxMind DB.
    #[error("{path}: {reason}")]
    Open {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
}

#[derive(Deserialize)]
struct CountryRecord<'a> {
    #[serde(borrow, default)]
    country_code: Option<&'a str>,
    #[serde(borrow, default)]
    country: Option<IsoCode<'a>>,
    #[serde(borrow, default)]
    registered_country: Option<IsoCode<'a>>,
}

#[derive(Deserialize)]
struct IsoCode<'a> {
    #[serde(borrow, default)]
    iso_code: Option<&'a str>,
}

#[derive(Deserialize)]
struct AsnRecord<'a> {
    #[serde(default)]
    autonomous_system_number: Option<u32>,
    #[serde(borrow, default)]
    autonomous_system_organization: Option<&'a str>,
}

/// The IP databases a verifier consults. Cheap to share behind an `Arc`.
pub struct IpIntel {
    country: Option<Reader<Vec<u8>>>,
    asn: Option<Reader<Vec<u8>>>,
    hosting: HostingAsns,
    relays: RelayLists,
}

impl std::fmt::Debug for IpIntel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IpIntel")
            .field("country_db", &self.country.as_ref().map(|r| r.metadata().database_type.clone()))
            .field("asn_db", &self.asn.as_ref().map(|r| r.metadata().database_type.clone()))
            .field("hosting_asns", &self.hosting.len())
            .field("private_relay_ranges", &self.relays.private_relay_len())
            .field("tor_exits", &self.relays.tor_exits_len())
            .finish()
    }
}

impl Default for IpIntel {
    fn default() -> Self {
        Self::none()
    }
}

impl IpIntel {
    /// No databases: every country and ASN is unknown. The built-in hosting
    /// list is still there, for when an ASN is known.
    pub fn none() -> Self {
        Self { country: None, asn: None, hosting: HostingAsns::builtin(), relays: RelayLists::none() }
    }

    /// Opens a country database and, optionally, an ASN database.
    ///
    /// # Errors
    /// When a file that was named cannot be read or parsed.
    pub fn open(country: Option<&Path>, asn: Option<&Path>) -> Result<Self, GeoError> {
        Ok(Self {
            country: country.map(open_reader).transpose()?,
            asn: asn.map(open_reader).transpose()?,
            hosting: HostingAsns::builtin(),
            relays: RelayLists::none(),
        })
    }

    /// Databases from bytes already in memory (tests write small ones).
    ///
    /// # Errors
    /// When the bytes are not a MaxMind DB.
    pub fn from_bytes(country: Option<Vec<u8>>, asn: Option<Vec<u8>>) -> Result<Self, GeoError> {
        let read = |bytes: Vec<u8>| {
            Reader::from_source(bytes)
                .map_err(|e| GeoError::Open { path: "<memory>".into(), reason: e.to_string() })
        };
        Ok(Self {
            country: country.map(read).transpose()?,
            asn: asn.map(read).transpose()?,
            hosting: HostingAsns::builtin(),
            relays: RelayLists::none(),
        })
    }

    /// Replaces the hosting/VPN ASN list.
    pub fn with_hosting(mut self, hosting: HostingAsns) -> Self {
        self.hosting = hosting;
        self
    }

    /// Uses these relay lists (Private Relay, Tor).
    pub fn with_relays(mut self, relays: RelayLists) -> Self {
        self.relays = relays;
        self
    }

    /// The relay lists.
    pub fn relays(&self) -> &RelayLists {
        &self.relays
    }

    /// Whether a country database is loaded.
    pub fn has_country_db(&self) -> bool {
        self.country.is_some()
    }

    /// Whether an ASN database is loaded.
    pub fn has_asn_db(&self) -> bool {
        self.asn.is_some()
    }

    /// The hosting list.
    pub fn hosting(&self) -> &HostingAsns {
        &self.hosting
    }

    /// The country of `ip`, if known. No allocation.
    pub fn country(&self, ip: IpAddr) -> Option<Country> {
        let reader = self.country.as_ref()?;
        let result = reader.lookup(canonical_ip(ip)).ok()?;
        let record: CountryRecord<'_> = result.decode().ok()??;
        let code = record
            .country_code
            .or_else(|| record.country.and_then(|c| c.iso_code))
            .or_else(|| record.registered_country.and_then(|c| c.iso_code))?;
        Country::parse(code)
    }

    /// Everything known about `ip`.
    pub fn lookup(&self, ip: IpAddr) -> IpFacts {
        let ip = canonical_ip(ip);
        let mut facts = IpFacts { country: self.country(ip), ..IpFacts::default() };
        if let Some(reader) = &self.asn {
            let record = reader.lookup(ip).ok().and_then(|r| r.decode::<AsnRecord<'_>>().ok().flatten());
            if let Some(record) = record {
                facts.asn = record.autonomous_system_number;
                facts.org = record.autonomous_system_organization.map(str::to_owned);
            }
        }
        facts.hosting = facts.asn.map(|asn| self.hosting.contains(asn));
        facts.relay = self.relays.lookup(ip, facts.asn);
        // Private Relay publishes the region each egress serves: that, not
        // where the egress server stands, is where the user is.
        if let Some(country) = facts.relay.and_then(|relay| relay.country) {
            facts.country = Some(country);
        }
        facts
    }
}

fn open_reader(path: &Path) -> Result<Reader<Vec<u8>>, GeoError> {
    Reader::open_readfile(path)
        .map_err(|e| GeoError::Open { path: path.display().to_string(), reason: e.to_string() })
}

/// The data files a verifier reads, by path. A path that is `None` is not
/// used; [`DataFiles::in_dir`] names the files `meridian update-data` and
/// the set-up write, where they exist.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DataFiles {
    /// Country database (.mmdb).
    pub country_db: Option<PathBuf>,
    /// ASN database (.mmdb).
    pub asn_db: Option<PathBuf>,
    /// Apple's iCloud Private Relay egress list (CSV).
    pub private_relay_list: Option<PathBuf>,
    /// The Tor Project's exit list.
    pub tor_exit_list: Option<PathBuf>,
}

/// The file names in a data directory.
pub const COUNTRY_DB_FILE: &str = "country.mmdb";
/// See [`COUNTRY_DB_FILE`].
pub const ASN_DB_FILE: &str = "asn.mmdb";
/// See [`COUNTRY_DB_FILE`].
pub const PRIVATE_RELAY_FILE: &str = "private-relay.csv";
/// See [`COUNTRY_DB_FILE`].
pub const TOR_EXITS_FILE: &str = "tor-exits.txt";

impl DataFiles {
    /// The files of `dir` that exist.
    pub fn in_dir(dir: &Path) -> Self {
        let existing = |name: &str| Some(dir.join(name)).filter(|p| p.exists());
        Self {
            country_db: existing(COUNTRY_DB_FILE),
            asn_db: existing(ASN_DB_FILE),
            private_relay_list: existing(PRIVATE_RELAY_FILE),
            tor_exit_list: existing(TOR_EXITS_FILE),
        }
    }

    /// Opens every named file.
    ///
    /// # Errors
    /// When a named file cannot be read or is not of its format: nothing is
    /// half-loaded, so a running server keeps what it had.
    pub fn open(&self) -> Result<IpIntel, GeoError> {
        let read = |path: &Path| {
            std::fs::read_to_string(path)
                .map_err(|e| GeoError::Open { path: path.display().to_string(), reason: e.to_string() })
        };
        let mut relays = RelayLists::none();
        if let Some(path) = &self.private_relay_list {
            relays = relays
                .with_private_relay_csv(&read(path)?)
                .map_err(|e| GeoError::Open { path: path.display().to_string(), reason: e.to_string() })?;
        }
        if let Some(path) = &self.tor_exit_list {
            relays = relays
                .with_tor_exits(&read(path)?)
                .map_err(|e| GeoError::Open { path: path.display().to_string(), reason: e.to_string() })?;
        }
        Ok(IpIntel::open(self.country_db.as_deref(), self.asn_db.as_deref())?.with_relays(relays))
    }
}

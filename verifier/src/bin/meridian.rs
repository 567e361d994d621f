//! `meridian`: run the verifier, make collector keys, look inside tokens.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use meridian_protocol::jwk::{Jwk, Jwks};
use meridian_verifier::config::{LogFormat, ServeConfig};
use meridian_verifier::deployment::Deployment;
use meridian_verifier::geo::{DataFiles, IpIntel};
use meridian_verifier::http::shutdown_signal;
use meridian_verifier::{CollectorKeys, UntrustedToken};

/// mimalloc: the server's hot path makes many short-lived small allocations
/// (the request, the claims, the response), which it serves faster than
/// glibc's malloc (docs/BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "meridian",
    version,
    about = "Meridian: does this browser's clock, time zone and language agree with where its traffic comes from?"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the verifier's HTTP API.
    Serve {
        /// Configuration file (TOML); every key can also be set by `MERIDIAN_<KEY>`.
        #[arg(long, env = "MERIDIAN_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Check a configuration and explain what `serve` would do with it.
    CheckConfig {
        /// Configuration file (TOML); every key can also be set by `MERIDIAN_<KEY>`.
        #[arg(long, env = "MERIDIAN_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Make a collector signing key and add its public half to a JWKS.
    Keygen {
        /// Folder for `collector.jwk` (private, mode 0600) and `jwks.json` (public).
        #[arg(long, default_value = ".meridian/keys")]
        out: PathBuf,
        /// Replace an existing private key (its public key stays in the JWKS).
        #[arg(long)]
        force: bool,
    },
    /// Show what a token says, and check its signature when given a JWKS.
    Inspect {
        /// The token (compact JWS).
        token: String,
        /// A JWKS file to check the signature against.
        #[arg(long)]
        jwks: Option<PathBuf>,
    },
    /// Show what the verifier knows about an IP.
    Lookup {
        /// An IPv4 or IPv6 address.
        ip: String,
        #[command(flatten)]
        data: DataArgs,
    },
    /// Fetch fresher relay lists (iCloud Private Relay, Tor exits) and,
    /// with --country-db, the country database; each is checked and
    /// replaced atomically, and a failed one keeps its previous file. A
    /// running `meridian serve` loads them on SIGHUP.
    UpdateData {
        /// The data folder (`private-relay.csv`, `tor-exits.txt`, `country.mmdb`).
        #[arg(long, default_value = ".meridian/data")]
        data_dir: PathBuf,
        /// Also refresh the country database.
        #[arg(long)]
        country_db: bool,
        /// Where Apple publishes the Private Relay egress ranges.
        #[arg(long, default_value = meridian_verifier::update::PRIVATE_RELAY_URL)]
        private_relay_url: String,
        /// Where the Tor Project publishes its exit list.
        #[arg(long, default_value = meridian_verifier::update::TOR_EXITS_URL)]
        tor_exits_url: String,
        /// Where the country database is published.
        #[arg(long, default_value = meridian_verifier::update::COUNTRY_DB_URL)]
        country_db_url: String,
    },
    /// Print the riskiest accounts and organisations, and verdicts by
    /// country and reason, from the history `serve` records.
    Report {
        /// Configuration file (TOML), as for `serve`: where the history is
        /// and its key.
        #[arg(long, env = "MERIDIAN_CONFIG")]
        config: Option<PathBuf>,
        /// Look this many days back. Default: the policy's history window.
        #[arg(long)]
        days: Option<u32>,
        /// List this many accounts and organisations.
        #[arg(long, default_value_t = 10)]
        top: usize,
        /// A file of your account and organisation ids, one per line, to
        /// show instead of their stored hashes.
        #[arg(long)]
        ids: Option<PathBuf>,
        /// JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// Sign this machine's time zone, locale and clock into a token bound
    /// to a fresh challenge, and print it (for scripts and command-line
    /// tools: send it as the `Meridian-Token` header).
    Collect {
        /// The service's challenge URL (`GET /v1/challenge`); the token is
        /// bound to its origin, as `native:<scheme>://<host>[:port]`.
        #[arg(long)]
        challenge_url: String,
        /// What the token is for (the service checks it), e.g. `login` or `api`.
        #[arg(long, default_value = "login")]
        action: String,
        /// Sign with this private JWK instead of the key embedded at build
        /// time (development and tests; `meridian keygen` makes one).
        #[arg(long)]
        key: Option<PathBuf>,
        /// Fetch a plain challenge instead of taking it through the echo
        /// beside the challenge URL (`…/v1/echo`); a service whose policy
        /// expects the echo holds such a token for review.
        #[arg(long)]
        no_echo: bool,
    },
    /// Build an ASN database (.mmdb, GeoLite2-ASN field names) from
    /// ip-location-db CSV files (`start,end,asn,organisation`).
    BuildAsnDb {
        /// Input CSV files (IPv4 and IPv6; `-num` files are not supported).
        #[arg(long = "csv", required = true)]
        csv: Vec<PathBuf>,
        /// Output .mmdb file.
        #[arg(long)]
        out: PathBuf,
    },
}

/// Where the IP databases are.
#[derive(clap::Args)]
struct DataArgs {
    /// Country database (.mmdb, flat `country_code` or GeoIP2 shape).
    /// Default: .meridian/data/country.mmdb when present.
    #[arg(long, env = "MERIDIAN_COUNTRY_DB")]
    country_db: Option<PathBuf>,
    /// ASN database (.mmdb, GeoLite2-ASN shape). Default:
    /// .meridian/data/asn.mmdb when present.
    #[arg(long, env = "MERIDIAN_ASN_DB")]
    asn_db: Option<PathBuf>,
    /// iCloud Private Relay egress list (Apple's CSV). Default:
    /// .meridian/data/private-relay.csv when present.
    #[arg(long, env = "MERIDIAN_PRIVATE_RELAY_LIST")]
    private_relay_list: Option<PathBuf>,
    /// Tor exit list. Default: .meridian/data/tor-exits.txt when present.
    #[arg(long, env = "MERIDIAN_TOR_EXIT_LIST")]
    tor_exit_list: Option<PathBuf>,
}

impl DataArgs {
    /// The files to read. A path that was given must work; a default
    /// path that is absent only means "unknown".
    fn files(&self) -> DataFiles {
        ServeConfig {
            country_db: self.country_db.clone(),
            asn_db: self.asn_db.clone(),
            private_relay_list: self.private_relay_list.clone(),
            tor_exit_list: self.tor_exit_list.clone(),
            ..ServeConfig::default()
        }
        .data_files()
    }

    /// Opens the databases and lists.
    fn open(&self) -> Result<IpIntel, String> {
        let files = self.files();
        if files.country_db.is_none() {
            tracing::warn!("no country database: countries are unknown and the country checks stay silent");
        }
        if files.asn_db.is_none() {
            tracing::warn!("no ASN database: hosting networks cannot be recognised");
        }
        files.open().map_err(|e| e.to_string())
    }
}

fn main() -> ExitCode {
    let command = Cli::parse().command;
    let log_format = match &command {
        Command::Serve { config } => {
            ServeConfig::load(config.as_deref(), std::env::vars()).map(|c| c.log_format).unwrap_or_default()
        }
        _ => LogFormat::Text,
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    // Colours only for a person at a terminal: log files and collectors get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none();
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match log_format {
        LogFormat::Json => logs.json().init(),
        LogFormat::Text => logs.init(),
    }
    let result = match command {
        Command::Serve { config } => serve(config.as_deref()),
        Command::CheckConfig { config } => check_config(config.as_deref()),
        Command::Keygen { out, force } => keygen(&out, force),
        Command::Inspect { token, jwks } => inspect(&token, jwks.as_deref()),
        Command::Lookup { ip, data } => lookup(&ip, &data),
        Command::BuildAsnDb { csv, out } => build_asn_db(&csv, &out),
        Command::Collect { challenge_url, action, key, no_echo } => {
            collect(&challenge_url, &action, key.as_deref(), !no_echo)
        }
        Command::Report { config, days, top, ids, json } => {
            report(config.as_deref(), days, top, ids.as_deref(), json)
        }
        Command::UpdateData { data_dir, country_db, private_relay_url, tor_exits_url, country_db_url } => {
            update_data(&data_dir, country_db, [private_relay_url, tor_exits_url, country_db_url])
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("meridian: {message}");
            ExitCode::FAILURE
        }
    }
}

/// `meridian update-data`.
fn update_data(dir: &Path, with_country_db: bool, urls: [String; 3]) -> Result<(), String> {
    use meridian_verifier::update;
    let [private_relay_url, tor_exits_url, country_db_url] = urls;
    let mut sources = update::default_sources(dir, with_country_db);
    for source in &mut sources {
        source.url = match source.format {
            update::Format::PrivateRelayCsv => private_relay_url.clone(),
            update::Format::TorExitList => tor_exits_url.clone(),
            update::Format::Mmdb => country_db_url.clone(),
        };
    }
    let runtime = runtime()?;
    let client = update::client()?;
    let mut failed = Vec::new();
    for source in &sources {
        eprintln!("{}: fetching {}", source.name, source.url);
        let mut progress = |line: &str| eprintln!("{line}");
        match runtime.block_on(update::update(&client, source, &mut progress)) {
            Ok(bytes) => eprintln!(
                "{}: {} bytes checked and written to {}",
                source.name,
                bytes,
                source.target.display()
            ),
            Err(e) => {
                eprintln!("{e}");
                failed.push(source.name);
            }
        }
    }
    if failed.is_empty() {
        eprintln!("done; a running `meridian serve` loads the new files on SIGHUP (kill -HUP <pid>)");
        Ok(())
    } else {
        Err(format!("not updated: {} (their previous files are kept)", failed.join(", ")))
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Runtime::new().map_err(|e| format!("cannot start the runtime: {e}"))
}

fn check_config(file: Option<&Path>) -> Result<(), String> {
    let config = ServeConfig::load(file, std::env::vars()).map_err(|e| e.to_string())?;
    let runtime = runtime()?;
    let _entered = runtime.enter();
    let deployment = runtime.block_on(Deployment::builder(config).build()).map_err(|e| e.to_string())?;
    println!("configuration is valid");
    println!("listen: {}", deployment.listen());
    for note in deployment.notes() {
        println!("{note}");
    }
    let store = deployment.state().verifier().store();
    match runtime.block_on(store.check()) {
        Ok(()) => println!("replay store reachable"),
        Err(e) => println!("warning: replay store not reachable now ({e}); /readyz will say so"),
    }
    Ok(())
}

fn serve(file: Option<&Path>) -> Result<(), String> {
    let config = ServeConfig::load(file, std::env::vars()).map_err(|e| e.to_string())?;
    let runtime = runtime()?;
    let deployment = {
        let _entered = runtime.enter();
        runtime.block_on(Deployment::builder(config).build()).map_err(|e| e.to_string())?
    };
    runtime.block_on(deployment.run(shutdown_signal()))
}

/// `meridian report`.
fn report(
    file: Option<&Path>,
    days: Option<u32>,
    top: usize,
    ids: Option<&Path>,
    json: bool,
) -> Result<(), String> {
    use meridian_verifier::history::report::OverviewBuilder;
    let config = ServeConfig::load(file, std::env::vars()).map_err(|e| e.to_string())?;
    let runtime = runtime()?;
    let _entered = runtime.enter();
    // Read only: a running `meridian serve` keeps its journal to itself.
    let deployment =
        runtime.block_on(Deployment::builder(config).history_reader().build()).map_err(|e| e.to_string())?;
    let verifier = deployment.state().verifier();
    let history = verifier.history().ok_or("the history is off in this configuration (history = false)")?;
    let days = days.unwrap_or(verifier.policy().history.window_days);
    let since =
        jiff::Timestamp::now().as_millisecond().saturating_sub(i64::from(days).saturating_mul(86_400_000));
    let mut builder = OverviewBuilder::default();
    let (mut after, mut read) = (0i64, 0u64);
    loop {
        let page = runtime.block_on(history.store().scan(after, since, 10_000)).map_err(|e| e.to_string())?;
        let Some((last, _)) = page.last() else { break };
        after = *last;
        for (_, event) in &page {
            builder.add(event);
        }
        read += page.len() as u64;
        if read.is_multiple_of(100_000) {
            eprintln!("  {read} events read…");
        }
    }
    let overview = builder.finish(top);
    // Your ids, hashed with the history's key, to name what the report lists.
    let mut names = std::collections::HashMap::new();
    if let Some(path) = ids {
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        for id in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            for subject in [history.key().account(id), history.key().organization(id)].into_iter().flatten() {
                names.insert(subject.as_str().to_owned(), id.to_owned());
            }
        }
    }
    let name = |subject: &meridian_verifier::history::Subject| {
        names
            .get(subject.as_str())
            .cloned()
            .unwrap_or_else(|| format!("#{}", subject.as_str().chars().take(12).collect::<String>()))
    };
    if json {
        let mut value = serde_json::to_value(&overview).map_err(|e| e.to_string())?;
        for (list, field, named) in [
            ("accounts", "subject", "id"),
            ("organizations", "subject", "id"),
            ("relaying_networks", "organization", "organization_id"),
        ] {
            if let Some(items) = value[list].as_array_mut() {
                for item in items {
                    if let Some(id) = item[field].as_str().and_then(|s| names.get(s)) {
                        item[named] = serde_json::Value::String(id.clone());
                    }
                }
            }
        }
        println!("{}", serde_json::to_string_pretty(&value).map_err(|e| e.to_string())?);
        return Ok(());
    }
    println!("{} verifications in the last {days} days", overview.events);
    for (title, list) in [("accounts", &overview.accounts), ("organisations", &overview.organizations)] {
        println!("\nriskiest {title}:");
        println!("  {:<24} {:<6} {:>7} {:>10} {:>5}  why", "id", "risk", "logins", "restricted", "held");
        for ranked in list.iter() {
            let risk = ranked.risk.as_str();
            println!(
                "  {:<24} {:<6} {:>7} {:>10} {:>5}  {}",
                printable(&name(&ranked.subject)),
                risk,
                ranked.logins,
                ranked.restricted_device_logins,
                ranked.held,
                ranked.risk_reasons.first().map_or("", String::as_str)
            );
        }
    }
    println!("\nnetworks that relayed sign-ins (the hidden leg, or the browser's UDP from elsewhere):");
    println!(
        "  {:<20} {:<7} {:>8} {:>7} {:>8} {:>4} {:>10}  what it looks like",
        "network", "country", "AS", "relayed", "accounts", "orgs", "restricted"
    );
    for network in &overview.relaying_networks {
        println!(
            "  {:<20} {:<7} {:>8} {:>7} {:>8} {:>4} {:>10}  {}",
            network.network,
            network.country,
            network.asn.map_or_else(|| "-".to_owned(), |asn| asn.to_string()),
            network.relayed,
            network.accounts,
            network.organizations,
            network.restricted_device,
            network.looks_like.sentence()
        );
        if let Some(organization) = &network.organization {
            println!("  {:<20} organisation: {}", "", printable(&name(organization)));
        }
    }
    println!("\nverdicts by country:");
    for (country, verdicts) in &overview.verdicts_by_country {
        let counts: Vec<String> = verdicts.iter().map(|(verdict, n)| format!("{verdict} {n}")).collect();
        println!("  {country}  {}", counts.join(", "));
    }
    println!("\nreasons:");
    for (reason, verdicts) in &overview.reasons {
        let counts: Vec<String> = verdicts.iter().map(|(verdict, n)| format!("{verdict} {n}")).collect();
        println!("  {reason:<28} {}", counts.join(", "));
    }
    Ok(())
}

fn keygen(out: &Path, force: bool) -> Result<(), String> {
    let private_path = out.join("collector.jwk");
    let jwks_path = out.join("jwks.json");
    if private_path.exists() && !force {
        return Err(format!("{} exists; pass --force to replace it", private_path.display()));
    }
    std::fs::create_dir_all(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let mut seed = [0u8; 32];
    meridian_verifier::random_bytes(&mut seed).map_err(|e| format!("no secure randomness: {e}"))?;
    let key = ed25519_dalek::SigningKey::from_bytes(&seed);
    let private = Jwk::private(&key);
    let mut jwks = match std::fs::read_to_string(&jwks_path) {
        Ok(text) => serde_json::from_str::<Jwks>(&text)
            .map_err(|e| format!("{} is not a JWKS: {e}", jwks_path.display()))?,
        Err(_) => Jwks::default(),
    };
    jwks.keys.push(private.to_public());
    meridian_verifier::fs::write_private(
        &private_path,
        &serde_json::to_string_pretty(&private).map_err(|e| e.to_string())?,
    )?;
    std::fs::write(&jwks_path, serde_json::to_string_pretty(&jwks).map_err(|e| e.to_string())? + "\n")
        .map_err(|e| format!("cannot write {}: {e}", jwks_path.display()))?;
    println!("kid {}", private.kid.as_deref().unwrap_or_default());
    println!(
        "private key: {} (build the collector with MERIDIAN_COLLECTOR_KEY pointing here)",
        private_path.display()
    );
    println!("public keys: {} ({} key(s); give it to the verifier)", jwks_path.display(), jwks.keys.len());
    Ok(())
}

fn inspect(token: &str, jwks: Option<&Path>) -> Result<(), String> {
    let parsed = UntrustedToken::parse(token).map_err(|e| format!("{} ({})", e, e.code()))?;
    println!("kid: {}", printable(parsed.kid().unwrap_or("(none)")));
    let signature = match jwks {
        None => "not checked (pass --jwks)".to_owned(),
        Some(path) => {
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let keys =
                CollectorKeys::from_jwks_json(&text).map_err(|e| format!("{}: {e}", path.display()))?;
            let now = jiff::Timestamp::now().as_millisecond();
            match parsed.kid().and_then(|kid| keys.get(kid, now)) {
                None => "unknown key".to_owned(),
                Some(key) => {
                    match meridian_protocol::jws::CompactJws::parse(token.trim()).map(|j| j.verify(key)) {
                        Ok(Ok(())) => "valid".to_owned(),
                        _ => "INVALID".to_owned(),
                    }
                }
            }
        }
    };
    println!("signature: {signature}");
    let claims = parsed.unverified_claims().map_err(|e| format!("{e} ({})", e.code()))?;
    println!("claims (as stated by the browser; freshness and single use not checked):");
    println!("{}", printable(&serde_json::to_string_pretty(&claims).map_err(|e| e.to_string())?));
    Ok(())
}

/// `meridian collect`.
fn collect(challenge_url: &str, action: &str, key: Option<&Path>, echo: bool) -> Result<(), String> {
    use meridian_native::{ChallengeSource, collect, collect_with_key};
    let source = ChallengeSource::url(challenge_url);
    let source = if echo { source } else { source.without_echo() };
    let runtime = runtime()?;
    let token = match key {
        None => runtime.block_on(collect(&source, action)),
        Some(path) => {
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let jwk: Jwk =
                serde_json::from_str(&text).map_err(|e| format!("{} is not a JWK: {e}", path.display()))?;
            let signing = jwk.signing_key().map_err(|e| format!("{}: {e}", path.display()))?;
            let kid = meridian_protocol::jwk::thumbprint(&signing.verifying_key());
            runtime.block_on(collect_with_key(&source, action, &signing, &kid))
        }
    }
    .map_err(|e| e.to_string())?;
    println!("{token}");
    Ok(())
}

/// `text` with every control character but the newline written as a
/// `\u{…}` escape: a token's claims are the browser's words, and a terminal
/// must not run the escape sequences a forger put in them (JSON escapes only
/// the C0 controls; DEL and the C1 controls such as U+009B CSI pass through).
fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() && c != '\n' {
            out.push_str(&format!("\\u{{{:04x}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

fn lookup(ip: &str, data: &DataArgs) -> Result<(), String> {
    let ip: IpAddr = ip.trim().parse().map_err(|_| format!("{ip:?} is not an IPv4 or IPv6 address"))?;
    let ip = meridian_verifier::net::canonical_ip(ip);
    let intel = data.open()?;
    let facts = intel.lookup(ip);
    println!("ip:       {ip}");
    match facts.country {
        Some(country) => {
            println!("country:  {country}");
            let zones = meridian_verifier::tables::country_zones(country.as_str());
            println!(
                "zones:    {}",
                if zones.is_empty() { "(none known)".to_owned() } else { zones.join(" ") }
            );
            let languages: Vec<String> = meridian_verifier::tables::country_languages(country.as_str())
                .iter()
                .map(|l| {
                    format!(
                        "{} {:.0}%{}",
                        l.code,
                        l.population_percent,
                        if l.official { " (official)" } else { "" }
                    )
                })
                .collect();
            println!("languages: {}", languages.join(", "));
        }
        None if intel.has_country_db() => println!("country:  unknown (not in the country database)"),
        None => println!("country:  unknown (no country database)"),
    }
    match (facts.asn, intel.has_asn_db()) {
        (Some(asn), _) => println!("asn:      AS{asn} {}", facts.org.as_deref().unwrap_or("")),
        (None, true) => println!("asn:      unknown (not in the ASN database)"),
        (None, false) => println!("asn:      unknown (no ASN database)"),
    }
    match facts.hosting {
        Some(true) => {
            let kind = facts.asn.and_then(|a| intel.hosting().get(a)).map_or("", |(_, kind)| kind);
            println!("hosting:  yes ({kind})");
        }
        Some(false) => println!("hosting:  no"),
        None => println!("hosting:  unknown"),
    }
    if let Some(relay) = facts.relay {
        println!("relay:    {}", relay.kind.label());
    }
    Ok(())
}

fn build_asn_db(inputs: &[PathBuf], out: &Path) -> Result<(), String> {
    use std::io::BufRead;
    let mut writer = mmdb_writer::Writer::builder("Meridian-ASN")
        // The CSVs carry real 6to4/Teredo announcements; Meridian canonicalizes
        // IPv4-mapped addresses itself, so no alias subtrees are needed.
        .ipv4_aliasing(mmdb_writer::Ipv4Aliasing::Disabled)
        .description(&[(
            "en",
            "IP to ASN, built by meridian build-asn-db from ip-location-db CSV (CC BY 4.0)",
        )])
        .build();
    let mut rows = 0usize;
    for input in inputs {
        let file = std::fs::File::open(input).map_err(|e| format!("cannot read {}: {e}", input.display()))?;
        for (index, line) in std::io::BufReader::new(file).lines().enumerate() {
            let line = line.map_err(|e| format!("{}: {e}", input.display()))?;
            let bad = || format!("{}:{}: expected start,end,asn,organisation", input.display(), index + 1);
            let mut fields = line.splitn(4, ',');
            let (Some(start), Some(end), Some(asn)) = (fields.next(), fields.next(), fields.next()) else {
                return Err(bad());
            };
            let start: IpAddr = start.parse().map_err(|_| bad())?;
            let end: IpAddr = end.parse().map_err(|_| bad())?;
            let asn: u32 = asn.parse().map_err(|_| bad())?;
            let org = fields.next().unwrap_or("").trim().trim_matches('"').replace("\"\"", "\"");
            let value = mmdb_writer::Value::map([
                ("autonomous_system_number", mmdb_writer::Value::from(asn)),
                ("autonomous_system_organization", mmdb_writer::Value::from(org)),
            ]);
            writer
                .insert_range(start, end, &value)
                .map_err(|e| format!("{}:{}: {e}", input.display(), index + 1))?;
            rows += 1;
            if rows.is_multiple_of(200_000) {
                eprintln!("  {rows} ranges…");
            }
        }
    }
    let file = std::fs::File::create(out).map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    writer
        .write_to(std::io::BufWriter::new(file))
        .map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    println!("{rows} ranges written to {}", out.display());
    Ok(())
}

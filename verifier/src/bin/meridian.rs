//! `meridian`: run the verifier, make collector keys, look inside tokens.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use meridian_protocol::jwk::{Jwk, Jwks};
use meridian_verifier::clock::{Clock, SystemClock};
use meridian_verifier::http::{ApiState, VerifySecret, router};
use meridian_verifier::replay::MemoryReplayStore;
use meridian_verifier::{
    ChallengeKey, ChallengeKeys, CollectorKeys, Keys, UntrustedToken, Verifier, VerifyRules,
};

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
    Serve(ServeArgs),
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
    },
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "MERIDIAN_LISTEN", default_value = "127.0.0.1:8686")]
    listen: SocketAddr,
    /// JWKS file with the collector public keys.
    #[arg(long, env = "MERIDIAN_JWKS", default_value = ".meridian/keys/jwks.json")]
    jwks: PathBuf,
    /// Bearer secrets for /v1/verify, comma-separated (rotation: old,new).
    #[arg(long, env = "MERIDIAN_VERIFY_SECRET", hide_env_values = true)]
    verify_secret: String,
    /// Challenge MAC keys as base64url of 32 bytes, comma-separated; the
    /// first issues. Instances that share them accept each other's
    /// challenges. Random per process when unset.
    #[arg(long, env = "MERIDIAN_CHALLENGE_KEY", hide_env_values = true)]
    challenge_key: Option<String>,
    /// Challenge (and token) lifetime in seconds.
    #[arg(long, env = "MERIDIAN_CHALLENGE_LIFETIME_S", default_value_t = meridian_verifier::challenge::DEFAULT_LIFETIME_S)]
    challenge_lifetime_s: u32,
    /// Page origins tokens may come from, comma-separated (empty: any).
    #[arg(long, env = "MERIDIAN_ALLOWED_ORIGINS", value_delimiter = ',')]
    allowed_origins: Vec<String>,
    /// Actions tokens may be collected for, comma-separated (empty: any).
    #[arg(long, env = "MERIDIAN_ALLOWED_ACTIONS", value_delimiter = ',')]
    allowed_actions: Vec<String>,
    /// Live nonces the in-memory replay store may hold.
    #[arg(long, env = "MERIDIAN_REPLAY_CAPACITY", default_value_t = 1_000_000)]
    replay_capacity: usize,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match Cli::parse().command {
        Command::Serve(args) => serve(args),
        Command::Keygen { out, force } => keygen(&out, force),
        Command::Inspect { token, jwks } => inspect(&token, jwks.as_deref()),
        Command::Lookup { ip } => lookup(&ip),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("meridian: {message}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: ServeArgs) -> Result<(), String> {
    let jwks_text = std::fs::read_to_string(&args.jwks)
        .map_err(|e| format!("cannot read the collector JWKS {}: {e}", args.jwks.display()))?;
    let collector =
        CollectorKeys::from_jwks_json(&jwks_text).map_err(|e| format!("{}: {e}", args.jwks.display()))?;
    let challenge = challenge_keys(args.challenge_key.as_deref(), args.challenge_lifetime_s)?;
    let secrets = args
        .verify_secret
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(VerifySecret::new)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("MERIDIAN_VERIFY_SECRET: {e}"))?;
    if secrets.is_empty() {
        return Err("MERIDIAN_VERIFY_SECRET: at least one verify secret is required".into());
    }
    let rules = VerifyRules {
        allowed_origins: args.allowed_origins.into_iter().filter(|s| !s.is_empty()).collect(),
        allowed_actions: args.allowed_actions.into_iter().filter(|s| !s.is_empty()).collect(),
        ..VerifyRules::default()
    };
    if rules.allowed_origins.is_empty() {
        tracing::warn!(
            "no allowed origins configured: tokens from any origin are accepted unless a request names expected_origin"
        );
    }
    let verifier = Verifier::new(
        Keys { collector, challenge },
        rules,
        Arc::new(MemoryReplayStore::new(args.replay_capacity)),
    );
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let app = router(ApiState::new(verifier, secrets, clock));
    let runtime = tokio::runtime::Runtime::new().map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
        tracing::info!(address = %args.listen, "meridian verifier listening");
        axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(shutdown_signal())
            .await
            .map_err(|e| format!("server error: {e}"))
    })
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}

fn challenge_keys(text: Option<&str>, lifetime_s: u32) -> Result<ChallengeKeys, String> {
    let keys = match text.filter(|t| !t.trim().is_empty()) {
        Some(text) => text
            .split(',')
            .enumerate()
            .map(|(i, key)| {
                let id = u8::try_from(i + 1).map_err(|_| "too many challenge keys".to_owned())?;
                ChallengeKey::from_base64url(id, key).map_err(|_| {
                    format!("MERIDIAN_CHALLENGE_KEY: key {} is not 32 bytes of base64url", i + 1)
                })
            })
            .collect::<Result<Vec<_>, _>>()?,
        None => {
            tracing::warn!(
                "MERIDIAN_CHALLENGE_KEY unset: using a random key; other instances will not accept this one's challenges"
            );
            vec![ChallengeKey::random(1).map_err(|e| format!("no secure randomness: {e}"))?]
        }
    };
    ChallengeKeys::new(keys, lifetime_s)
        .ok_or_else(|| "challenge lifetime must be at least 1 second".to_owned())
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
    write_private(&private_path, &serde_json::to_string_pretty(&private).map_err(|e| e.to_string())?)?;
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

fn write_private(path: &Path, text: &str) -> Result<(), String> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.write_all(b"\n"))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn inspect(token: &str, jwks: Option<&Path>) -> Result<(), String> {
    let parsed = UntrustedToken::parse(token).map_err(|e| format!("{} ({})", e, e.code()))?;
    println!("kid: {}", parsed.kid().unwrap_or("(none)"));
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
    println!("{}", serde_json::to_string_pretty(&claims).map_err(|e| e.to_string())?);
    Ok(())
}

fn lookup(ip: &str) -> Result<(), String> {
    let ip: IpAddr = ip.trim().parse().map_err(|_| format!("{ip:?} is not an IPv4 or IPv6 address"))?;
    let ip = meridian_verifier::net::canonical_ip(ip);
    println!("ip: {ip}");
    println!("country: unknown (no IP database configured)");
    Ok(())
}

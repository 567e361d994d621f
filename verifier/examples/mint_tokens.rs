//! Test-only load-test fixture: writes a verifier configuration for the fixed
//! test deployment (`Minter::new(21)`) and N unique tokens issued now, one per
//! line, for `remote_ip` 127.0.0.1. Their challenges live an hour (not the
//! default two minutes), so that a load test of several rounds verifies
//! tokens, not expiries. Needs the `testkit` feature, which production
//! builds never enable.
//!
//!     cargo run --release -p meridian-verifier --features testkit --example mint_tokens -- DIR N [FILE]

use std::io::Write;

/// How long the tokens' challenges live, seconds.
const LIFETIME_S: u32 = 3600;

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = std::path::PathBuf::from(args.next().unwrap_or_else(|| "target/load".into()));
    let count: u64 = args.next().and_then(|n| n.parse().ok()).unwrap_or(100_000);
    let file = args.next().unwrap_or_else(|| "tokens.txt".into());
    std::fs::create_dir_all(&dir)?;
    let seed = 21;
    let minter = meridian_verifier::testkit::Minter::with_challenge_lifetime(seed, LIFETIME_S);
    std::fs::write(dir.join("jwks.json"), minter.jwks_json())?;
    std::fs::write(dir.join("challenge-key"), minter.challenge_key_config(seed) + "\n")?;
    let now = jiff::Timestamp::now().as_millisecond();
    let ip = std::net::IpAddr::from([127, 0, 0, 1]);
    let mut out = std::io::BufWriter::new(std::fs::File::create(dir.join(&file))?);
    // Distinct files get distinct nonces.
    let salt = file.bytes().fold(0u8, |a, b| a.wrapping_mul(31).wrapping_add(b));
    for n in 0..count {
        let mut nonce = [salt; 16];
        nonce[..8].copy_from_slice(&n.to_le_bytes());
        writeln!(out, "{}", minter.token(ip, now, nonce))?;
    }
    out.flush()?;
    eprintln!("{count} tokens in {}", dir.join(&file).display());
    Ok(())
}

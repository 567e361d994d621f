//! The `meridian` command line: key files stay private, and a hostile
//! token cannot drive the terminal `inspect` prints to.
#![allow(clippy::unwrap_used, clippy::panic, reason = "tests fail by panicking")]

use std::path::PathBuf;
use std::process::Command;

use meridian_verifier::testkit::Minter;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("meridian-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn meridian(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_meridian")).args(args).output().unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[cfg(unix)]
#[test]
fn keygen_force_leaves_the_private_key_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = scratch("keygen");
    let out = dir.to_str().unwrap();
    let (ok, _, stderr) = meridian(&["keygen", "--out", out]);
    assert!(ok, "{stderr}");
    let key = dir.join("collector.jwk");
    let mode = |path: &PathBuf| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&key), 0o600);
    // Someone loosened it; replacing the key makes it private again.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (ok, _, stderr) = meridian(&["keygen", "--out", out]);
    assert!(!ok && stderr.contains("--force"), "{stderr}");
    let (ok, _, stderr) = meridian(&["keygen", "--out", out, "--force"]);
    assert!(ok, "{stderr}");
    assert_eq!(mode(&key), 0o600);
    let jwks: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("jwks.json")).unwrap()).unwrap();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2, "the old public key stays for rotation");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn inspect_escapes_control_characters_from_the_token() {
    let minter = Minter::new(5);
    let mut claims = minter.claims("192.0.2.1".parse().unwrap(), 1_800_000_000_000, [5; 16]);
    // Terminal escape sequences a forger may put into any claim: ESC (C0),
    // CSI (C1) and DEL.
    claims.time_zone.zone = "Asia/Shanghai\u{1b}]0;pwned\u{7}\u{9b}2J\u{7f}".into();
    let token = minter.sign(&claims);
    let (ok, stdout, stderr) = meridian(&["inspect", &token]);
    assert!(ok, "{stderr}");
    assert!(!stdout.chars().any(|c| c.is_control() && c != '\n'), "{stdout:?}");
    assert!(stdout.contains("Asia/Shanghai"), "{stdout}");
    assert!(stdout.contains("u{009b}") || stdout.contains("\\u009b"), "{stdout}");
}

#[test]
fn report_names_the_riskiest_accounts_and_organisations() {
    use meridian_verifier::geo::Country;
    use meridian_verifier::history::{Event, HistoryStore, SqliteHistory, SubjectKey, network_of};
    use meridian_verifier::verdict::{ReasonCode, Verdict};
    let dir = scratch("report");
    let key_text = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";
    let key = SubjectKey::from_base64url(key_text).unwrap();
    let history = SqliteHistory::open(&dir.join("history.sqlite")).unwrap();
    let now = jiff::Timestamp::now().as_millisecond();
    let event = |account: &str, organization: &str, shanghai: bool, n: i64| Event {
        at_ms: now - n * 60_000,
        account: Some(key.account(account).unwrap()),
        organization: Some(key.organization(organization).unwrap()),
        network: network_of("192.0.2.10".parse().unwrap()),
        country: Country::parse("SG"),
        asn: None,
        zone: Some(if shanghai { "Asia/Shanghai" } else { "Asia/Singapore" }.into()),
        locale: Some(if shanghai { "zh-CN" } else { "en-SG" }.into()),
        restricted_device: shanghai,
        verdict: if shanghai { Verdict::Deny } else { Verdict::Allow },
        score: if shanghai { 100 } else { 0 },
        reasons: if shanghai { vec![ReasonCode::RestrictedRegionClaim] } else { Vec::new() },
        error: None,
    };
    let mut events = Vec::new();
    for n in 0..4 {
        events.push(event("li", "Example Corp", true, n));
        events.push(event("tan", "Other Corp", false, n));
    }
    // Three staff of one company through its gateway, each relayed.
    for (n, account) in ["ken", "yui", "aoi"].into_iter().enumerate() {
        let mut relayed = event(account, "Gateway Corp", false, 10 + i64::try_from(n).unwrap());
        relayed.network = network_of("203.0.113.10".parse().unwrap());
        relayed.asn = Some(64_501);
        relayed.zone = Some("Asia/Tokyo".into());
        relayed.verdict = Verdict::Review;
        relayed.reasons = vec![ReasonCode::RelayLatency];
        events.push(relayed);
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(history.record(events, None)).unwrap();
    let minter = Minter::new(3);
    std::fs::write(dir.join("jwks.json"), minter.jwks_json()).unwrap();
    std::fs::write(dir.join("ids.txt"), "li\ntan\nExample Corp\nGateway Corp\n").unwrap();
    let config = format!(
        "jwks = {:?}\nverify_secret = [\"report-test-secret-0123456789\"]\ndata_dir = {:?}\nhistory_key = {key_text:?}\n",
        dir.join("jwks.json"),
        dir
    );
    std::fs::write(dir.join("meridian.toml"), config).unwrap();
    let config = dir.join("meridian.toml");
    let ids = dir.join("ids.txt");
    let (ok, stdout, stderr) =
        meridian(&["report", "--config", config.to_str().unwrap(), "--ids", ids.to_str().unwrap()]);
    assert!(ok, "{stdout}\n{stderr}");
    assert!(stdout.contains("11 verifications"), "{stdout}");
    let li = stdout.lines().find(|l| l.trim_start().starts_with("li ")).unwrap_or_else(|| panic!("{stdout}"));
    assert!(li.contains("high"), "{li}");
    let corp = stdout.lines().find(|l| l.contains("Example Corp")).unwrap_or_else(|| panic!("{stdout}"));
    assert!(corp.contains("high"), "{corp}");
    assert!(stdout.contains("restricted_region_claim"), "{stdout}");
    assert!(!stdout.contains(key.account("li").unwrap().as_str()), "named ids replace hashes");
    let gateway = stdout.lines().find(|l| l.contains("203.0.113.0/24")).unwrap_or_else(|| panic!("{stdout}"));
    assert!(gateway.contains("64501") && gateway.contains("one organisation's accounts only"), "{gateway}");
    assert!(stdout.contains("organisation: Gateway Corp"), "{stdout}");
    assert!(
        !stdout.contains("192.0.2.0/24"),
        "a network nothing was relayed through is not listed: {stdout}"
    );

    let (ok, stdout, _) =
        meridian(&["report", "--config", config.to_str().unwrap(), "--json", "--ids", ids.to_str().unwrap()]);
    assert!(ok);
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(json["events"], 11);
    assert_eq!(json["relaying_networks"][0]["network"], "203.0.113.0/24");
    assert_eq!(json["relaying_networks"][0]["accounts"], 3);
    assert_eq!(json["relaying_networks"][0]["looks_like"], "one_organization");
    assert_eq!(json["relaying_networks"][0]["organization_id"], "Gateway Corp");
    assert_eq!(json["accounts"][0]["risk"], "high");
    assert_eq!(json["accounts"][0]["subject"], key.account("li").unwrap().as_str());
    std::fs::remove_dir_all(&dir).unwrap();
}

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

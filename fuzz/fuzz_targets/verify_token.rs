//! Any bytes, as a token: parsing and verification never panic, and nothing
//! but a token signed by the collector key verifies. The seed corpus holds a
//! valid token, so libFuzzer's mutations explore edits of real tokens.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meridian_verifier::testkit::Minter;
use meridian_verifier::{UntrustedToken, VerifyRules};

fuzz_target!(|data: &[u8]| {
    let minter = Minter::new(1);
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(token) = UntrustedToken::parse(text) else { return };
    let now = jiff::Timestamp::from_millisecond(1_800_000_000_100).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    if let Ok(verified) = token.verify(&minter.keys, &VerifyRules::default(), now) {
        // Only an unedited token from the seed corpus may verify: re-signing
        // its claims must give exactly the input back.
        assert_eq!(minter.sign(verified.claims()), text.trim(), "an edited token verified");
    }
});

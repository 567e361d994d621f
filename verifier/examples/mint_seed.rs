//! Prints one valid token of the fuzz target's test deployment (`Minter::new(1)`),
//! issued at the instant the fuzz target verifies at, as a seed for the corpus.
//! Test-only: needs the `testkit` feature.

fn main() {
    let minter = meridian_verifier::testkit::Minter::new(1);
    let ip = std::net::IpAddr::from([192, 0, 2, 1]);
    print!("{}", minter.token(ip, 1_800_000_000_000, [3; 16]));
}

//! The second origin: where the browser's UDP comes from.
//!
//! A browser behind an HTTP or SOCKS proxy (a system proxy, Clash or
//! sing-box in proxy mode) still sends WebRTC's UDP directly. The collector
//! asks the verifier's UDP port for a TURN allocation with the challenge as
//! its user name; the verifier answers the first request with `401` (a realm
//! and a nonce, as TURN's long-term credentials require), reads the user
//! name from the second, notes the datagram's source address against the
//! challenge's nonce and refuses the allocation (`403`): no relay is ever
//! made. The browser reports the refusal as an `icecandidateerror`, which
//! tells the collector the verifier has seen it.
//!
//! The source address is the one the datagram came from, so a client can
//! withhold it (no WebRTC, `disable_non_proxied_udp`, a blocked port) but
//! not write another one in. The user name must be a challenge this
//! verifier issued (its MAC is checked), so nobody can attach addresses to
//! challenges they never saw.
//!
//! What was seen is kept in memory for the challenge's lifetime
//! ([`UdpOrigins`]): the UDP probe and the verification must reach the same
//! instance (docs/SECURITY.md, "The second origin").

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};

/// Addresses kept per challenge: a browser may send from several host
/// candidates (IPv4 and IPv6, several interfaces).
const PER_CHALLENGE: usize = 4;

/// UDP sources seen per challenge nonce, until the challenge expires.
#[derive(Debug)]
pub struct UdpOrigins {
    seen: Mutex<HashMap<[u8; 16], Seen>>,
    capacity: usize,
}

#[derive(Debug, Clone)]
struct Seen {
    ips: Vec<IpAddr>,
    expires_at_ms: i64,
}

impl UdpOrigins {
    /// A store for at most `capacity` challenges at once.
    pub fn new(capacity: usize) -> Self {
        Self { seen: Mutex::new(HashMap::new()), capacity: capacity.max(1) }
    }

    /// Notes that `ip` sent the probe of challenge `nonce`, which expires at
    /// `expires_at_ms`. When full of live challenges, new ones are not
    /// noted (the answer then simply has no UDP origin).
    pub fn record(&self, nonce: [u8; 16], ip: IpAddr, expires_at_ms: i64, now_ms: i64) {
        let ip = crate::net::canonical_ip(ip);
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if seen.len() >= self.capacity && !seen.contains_key(&nonce) {
            seen.retain(|_, s| s.expires_at_ms > now_ms);
            if seen.len() >= self.capacity {
                return;
            }
        }
        let entry = seen.entry(nonce).or_insert_with(|| Seen { ips: Vec::new(), expires_at_ms });
        if !entry.ips.contains(&ip) && entry.ips.len() < PER_CHALLENGE {
            entry.ips.push(ip);
        }
    }

    /// The addresses that sent challenge `nonce`'s probe, first first.
    pub fn lookup(&self, nonce: &[u8; 16], now_ms: i64) -> Vec<IpAddr> {
        let seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        seen.get(nonce).filter(|s| s.expires_at_ms > now_ms).map(|s| s.ips.clone()).unwrap_or_default()
    }

    /// Forgets expired challenges.
    pub fn purge(&self, now_ms: i64) {
        self.seen.lock().unwrap_or_else(PoisonError::into_inner).retain(|_, s| s.expires_at_ms > now_ms);
    }
}

#[cfg(feature = "http")]
pub use responder::serve;

#[cfg(feature = "http")]
mod responder {
    use std::sync::Arc;

    use bytecodec::{DecodeExt as _, EncodeExt as _};
    use stun_codec::rfc5389::attributes::{
        ErrorCode, Fingerprint, MessageIntegrity, Nonce, Realm, Software, Username, XorMappedAddress,
    };
    use stun_codec::rfc5766::attributes::{
        DontFragment, EvenPort, Lifetime, RequestedTransport, ReservationToken,
    };
    use stun_codec::rfc5766::methods::ALLOCATE;
    use stun_codec::{Message, MessageClass, MessageDecoder, MessageEncoder, define_attribute_enums};
    use tokio::net::UdpSocket;

    use super::UdpOrigins;
    use crate::challenge::ChallengeKeys;
    use crate::clock::Clock;

    define_attribute_enums!(
        Attribute,
        AttributeDecoder,
        AttributeEncoder,
        [
            Username,
            MessageIntegrity,
            ErrorCode,
            Realm,
            Nonce,
            XorMappedAddress,
            Software,
            Fingerprint,
            RequestedTransport,
            Lifetime,
            DontFragment,
            EvenPort,
            ReservationToken
        ]
    );

    /// The realm of the long-term credentials; the password is public
    /// (`meridian`): the credentials only carry the challenge.
    const REALM: &str = "meridian";
    const PASSWORD: &str = "meridian";

    /// Answers TURN allocations on `socket` until the task is dropped,
    /// noting each challenge's UDP source in `origins`.
    pub async fn serve(
        socket: UdpSocket,
        keys: ChallengeKeys,
        origins: Arc<UdpOrigins>,
        clock: Arc<dyn Clock>,
    ) {
        let mut nonce = [0u8; 16];
        if crate::random_bytes(&mut nonce).is_err() {
            tracing::error!("udp: no randomness for the TURN nonce; the UDP origin is off");
            return;
        }
        let nonce = meridian_protocol::base64url_encode(&nonce);
        let mut buffer = [0u8; 1500];
        loop {
            let (length, peer) = match socket.recv_from(&mut buffer).await {
                Ok(received) => received,
                Err(error) => {
                    // Never a busy loop on an error that persists.
                    tracing::debug!(%error, "udp: receive failed");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
            };
            let now_ms = clock.now().as_millisecond();
            let Some(reply) = answer(&buffer[..length], peer.ip(), &keys, &origins, &nonce, now_ms) else {
                continue;
            };
            if let Err(error) = socket.send_to(&reply, peer).await {
                tracing::debug!(%error, %peer, "udp: reply failed");
            }
        }
    }

    /// The reply to one datagram, if it deserves one.
    pub(super) fn answer(
        datagram: &[u8],
        source: std::net::IpAddr,
        keys: &ChallengeKeys,
        origins: &UdpOrigins,
        server_nonce: &str,
        now_ms: i64,
    ) -> Option<Vec<u8>> {
        let message = MessageDecoder::<Attribute>::new().decode_from_bytes(datagram).ok()?.ok()?;
        if message.class() != MessageClass::Request || message.method() != ALLOCATE {
            return None;
        }
        let transaction = message.transaction_id();
        let mut reply = Message::<Attribute>::new(MessageClass::ErrorResponse, ALLOCATE, transaction);
        let Some(username) = message.get_attribute::<Username>().cloned() else {
            // First contact: ask for credentials, so the user name comes.
            reply.add_attribute(ErrorCode::new(401, "Unauthorized".into()).ok()?);
            reply.add_attribute(Realm::new(REALM.into()).ok()?);
            reply.add_attribute(Nonce::new(server_nonce.into()).ok()?);
            return MessageEncoder::new().encode_into_bytes(reply).ok();
        };
        // Leeway as for tokens: the challenge was issued moments ago.
        if let Ok(opened) = keys.open(username.name(), now_ms, 5_000)
            && opened.expires_at_ms > now_ms
        {
            origins.record(opened.nonce, source, opened.expires_at_ms, now_ms);
        }
        // Seen; nothing is relayed.
        reply.add_attribute(ErrorCode::new(403, "Forbidden".into()).ok()?);
        let realm = Realm::new(REALM.into()).ok()?;
        let integrity =
            MessageIntegrity::new_long_term_credential(&reply, &username, &realm, PASSWORD).ok()?;
        reply.add_attribute(integrity);
        MessageEncoder::new().encode_into_bytes(reply).ok()
    }
}

#[cfg(all(test, feature = "http"))]
#[allow(clippy::unwrap_used, reason = "tests fail by panicking")]
mod tests {
    use bytecodec::{DecodeExt as _, EncodeExt as _};
    use stun_codec::rfc5389::attributes::{ErrorCode, Nonce, Realm, Username};
    use stun_codec::rfc5766::methods::ALLOCATE;
    use stun_codec::{Message, MessageClass, MessageDecoder, MessageEncoder, TransactionId};

    use super::responder::{Attribute, answer};
    use super::*;
    use crate::challenge::{ChallengeKey, ChallengeKeys};

    fn keys() -> ChallengeKeys {
        ChallengeKeys::new(vec![ChallengeKey::new(1, [7; 32])], 120).unwrap()
    }

    fn allocate(username: Option<&str>) -> Vec<u8> {
        let mut request =
            Message::<Attribute>::new(MessageClass::Request, ALLOCATE, TransactionId::new([5; 12]));
        if let Some(name) = username {
            request.add_attribute(Username::new(name.into()).unwrap());
        }
        MessageEncoder::new().encode_into_bytes(request).unwrap()
    }

    fn error_code(reply: &[u8]) -> u16 {
        let message = MessageDecoder::<Attribute>::new().decode_from_bytes(reply).unwrap().unwrap();
        assert_eq!(message.transaction_id(), TransactionId::new([5; 12]));
        message.get_attribute::<ErrorCode>().unwrap().code()
    }

    #[test]
    fn a_challenge_in_the_user_name_notes_its_source() {
        let origins = UdpOrigins::new(10);
        let source: IpAddr = "198.51.100.7".parse().unwrap();
        let first = answer(&allocate(None), source, &keys(), &origins, "n0nce", 1_000).unwrap();
        assert_eq!(error_code(&first), 401);
        // The reflection factor docs/SECURITY.md states: at most 80 bytes
        // (the server's nonce is 22 characters in service).
        let first = answer(&allocate(None), source, &keys(), &origins, &"n".repeat(22), 1_000).unwrap();
        assert!(first.len() <= 80, "{} bytes", first.len());
        let message = MessageDecoder::<Attribute>::new().decode_from_bytes(&first).unwrap().unwrap();
        assert!(message.get_attribute::<Realm>().is_some() && message.get_attribute::<Nonce>().is_some());

        let issued = keys().issue_with_nonce("203.0.113.9".parse().unwrap(), 1_000, [3; 16]);
        let second =
            answer(&allocate(Some(&issued.challenge)), source, &keys(), &origins, "n0nce", 1_500).unwrap();
        assert_eq!(error_code(&second), 403);
        assert_eq!(origins.lookup(&[3; 16], 2_000), vec![source]);
        // Gone when the challenge is.
        assert!(origins.lookup(&[3; 16], 121_000).is_empty());
    }

    #[test]
    fn nothing_is_noted_for_names_that_are_not_challenges_or_for_junk() {
        let origins = UdpOrigins::new(10);
        let source: IpAddr = "198.51.100.7".parse().unwrap();
        let forged = ChallengeKeys::new(vec![ChallengeKey::new(1, [8; 32])], 120)
            .unwrap()
            .issue_with_nonce(source, 1_000, [4; 16]);
        let reply =
            answer(&allocate(Some(&forged.challenge)), source, &keys(), &origins, "n", 1_000).unwrap();
        assert_eq!(error_code(&reply), 403);
        assert!(origins.lookup(&[4; 16], 1_000).is_empty());
        assert!(answer(b"not stun at all", source, &keys(), &origins, "n", 1_000).is_none());
        assert!(answer(&[0u8; 20], source, &keys(), &origins, "n", 1_000).is_none());
    }

    #[test]
    fn the_store_is_bounded() {
        let origins = UdpOrigins::new(2);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        origins.record([1; 16], ip, 10, 0);
        origins.record([2; 16], ip, 10, 0);
        origins.record([3; 16], ip, 10, 0);
        assert!(origins.lookup(&[3; 16], 0).is_empty(), "full of live challenges");
        origins.record([3; 16], ip, 30, 20);
        assert_eq!(origins.lookup(&[3; 16], 20), vec![ip], "expired ones make room");
        for n in 0..10u8 {
            origins.record([1; 16], IpAddr::from([192, 0, 2, n]), 100, 20);
        }
        assert_eq!(origins.lookup(&[1; 16], 20).len(), PER_CHALLENGE);
    }
}

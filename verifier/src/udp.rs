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
//! ([`UdpOrigins`]) and, with a Redis replay store, in Redis too
//! ([`SharedSightings`]), so that the instance that answers the probe and
//! the one that verifies the token need not be the same
//! (docs/SECURITY.md, "The second origin").

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

/// Addresses kept per challenge: a browser may send from several host
/// candidates (IPv4 and IPv6, several interfaces).
const PER_CHALLENGE: usize = 4;

/// At most this many addresses per challenge in the shared store too.
pub const SHARED_PER_CHALLENGE: usize = PER_CHALLENGE;

/// A shared store's answer.
pub type SharedFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, String>> + Send + 'a>>;

/// Sightings every instance can read (the Redis replay store's Redis):
/// the instance whose UDP port received a probe notes it there before it
/// answers, and the instance that verifies the token reads it when it has
/// none of its own.
pub trait SharedSightings: Send + Sync + std::fmt::Debug {
    /// Notes that `ip` sent the probe of challenge `nonce`, kept for
    /// `ttl_ms` (at most [`SHARED_PER_CHALLENGE`] addresses per challenge).
    fn note(&self, nonce: [u8; 16], ip: IpAddr, ttl_ms: i64) -> SharedFuture<'_, ()>;
    /// The addresses any instance noted for `nonce`.
    fn seen(&self, nonce: [u8; 16]) -> SharedFuture<'_, Vec<IpAddr>>;
}

/// UDP sources seen per challenge nonce, until the challenge expires.
#[derive(Debug)]
pub struct UdpOrigins {
    seen: Mutex<HashMap<[u8; 16], Seen>>,
    capacity: usize,
    shared: Option<Arc<dyn SharedSightings>>,
}

#[derive(Debug, Clone)]
struct Seen {
    ips: Vec<IpAddr>,
    expires_at_ms: i64,
}

impl UdpOrigins {
    /// A store for at most `capacity` challenges at once.
    pub fn new(capacity: usize) -> Self {
        Self { seen: Mutex::new(HashMap::new()), capacity: capacity.max(1), shared: None }
    }

    /// Also notes sightings in, and reads them from, `shared`.
    #[must_use]
    pub fn with_shared(mut self, shared: Arc<dyn SharedSightings>) -> Self {
        self.shared = Some(shared);
        self
    }

    /// The shared store, if any.
    pub fn shared(&self) -> Option<&Arc<dyn SharedSightings>> {
        self.shared.as_ref()
    }

    /// The addresses that sent challenge `nonce`'s probe: this instance's
    /// own sightings, else the shared store's. A shared store that cannot
    /// answer means no UDP origin (its absence is never a penalty).
    pub async fn seen(&self, nonce: &[u8; 16], now_ms: i64) -> Vec<IpAddr> {
        let own = self.lookup(nonce, now_ms);
        let Some(shared) = self.shared.as_ref().filter(|_| own.is_empty()) else { return own };
        match shared.seen(*nonce).await {
            Ok(mut ips) => {
                ips.truncate(SHARED_PER_CHALLENGE);
                ips
            }
            Err(error) => {
                tracing::debug!(%error, "udp: the shared sightings could not be read");
                Vec::new()
            }
        }
    }

    /// Notes that `ip` sent the probe of challenge `nonce`, which expires at
    /// `expires_at_ms`. When full of live challenges, new ones are not
    /// noted (the answer then simply has no UDP origin). Whether the
    /// address is new for the challenge: only then is it shared.
    pub fn record(&self, nonce: [u8; 16], ip: IpAddr, expires_at_ms: i64, now_ms: i64) -> bool {
        let ip = crate::net::canonical_ip(ip);
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if seen.len() >= self.capacity && !seen.contains_key(&nonce) {
            seen.retain(|_, s| s.expires_at_ms > now_ms);
            if seen.len() >= self.capacity {
                return false;
            }
        }
        let entry = seen.entry(nonce).or_insert_with(|| Seen { ips: Vec::new(), expires_at_ms });
        let new = !entry.ips.contains(&ip) && entry.ips.len() < PER_CHALLENGE;
        if new {
            entry.ips.push(ip);
        }
        new
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

    /// Probes whose shared note may be in flight at once; past that a probe
    /// is answered at once and only this instance remembers it.
    const SHARED_IN_FLIGHT: usize = 256;

    /// How long a shared sighting outlives its challenge: another instance
    /// whose clock runs behind still accepts the challenge for that long.
    const SHARED_LEEWAY_MS: i64 = 60_000;

    /// Whether a failed shared note was reported at `warn` yet.
    static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

    /// The reply to a datagram, and the challenge (nonce, expiry) whose
    /// probe it was, when one was noted.
    pub(super) struct Reply {
        pub(super) bytes: Vec<u8>,
        pub(super) noted: Option<([u8; 16], i64)>,
    }

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
        let socket = Arc::new(socket);
        let in_flight = Arc::new(tokio::sync::Semaphore::new(SHARED_IN_FLIGHT));
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
            // With a shared store, the refusal waits until the sighting is
            // there: the browser signs once it hears it, and the token may
            // be verified by another instance.
            if let (Some((challenge, expires_at_ms)), Some(shared)) = (reply.noted, origins.shared())
                && let Ok(permit) = in_flight.clone().try_acquire_owned()
            {
                let (shared, socket) = (shared.clone(), socket.clone());
                let ttl_ms = expires_at_ms.saturating_sub(now_ms).saturating_add(SHARED_LEEWAY_MS);
                tokio::spawn(async move {
                    let ip = crate::net::canonical_ip(peer.ip());
                    if let Err(error) = shared.note(challenge, ip, ttl_ms).await {
                        // Said once loudly (a Redis that refuses the
                        // commands would otherwise go unnoticed), then
                        // quietly.
                        if WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
                            tracing::debug!(%error, "udp: the sighting was not shared; only this instance has it");
                        } else {
                            tracing::warn!(%error, "udp: a sighting could not be shared through Redis; only this instance has it (said once)");
                        }
                    }
                    send(&socket, &reply.bytes, peer).await;
                    drop(permit);
                });
                continue;
            }
            send(&socket, &reply.bytes, peer).await;
        }
    }

    async fn send(socket: &UdpSocket, reply: &[u8], peer: std::net::SocketAddr) {
        if let Err(error) = socket.send_to(reply, peer).await {
            tracing::debug!(%error, %peer, "udp: reply failed");
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
    ) -> Option<Reply> {
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
            let bytes = MessageEncoder::new().encode_into_bytes(reply).ok()?;
            return Some(Reply { bytes, noted: None });
        };
        // Leeway as for tokens: the challenge was issued moments ago.
        let mut noted = None;
        if let Ok(opened) = keys.open(username.name(), now_ms, 5_000)
            && opened.expires_at_ms > now_ms
        {
            // A repeat (retransmissions, a flood of one challenge) is
            // answered from memory: only a new address goes to the
            // shared store, at most four per challenge.
            if origins.record(opened.nonce, source, opened.expires_at_ms, now_ms) {
                noted = Some((opened.nonce, opened.expires_at_ms));
            }
        }
        // Seen; nothing is relayed.
        reply.add_attribute(ErrorCode::new(403, "Forbidden".into()).ok()?);
        let realm = Realm::new(REALM.into()).ok()?;
        let integrity =
            MessageIntegrity::new_long_term_credential(&reply, &username, &realm, PASSWORD).ok()?;
        reply.add_attribute(integrity);
        let bytes = MessageEncoder::new().encode_into_bytes(reply).ok()?;
        Some(Reply { bytes, noted })
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
        let first = answer(&allocate(None), source, &keys(), &origins, "n0nce", 1_000).unwrap().bytes;
        assert_eq!(error_code(&first), 401);
        // The reflection factor docs/SECURITY.md states: at most 80 bytes
        // (the server's nonce is 22 characters in service).
        let first = answer(&allocate(None), source, &keys(), &origins, &"n".repeat(22), 1_000).unwrap().bytes;
        assert!(first.len() <= 80, "{} bytes", first.len());
        let message = MessageDecoder::<Attribute>::new().decode_from_bytes(&first).unwrap().unwrap();
        assert!(message.get_attribute::<Realm>().is_some() && message.get_attribute::<Nonce>().is_some());

        let issued = keys().issue_with_nonce("203.0.113.9".parse().unwrap(), 1_000, [3; 16]);
        let second = answer(&allocate(Some(&issued.challenge)), source, &keys(), &origins, "n0nce", 1_500)
            .unwrap()
            .bytes;
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
            answer(&allocate(Some(&forged.challenge)), source, &keys(), &origins, "n", 1_000).unwrap().bytes;
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

    /// A shared store in memory, or one that cannot answer.
    #[derive(Debug, Default)]
    struct Shared {
        seen: Mutex<HashMap<[u8; 16], Vec<IpAddr>>>,
        down: bool,
    }

    impl SharedSightings for Shared {
        fn note(&self, nonce: [u8; 16], ip: IpAddr, _ttl_ms: i64) -> SharedFuture<'_, ()> {
            let result = if self.down {
                Err("down".into())
            } else {
                self.seen.lock().unwrap().entry(nonce).or_default().push(ip);
                Ok(())
            };
            Box::pin(async move { result })
        }

        fn seen(&self, nonce: [u8; 16]) -> SharedFuture<'_, Vec<IpAddr>> {
            let result = if self.down {
                Err("down".into())
            } else {
                Ok(self.seen.lock().unwrap().get(&nonce).cloned().unwrap_or_default())
            };
            Box::pin(async move { result })
        }
    }

    #[tokio::test]
    async fn another_instances_sighting_is_read_when_this_one_has_none() {
        let elsewhere: IpAddr = "203.0.113.9".parse().unwrap();
        let shared = Arc::new(Shared::default());
        shared.note([1; 16], elsewhere, 60_000).await.unwrap();
        let origins = UdpOrigins::new(8).with_shared(shared.clone());
        assert_eq!(origins.seen(&[1; 16], 1_000).await, [elsewhere]);
        // Its own sighting comes first, without asking.
        let here: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(origins.record([1; 16], here, 120_000, 1_000), "new: shared");
        assert!(!origins.record([1; 16], here, 120_000, 1_100), "a repeat is not shared again");
        assert_eq!(origins.seen(&[1; 16], 1_000).await, [here]);
        assert!(origins.seen(&[2; 16], 1_000).await.is_empty());
        // A shared store that cannot answer is no UDP origin, not an error.
        let down = UdpOrigins::new(8).with_shared(Arc::new(Shared { down: true, ..Shared::default() }));
        assert!(down.seen(&[1; 16], 1_000).await.is_empty());
    }
}

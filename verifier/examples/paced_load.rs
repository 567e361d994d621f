//! An open-loop load generator for `POST /v1/verify`: requests leave on a
//! schedule with the given mean rate, spaced by exponential pauses timed to
//! the microsecond, whatever the server answers; each latency is timed from
//! the moment its request was *due*, so a server that falls behind is
//! charged for the requests waiting behind a slow one (no coordinated
//! omission).
//!
//! Why not `wrk`: its pauses (`delay()` in a Lua script) are whole
//! milliseconds on a millisecond timer, so at a few thousand requests a
//! second the requests of every millisecond leave together, in a burst.
//! A p99 measured that way is the burst's queue, not the server's.
//!
//!     cargo run --release -p meridian-verifier --example paced_load -- \
//!         http://127.0.0.1:8080 TOKENS_FILE RATE SECONDS [CONNECTIONS]
//!
//! Environment: `SECRET` (the verify secret), `ACCOUNTS` (name one of this
//! many accounts, in ACCOUNTS / 25 organisations, per request; 0 or unset:
//! none). One token per line of TOKENS_FILE (`mint_tokens`), each used
//! once. Each connection is a thread with its own share of the schedule
//! (the sum of independent Poisson streams is one Poisson stream of the
//! whole rate). Prints latency percentiles, how late requests left against
//! their schedule (the generator's own error, included in every latency),
//! and every answer that does not accept its token as a failure.

use std::io::{BufRead as _, Read as _, Write as _};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

struct Run {
    host: String,
    tokens: Vec<String>,
    next_token: AtomicUsize,
    secret: String,
    accounts: usize,
    /// Mean pause between one connection's requests.
    mean_gap: Duration,
    start: Instant,
    end: Instant,
}

#[derive(Default)]
struct Tally {
    /// Due-to-answered, microseconds.
    latencies_us: Vec<u32>,
    /// Due-to-sent, microseconds.
    lateness_us: Vec<u32>,
    failures: u64,
    first_failure: Option<String>,
}

fn main() {
    if let Err(error) = run() {
        eprintln!("paced_load: {error}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, tokens, rate, seconds, rest @ ..] = args.as_slice() else {
        return Err("usage: paced_load URL TOKENS_FILE RATE SECONDS [CONNECTIONS]".into());
    };
    let host = url.strip_prefix("http://").ok_or("the URL must start with http://")?.trim_end_matches('/');
    let rate: f64 = rate.parse().map_err(|_| format!("RATE must be a number, not {rate:?}"))?;
    let seconds: f64 = seconds.parse().map_err(|_| format!("SECONDS must be a number, not {seconds:?}"))?;
    let connections: usize = match rest.first() {
        Some(n) => n.parse().map_err(|_| format!("CONNECTIONS must be a count, not {n:?}"))?,
        None => 64,
    };
    if !(rate > 0.0 && seconds > 0.0 && connections > 0) {
        return Err("RATE, SECONDS and CONNECTIONS must be above zero".into());
    }
    let file = std::fs::File::open(tokens).map_err(|e| format!("{tokens}: {e}"))?;
    let tokens: Vec<String> = std::io::BufReader::new(file)
        .lines()
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{tokens}: {e}"))?;
    let needed = (rate * seconds * 1.1) as usize;
    if tokens.len() < needed {
        return Err(format!("{} tokens for about {needed} requests: mint more", tokens.len()));
    }
    let start = Instant::now() + Duration::from_millis(200);
    let run = Arc::new(Run {
        host: host.to_owned(),
        tokens,
        next_token: AtomicUsize::new(0),
        secret: std::env::var("SECRET").unwrap_or_default(),
        accounts: std::env::var("ACCOUNTS").ok().and_then(|n| n.parse().ok()).unwrap_or(0),
        mean_gap: Duration::from_secs_f64(connections as f64 / rate),
        start,
        end: start + Duration::from_secs_f64(seconds),
    });
    let threads: Vec<_> = (0..connections)
        .map(|id| {
            let run = Arc::clone(&run);
            std::thread::spawn(move || connection(&run, id as u64))
        })
        .collect();
    let mut all = Tally::default();
    for thread in threads {
        let tally = thread.join().map_err(|_| "a connection's thread panicked")??;
        all.latencies_us.extend(tally.latencies_us);
        all.lateness_us.extend(tally.lateness_us);
        all.failures += tally.failures;
        all.first_failure = all.first_failure.or(tally.first_failure);
    }
    report(&all, seconds, rate, connections);
    Ok(())
}

/// One keep-alive connection working through its share of the schedule.
fn connection(run: &Run, id: u64) -> Result<Tally, String> {
    let connect = || -> Result<TcpStream, String> {
        let stream =
            TcpStream::connect(&run.host).map_err(|e| format!("cannot connect to {}: {e}", run.host))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        stream.set_read_timeout(Some(Duration::from_secs(10))).map_err(|e| e.to_string())?;
        Ok(stream)
    };
    let mut stream = connect()?;
    let mut random = SplitMix(0x9E37_79B9_7F4A_7C15 ^ (id + 1).wrapping_mul(7919));
    let mut tally = Tally::default();
    let mut due = run.start + random.exponential(run.mean_gap);
    let mut buffer = Vec::with_capacity(4096);
    while due < run.end {
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        let n = run.next_token.fetch_add(1, Ordering::Relaxed);
        let token = run.tokens.get(n).ok_or("the tokens ran out")?;
        let request = request(run, token, n);
        let sent = Instant::now();
        let answer = stream.write_all(request.as_bytes()).map_err(|e| e.to_string()).and_then(|()| {
            buffer.clear();
            read_response(&mut stream, &mut buffer)
        });
        let answered = Instant::now();
        tally.lateness_us.push(micros(sent.saturating_duration_since(due)));
        tally.latencies_us.push(micros(answered.saturating_duration_since(due)));
        match answer {
            Ok((200, body)) if contains(body, b"\"success\":true") => {}
            Ok((status, body)) => {
                tally.failures += 1;
                tally
                    .first_failure
                    .get_or_insert_with(|| format!("{status}: {}", String::from_utf8_lossy(body)));
            }
            Err(error) => {
                tally.failures += 1;
                tally.first_failure.get_or_insert(error);
                stream = connect()?;
            }
        }
        due += random.exponential(run.mean_gap);
    }
    Ok(tally)
}

/// The request body, naming an account and organisation as
/// `scripts/bench.d/verify.lua` does.
fn request(run: &Run, token: &str, n: usize) -> String {
    let who = if run.accounts > 0 {
        let account = (n * 7919) % run.accounts;
        let organization = account % (run.accounts / 25).max(1);
        format!(r#","account":"user-{account}","organization":"org-{organization}""#)
    } else {
        String::new()
    };
    let body =
        format!(r#"{{"token":"{token}","remote_ip":"127.0.0.1","accept_language":"en-US,en;q=0.9"{who}}}"#);
    format!(
        "POST /v1/verify HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        run.host,
        run.secret,
        body.len()
    )
}

/// Reads one HTTP/1.1 response with a `Content-Length`; returns its status
/// and body.
fn read_response<'a>(stream: &mut TcpStream, buffer: &'a mut Vec<u8>) -> Result<(u16, &'a [u8]), String> {
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = stream.read(&mut chunk).map_err(|e| format!("reading a response: {e}"))?;
        if n == 0 {
            return Err("the server closed the connection".into());
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = std::str::from_utf8(&buffer[..head_end]).map_err(|_| "a response head that is not UTF-8")?;
    let status = head.get(9..12).and_then(|s| s.parse().ok()).ok_or("a response without a status")?;
    let length = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length").then(|| value.trim().parse::<usize>().ok())?
        })
        .ok_or("a response without Content-Length")?;
    while buffer.len() < head_end + length {
        let n = stream.read(&mut chunk).map_err(|e| format!("reading a response: {e}"))?;
        if n == 0 {
            return Err("the server closed the connection".into());
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
    Ok((status, &buffer[head_end..head_end + length]))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn micros(duration: Duration) -> u32 {
    u32::try_from(duration.as_micros()).unwrap_or(u32::MAX)
}

fn report(all: &Tally, seconds: f64, rate: f64, connections: usize) {
    let mut latencies = all.latencies_us.clone();
    let mut lateness = all.lateness_us.clone();
    latencies.sort_unstable();
    lateness.sort_unstable();
    let at = |sorted: &[u32], q: f64| -> String {
        let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len().max(1)) - 1;
        sorted.get(i).map_or_else(|| "-".into(), |us| format!("{:.2}ms", f64::from(*us) / 1000.0))
    };
    println!("offered: {rate:.0}/s over {connections} connections for {seconds} s");
    println!("requests: {} ({:.0}/s)", latencies.len(), latencies.len() as f64 / seconds);
    for (name, q) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999), ("max", 1.0)] {
        println!("latency {name}: {}", at(&latencies, q));
    }
    println!(
        "sent late (generator's own error, in every latency): p50 {}, p99 {}",
        at(&lateness, 0.5),
        at(&lateness, 0.99)
    );
    println!("failures: {}", all.failures);
    if let Some(first) = &all.first_failure {
        println!("first failure: {first}");
    }
}

/// A small deterministic generator for the pauses (SplitMix64).
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// An exponential pause with mean `mean`.
    fn exponential(&mut self, mean: Duration) -> Duration {
        // Uniform in (0, 1]: never ln(0).
        let uniform = ((self.next() >> 11) + 1) as f64 / (1u64 << 53) as f64;
        mean.mul_f64(-uniform.ln())
    }
}

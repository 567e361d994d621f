//! The kernel's own round trip of a connection (`TCP_INFO`).
//!
//! Every connection [`super::serve`] accepts is a [`ProbedStream`], and each
//! request on it carries a [`TcpProbe`] in its extensions: a handler (the
//! echo of `GET /v1/echo`) asks it what the kernel measured. The figure is
//! the kernel's, from the handshake and the acknowledgements of this very
//! socket: a client cannot make it smaller, and behind a relay it times only
//! the server's side of the relay.
//!
//! The probe holds the socket's descriptor in a slot the stream empties,
//! under the same lock, before the descriptor is closed; a probe that
//! outlives its connection answers `None` instead of reading a descriptor
//! the process may since have reused.
//!
//! The stream also bounds how long a write may make no progress
//! ([`ProbedStream::with_write_stall_limit`]): a client that stops reading
//! a response larger than the socket's buffers would otherwise hold its
//! connection, and its place under the connection cap, for ever.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// What the kernel knows about a connection's round trip, microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpRtt {
    /// The least round trip seen on the connection (`tcpi_min_rtt`): the
    /// handshake's, or a quicker acknowledgement since.
    pub min_us: u32,
    /// The smoothed round trip (`tcpi_rtt`).
    pub smoothed_us: u32,
}

type Slot = Arc<Mutex<Option<RawSocket>>>;

#[cfg(target_os = "linux")]
type RawSocket = std::os::fd::RawFd;
#[cfg(not(target_os = "linux"))]
type RawSocket = ();

/// Asks the kernel about one connection; see the module documentation.
#[derive(Debug, Clone)]
pub struct TcpProbe {
    slot: Slot,
}

impl TcpProbe {
    /// The connection's round trip, or `None` when the connection is closed
    /// or the system does not say (only Linux does).
    pub fn rtt(&self) -> Option<TcpRtt> {
        let open = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
        let socket = (*open)?;
        // The lock is held while the kernel is asked: the stream cannot
        // close the descriptor meanwhile (see `ProbedStream::drop`).
        tcp_info(socket)
    }
}

/// An accepted connection whose round trip a [`TcpProbe`] can read.
#[derive(Debug)]
pub struct ProbedStream {
    inner: TcpStream,
    slot: Slot,
    /// How long a write may wait for the client to read, at most.
    stall_limit: Option<Duration>,
    /// Since when the pending write has waited, as its deadline.
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl ProbedStream {
    /// Wraps an accepted connection; the probe goes into each request's
    /// extensions.
    pub fn new(inner: TcpStream) -> (Self, TcpProbe) {
        #[cfg(target_os = "linux")]
        let socket = Some(std::os::fd::AsRawFd::as_raw_fd(&inner));
        #[cfg(not(target_os = "linux"))]
        let socket = Some(());
        let slot = Arc::new(Mutex::new(socket));
        (Self { inner, slot: slot.clone(), stall_limit: None, stalled: None }, TcpProbe { slot })
    }

    /// Fails a write that has made no progress for `limit` (the client
    /// stopped reading): the connection then closes.
    #[must_use]
    pub fn with_write_stall_limit(mut self, limit: Duration) -> Self {
        self.stall_limit = Some(limit);
        self
    }

    /// Passes a write's outcome on; a write still waiting fails once it has
    /// waited past the limit.
    fn bounded<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        let Some(limit) = self.stall_limit else { return polled };
        if polled.is_ready() {
            self.stalled = None;
            return polled;
        }
        let deadline = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match deadline.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.stalled = None;
                Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("the client read nothing for {limit:?}"),
                )))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for ProbedStream {
    /// Empties the probe's slot before `inner` (dropped after this runs)
    /// closes the descriptor.
    fn drop(&mut self) {
        *self.slot.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }
}

impl AsyncRead for ProbedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for ProbedStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.bounded(cx, polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.bounded(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_flush(cx);
        this.bounded(cx, polled)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// `getsockopt(fd, IPPROTO_TCP, TCP_INFO)`: no safe wrapper exists (libc
/// has only the raw call; rustix and socket2 do not offer `TCP_INFO`).
#[cfg(target_os = "linux")]
#[allow(unsafe_code, reason = "getsockopt(TCP_INFO) has no safe wrapper; the one call is checked below")]
fn tcp_info(fd: std::os::fd::RawFd) -> Option<TcpRtt> {
    let size = std::mem::size_of::<libc::tcp_info>();
    let mut len = libc::socklen_t::try_from(size).ok()?;
    let mut info = std::mem::MaybeUninit::<libc::tcp_info>::zeroed();
    // SAFETY: `fd` is an open socket: the caller holds the lock that keeps
    // its stream from closing it. `info` is valid for writes of `len` bytes
    // (its own size), and `len` is the in-out length getsockopt(2) expects.
    // The kernel writes at most `len` bytes and reports how many in `len`;
    // the rest stays zeroed, and every field of `tcp_info` is an integer,
    // so the value is initialised whatever the kernel's version wrote.
    let info = unsafe {
        let rc = libc::getsockopt(fd, libc::IPPROTO_TCP, libc::TCP_INFO, info.as_mut_ptr().cast(), &mut len);
        if rc != 0 {
            return None;
        }
        info.assume_init()
    };
    let written = usize::try_from(len).unwrap_or(0);
    // Kernels before 4.6 have no `tcpi_min_rtt`: fall back to the smoothed one.
    let has_min = written >= std::mem::offset_of!(libc::tcp_info, tcpi_min_rtt) + 4 && info.tcpi_min_rtt > 0;
    let has_rtt = written >= std::mem::offset_of!(libc::tcp_info, tcpi_rtt) + 4;
    if !has_rtt {
        return None;
    }
    Some(TcpRtt {
        min_us: if has_min { info.tcpi_min_rtt } else { info.tcpi_rtt },
        smoothed_us: info.tcpi_rtt,
    })
}

#[cfg(not(target_os = "linux"))]
fn tcp_info((): ()) -> Option<TcpRtt> {
    None
}

#[cfg(all(test, target_os = "linux"))]
#[allow(clippy::unwrap_used, clippy::panic, reason = "tests fail by panicking")]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn reads_the_round_trip_of_a_live_connection_and_nothing_after_it_closes() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let mut stream = TcpStream::connect(address).await.unwrap();
            let mut byte = [0; 1];
            for _ in 0..5 {
                stream.read_exact(&mut byte).await.unwrap();
                stream.write_all(&byte).await.unwrap();
            }
        });
        let (accepted, _) = listener.accept().await.unwrap();
        let (mut stream, probe) = ProbedStream::new(accepted);
        let mut byte = [7; 1];
        for _ in 0..5 {
            stream.write_all(&byte).await.unwrap();
            stream.read_exact(&mut byte).await.unwrap();
        }
        let rtt = probe.rtt().unwrap();
        // Loopback: more than nothing, far less than a second.
        assert!(rtt.min_us > 0 && rtt.min_us < 1_000_000, "{rtt:?}");
        assert!(rtt.smoothed_us >= rtt.min_us / 2, "{rtt:?}");
        client.await.unwrap();
        drop(stream);
        assert_eq!(probe.rtt(), None, "a closed connection is not read");
    }
}

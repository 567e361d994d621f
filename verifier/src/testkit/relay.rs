//! A relay for tests of the hidden leg: it ends the client's TCP connection
//! the way Shadowsocks, V2Ray or a SOCKS proxy do, opens its own to the
//! server, and delays everything it carries on the client's side, as a
//! browser far from its exit would see. The kernel has no `netem` here, so
//! the delay is in user space.
//!
//! It listens on 127.0.0.1 and connects only to loopback addresses.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// How the relay learns where to connect.
#[derive(Debug, Clone, Copy)]
pub enum RelayMode {
    /// A SOCKS5 proxy (RFC 1928, no authentication, `CONNECT` only), as
    /// Chromium's `--proxy-server=socks5://…` speaks it.
    Socks5,
    /// A plain TCP forwarder to one address.
    Forward(SocketAddr),
}

/// A running relay; stops when dropped.
#[derive(Debug)]
pub struct DelayRelay {
    /// Where it listens.
    pub address: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for DelayRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl DelayRelay {
    /// Starts a relay that adds `one_way` to each direction between the
    /// client and itself (`2 × one_way` to a round trip).
    ///
    /// # Errors
    /// When no loopback port can be bound.
    pub async fn start(mode: RelayMode, one_way: Duration) -> std::io::Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let address = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                connections.spawn(async move {
                    let _ = relay(client, mode, one_way).await;
                });
                while connections.try_join_next().is_some() {}
            }
        });
        Ok(Self { address, task })
    }
}

async fn relay(mut client: TcpStream, mode: RelayMode, one_way: Duration) -> std::io::Result<()> {
    client.set_nodelay(true)?;
    let target = match mode {
        RelayMode::Forward(target) => target,
        RelayMode::Socks5 => socks5_handshake(&mut client).await?,
    };
    if !target.ip().is_loopback() {
        return Err(std::io::Error::other("the test relay connects to loopback only"));
    }
    let server = TcpStream::connect(target).await?;
    server.set_nodelay(true)?;
    if let RelayMode::Socks5 = mode {
        // Succeeded, bound to 0.0.0.0:0.
        client.write_all(&[5, 0, 0, 1, 0, 0, 0, 0, 0, 0]).await?;
    }
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    // Towards the server, the client's bytes arrive late; towards the
    // client, the server's bytes leave late.
    let up = pump(client_read, server_write, one_way);
    let down = pump(server_read, client_write, one_way);
    let _ = tokio::join!(up, down);
    Ok(())
}

/// Copies `from` to `to`, each chunk `delay` after it was read, in order.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay: Duration,
) {
    let (sender, mut receiver) = mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
    let writer = tokio::spawn(async move {
        while let Some((due, chunk)) = receiver.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    });
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if sender.send((tokio::time::Instant::now() + delay, buffer[..n].to_vec())).is_err() {
                    break;
                }
            }
        }
    }
    drop(sender);
    let _ = writer.await;
}

/// The server side of a SOCKS5 greeting and `CONNECT`: the target address.
async fn socks5_handshake(client: &mut TcpStream) -> std::io::Result<SocketAddr> {
    let refuse = |why: &str| std::io::Error::other(format!("SOCKS5: {why}"));
    let mut head = [0u8; 2];
    client.read_exact(&mut head).await?;
    if head[0] != 5 {
        return Err(refuse("not version 5"));
    }
    let mut methods = vec![0u8; usize::from(head[1])];
    client.read_exact(&mut methods).await?;
    if !methods.contains(&0) {
        client.write_all(&[5, 0xff]).await?;
        return Err(refuse("the client offers no unauthenticated method"));
    }
    client.write_all(&[5, 0]).await?;
    let mut request = [0u8; 4];
    client.read_exact(&mut request).await?;
    if request[0] != 5 || request[1] != 1 {
        return Err(refuse("only CONNECT is supported"));
    }
    let ip = match request[3] {
        1 => {
            let mut octets = [0u8; 4];
            client.read_exact(&mut octets).await?;
            IpAddr::from(octets)
        }
        4 => {
            let mut octets = [0u8; 16];
            client.read_exact(&mut octets).await?;
            IpAddr::from(octets)
        }
        3 => {
            let mut length = [0u8; 1];
            client.read_exact(&mut length).await?;
            let mut name = vec![0u8; usize::from(length[0])];
            client.read_exact(&mut name).await?;
            match std::str::from_utf8(&name) {
                Ok("localhost") => IpAddr::V4(Ipv4Addr::LOCALHOST),
                Ok(text) => {
                    text.parse().map_err(|_| refuse("the test relay resolves only loopback names"))?
                }
                Err(_) => return Err(refuse("a host name that is not UTF-8")),
            }
        }
        _ => return Err(refuse("unknown address type")),
    };
    let mut port = [0u8; 2];
    client.read_exact(&mut port).await?;
    Ok(SocketAddr::new(ip, u16::from_be_bytes(port)))
}

//! A test and benchmark hook: TCP links with latency, limited bandwidth, partitions and byte counts,
//! for simulations of many nodes in one process (`node/benches/scale.rs`, `tests/integration/scale.rs`).
//!
//! Production nodes never use it: `NodeConfig::link_shaper` is `None` unless a test sets it. When it
//! is set, the node's transport is TCP only (no QUIC), and every TCP connection goes through
//! [`Shaped`]:
//! - on the side that dialled, the bytes of both directions are held back by the link's one-way
//!   latency, after the time the sender's uplink (bits per second) needs to put them on the wire;
//!   shaping one side of each connection is enough, since every connection has exactly one dialler,
//!   and the dialler knows which node it dialled from the address (the simulations give each node its
//!   own loopback address, see [`node_addr`]);
//! - a link can be cut (a partition): cut links refuse new connections and break the open ones at
//!   once (the remote end sees the connection closed);
//! - both sides count the bytes they send and receive on the TCP connection (noise and yamux framing
//!   included), per node ([`Traffic`]).
//!
//! Delayed bytes wait in bounded queues (`QUEUE` chunks of at most `CHUNK` bytes per direction and
//! connection); a full queue makes the writer wait, like a full socket buffer.

use std::future::Future;
use std::io;
use std::net::Ipv4Addr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use futures::channel::mpsc;
use futures::{AsyncRead, AsyncWrite, SinkExt, StreamExt};
use libp2p::Multiaddr;
use libp2p::core::ConnectedPoint;
use libp2p::multiaddr::Protocol;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::Instant;

/// Largest chunk a delayed link carries at once.
const CHUNK: usize = 64 * 1024;
/// Chunks in flight per direction and connection (at most 4 MiB).
const QUEUE: usize = 64;

/// Decides the profile of each link a node dials, from the address dialled. An error refuses the
/// connection (an address of no simulated node, a cut link).
pub type ProfileFn = dyn Fn(&Multiaddr) -> io::Result<LinkProfile> + Send + Sync;

/// The hook of one node: how its links behave, and its byte counters.
#[derive(Clone)]
pub struct LinkShaper {
    profile: Arc<ProfileFn>,
    traffic: Arc<Traffic>,
}

impl std::fmt::Debug for LinkShaper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkShaper").field("traffic", &self.traffic).finish_non_exhaustive()
    }
}

impl LinkShaper {
    pub fn new(profile: impl Fn(&Multiaddr) -> io::Result<LinkProfile> + Send + Sync + 'static) -> Self {
        LinkShaper { profile: Arc::new(profile), traffic: Arc::default() }
    }

    /// The node's byte counters, over all its TCP connections.
    pub fn traffic(&self) -> Arc<Traffic> {
        self.traffic.clone()
    }
}

/// Bytes a node sent and received over TCP.
#[derive(Debug, Default)]
pub struct Traffic {
    sent: AtomicU64,
    received: AtomicU64,
}

impl Traffic {
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }
}

/// How one link behaves.
#[derive(Debug, Clone, Default)]
pub struct LinkProfile {
    /// One way: the round trip is twice this.
    pub latency: Duration,
    /// The dialling node's uplink, shared by all its links (None: unlimited).
    pub local_uplink: Option<Arc<Uplink>>,
    /// The dialled node's uplink.
    pub remote_uplink: Option<Arc<Uplink>>,
    /// When this becomes true the link breaks; [`LinkShaper`] also refuses to connect while it is.
    pub cut: Option<watch::Receiver<bool>>,
}

/// A node's sending capacity, shared by all its links: bytes queue behind each other.
#[derive(Debug)]
pub struct Uplink {
    bytes_per_sec: f64,
    next_free: Mutex<Option<Instant>>,
}

impl Uplink {
    pub fn new(bits_per_sec: u64) -> Self {
        Uplink { bytes_per_sec: bits_per_sec.max(8) as f64 / 8.0, next_free: Mutex::new(None) }
    }

    /// When `len` bytes queued now are all on the wire.
    fn send(&self, len: usize) -> Instant {
        let now = Instant::now();
        let mut next = self.next_free.lock().unwrap_or_else(PoisonError::into_inner);
        let start = next.map_or(now, |n| n.max(now));
        let done = start + Duration::from_secs_f64(len as f64 / self.bytes_per_sec);
        *next = Some(done);
        done
    }
}

/// The loopback address of simulated node `index` (127.1.x.y: every 127/8 address is local on
/// Linux), so that a dialler knows which node it dials from the address alone.
pub fn node_addr(index: usize) -> Ipv4Addr {
    let i = index as u32;
    Ipv4Addr::new(127, 1, (i / 250) as u8, (i % 250 + 1) as u8)
}

/// The simulated node that `addr` belongs to, if any (the inverse of [`node_addr`]).
pub fn node_of(addr: &Multiaddr) -> Option<usize> {
    addr.iter().find_map(|p| match p {
        Protocol::Ip4(ip) => {
            let [a, b, c, d] = ip.octets();
            (a == 127 && b == 1 && (1..=250).contains(&d)).then(|| c as usize * 250 + d as usize - 1)
        }
        _ => None,
    })
}

/// A listen address for simulated node `index` (TCP, any free port).
pub fn listen_addr(index: usize) -> Multiaddr {
    Multiaddr::empty().with(Protocol::Ip4(node_addr(index))).with(Protocol::Tcp(0))
}

fn refused(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionRefused, what.to_owned())
}

fn broken() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "link closed")
}

/// Wraps a new TCP connection of a node whose config has a shaper (called by the transport).
pub(crate) async fn shape(
    shaper: LinkShaper,
    stream: libp2p::tcp::tokio::TcpStream,
    endpoint: ConnectedPoint,
) -> io::Result<Shaped> {
    let traffic = shaper.traffic.clone();
    match endpoint {
        ConnectedPoint::Dialer { address, .. } => {
            let profile = (shaper.profile)(&address)?;
            if profile.cut.as_ref().is_some_and(|c| *c.borrow()) {
                return Err(refused("link cut"));
            }
            Ok(Shaped { traffic, inner: Inner::Delayed(Box::new(Delayed::start(stream.0, profile))) })
        }
        ConnectedPoint::Listener { .. } => Ok(Shaped { traffic, inner: Inner::Direct(stream) }),
    }
}

/// A shaped TCP connection.
pub struct Shaped {
    traffic: Arc<Traffic>,
    inner: Inner,
}

impl std::fmt::Debug for Shaped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shaped").finish_non_exhaustive()
    }
}

enum Inner {
    /// The accepting side: counted only.
    Direct(libp2p::tcp::tokio::TcpStream),
    /// The dialling side: delayed both ways.
    Delayed(Box<Delayed>),
}

type Timed = (Instant, Vec<u8>);

struct Delayed {
    to_wire: mpsc::Sender<Timed>,
    from_wire: mpsc::Receiver<io::Result<Timed>>,
    /// The chunk being read: when it may be read, its bytes, how far.
    reading: Option<(Instant, Vec<u8>, usize)>,
    timer: Pin<Box<tokio::time::Sleep>>,
    latency: Duration,
    uplink: Option<Arc<Uplink>>,
}

impl Delayed {
    /// Splits the socket between a task that writes delayed chunks and one that reads and timestamps.
    fn start(stream: tokio::net::TcpStream, profile: LinkProfile) -> Self {
        let (rd, wr) = stream.into_split();
        let (to_wire, to_wire_rx) = mpsc::channel(QUEUE);
        let (from_wire_tx, from_wire) = mpsc::channel(QUEUE);
        tokio::spawn(write_delayed(to_wire_rx, wr, profile.cut.clone()));
        tokio::spawn(read_timed(rd, from_wire_tx, profile.latency, profile.remote_uplink.clone(), profile.cut));
        Delayed {
            to_wire,
            from_wire,
            reading: None,
            timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
            latency: profile.latency,
            uplink: profile.local_uplink,
        }
    }
}

/// Resolves when the link is cut; never if it cannot be.
async fn cut_signal(cut: &mut Option<watch::Receiver<bool>>) {
    if let Some(c) = cut
        && c.wait_for(|v| *v).await.is_ok()
    {
        return;
    }
    std::future::pending::<()>().await
}

/// Writes each chunk at its time. Ends (closing the write side) when the connection is closed or the
/// link cut.
async fn write_delayed(
    mut rx: mpsc::Receiver<Timed>,
    mut wr: tokio::net::tcp::OwnedWriteHalf,
    mut cut: Option<watch::Receiver<bool>>,
) {
    loop {
        let next = tokio::select! {
            next = rx.next() => next,
            _ = cut_signal(&mut cut) => return,
        };
        let Some((at, chunk)) = next else {
            let _ = wr.shutdown().await;
            return;
        };
        tokio::select! {
            result = async {
                tokio::time::sleep_until(at).await;
                wr.write_all(&chunk).await
            } => if result.is_err() { return },
            _ = cut_signal(&mut cut) => return,
        }
    }
}

/// Reads the socket and stamps each chunk with the time it may be read.
async fn read_timed(
    mut rd: tokio::net::tcp::OwnedReadHalf,
    mut tx: mpsc::Sender<io::Result<Timed>>,
    latency: Duration,
    uplink: Option<Arc<Uplink>>,
    mut cut: Option<watch::Receiver<bool>>,
) {
    let mut buf = vec![0u8; CHUNK];
    loop {
        let read = tokio::select! {
            read = rd.read(&mut buf) => read,
            _ = cut_signal(&mut cut) => Err(io::Error::new(io::ErrorKind::ConnectionReset, "link cut")),
        };
        let item = match read {
            Ok(0) => return,
            Ok(n) => Ok((uplink.as_ref().map_or_else(Instant::now, |u| u.send(n)) + latency, buf[..n].to_vec())),
            Err(e) => Err(e),
        };
        let last = item.is_err();
        let sent = tokio::select! {
            sent = tx.send(item) => sent.is_ok(),
            _ = cut_signal(&mut cut) => false,
        };
        if last || !sent {
            return;
        }
    }
}

impl Delayed {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        loop {
            if let Some((at, data, pos)) = &mut self.reading {
                if Instant::now() < *at {
                    self.timer.as_mut().reset(*at);
                    ready!(self.timer.as_mut().poll(cx));
                }
                let n = (data.len() - *pos).min(buf.len());
                buf[..n].copy_from_slice(&data[*pos..*pos + n]);
                *pos += n;
                if *pos == data.len() {
                    self.reading = None;
                }
                return Poll::Ready(Ok(n));
            }
            match ready!(self.from_wire.poll_next_unpin(cx)) {
                None => return Poll::Ready(Ok(0)),
                Some(Err(e)) => return Poll::Ready(Err(e)),
                Some(Ok((at, data))) => self.reading = Some((at, data, 0)),
            }
        }
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        ready!(self.to_wire.poll_ready(cx)).map_err(|_| broken())?;
        let n = buf.len().min(CHUNK);
        let at = self.uplink.as_ref().map_or_else(Instant::now, |u| u.send(n)) + self.latency;
        self.to_wire.start_send((at, buf[..n].to_vec())).map_err(|_| broken())?;
        Poll::Ready(Ok(n))
    }
}

impl AsyncRead for Shaped {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let n = ready!(match &mut this.inner {
            Inner::Direct(s) => Pin::new(s).poll_read(cx, buf),
            Inner::Delayed(d) => d.poll_read(cx, buf),
        })?;
        this.traffic.received.fetch_add(n as u64, Ordering::Relaxed);
        Poll::Ready(Ok(n))
    }
}

impl AsyncWrite for Shaped {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let n = ready!(match &mut this.inner {
            Inner::Direct(s) => Pin::new(s).poll_write(cx, buf),
            Inner::Delayed(d) => d.poll_write(cx, buf),
        })?;
        this.traffic.sent.fetch_add(n as u64, Ordering::Relaxed);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.inner {
            Inner::Direct(s) => Pin::new(s).poll_flush(cx),
            // Queued chunks are on their way: the writer task sends them at their time.
            Inner::Delayed(_) => Poll::Ready(Ok(())),
        }
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.inner {
            Inner::Direct(s) => Pin::new(s).poll_close(cx),
            Inner::Delayed(d) => {
                // The writer task sends what is queued, then closes the write side.
                d.to_wire.close_channel();
                Poll::Ready(Ok(()))
            }
        }
    }
}

/// A TCP transport that dials from a fresh port. libp2p reuses the listening port for outgoing
/// connections, so a link cut and healed would dial again with the same four addresses and ports as
/// the connection that was just torn down, whose remains (TIME_WAIT, CLOSE_WAIT) make the new
/// connection hang; a real partition ends with time-outs on both sides, not this.
#[derive(Debug)]
pub(crate) struct FreshPorts<T>(pub(crate) T);

impl<T: libp2p::Transport + Unpin> libp2p::Transport for FreshPorts<T> {
    type Output = T::Output;
    type Error = T::Error;
    type ListenerUpgrade = T::ListenerUpgrade;
    type Dial = T::Dial;

    fn listen_on(
        &mut self,
        id: libp2p::core::transport::ListenerId,
        addr: Multiaddr,
    ) -> Result<(), libp2p::TransportError<Self::Error>> {
        self.0.listen_on(id, addr)
    }

    fn remove_listener(&mut self, id: libp2p::core::transport::ListenerId) -> bool {
        self.0.remove_listener(id)
    }

    fn dial(
        &mut self,
        addr: Multiaddr,
        opts: libp2p::core::transport::DialOpts,
    ) -> Result<Self::Dial, libp2p::TransportError<Self::Error>> {
        let opts = libp2p::core::transport::DialOpts { port_use: libp2p::core::transport::PortUse::New, ..opts };
        self.0.dial(addr, opts)
    }

    fn poll(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<libp2p::core::transport::TransportEvent<Self::ListenerUpgrade, Self::Error>> {
        Pin::new(&mut self.get_mut().0).poll(cx)
    }
}

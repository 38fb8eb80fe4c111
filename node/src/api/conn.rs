//! The API's connections: at most [`Connections::max`] open at once, and none left idle (nothing
//! read or written) for longer than [`Connections::idle`].
//!
//! Why: the request limits (in flight, body size, timeout) bound work, not sockets. Before this a
//! local program could open connections and leave them idle, each holding a socket and a task for
//! as long as it liked. Past the cap the listener stops accepting, so new connections wait in the
//! kernel's backlog until one closes; the idle timeout is what makes one close.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// The bounds on the API's connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connections {
    /// Connections open at once.
    pub max: usize,
    /// How long a connection may go without reading or writing a byte. Longer than the request
    /// timeout (a request that hangs is answered first) and than the event stream's keep-alive
    /// (a quiet stream still writes).
    pub idle: Duration,
}

impl Default for Connections {
    fn default() -> Self {
        Connections { max: 256, idle: Duration::from_secs(120) }
    }
}

/// A TCP listener that holds a permit for every connection it hands out.
#[derive(Debug)]
pub(crate) struct Listener {
    inner: TcpListener,
    permits: Arc<Semaphore>,
    idle: Duration,
}

impl Listener {
    pub(crate) fn new(inner: TcpListener, bounds: Connections) -> Self {
        Listener { inner, permits: Arc::new(Semaphore::new(bounds.max.max(1))), idle: bounds.idle }
    }
}

impl axum::serve::Listener for Listener {
    type Io = Conn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Conn, SocketAddr) {
        if self.permits.available_permits() == 0 {
            tracing::warn!("the API has as many connections open as it allows: new ones wait");
        }
        // The semaphore is never closed: `ok()` only drops an error that cannot happen.
        let permit = Arc::clone(&self.permits).acquire_owned().await.ok();
        let (io, addr) = axum::serve::Listener::accept(&mut self.inner).await;
        (Conn::new(io, permit, self.idle), addr)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// One connection: its permit goes back when it is dropped; reading fails once it has been idle
/// for too long, and the server then closes it.
#[derive(Debug)]
pub(crate) struct Conn {
    io: TcpStream,
    _permit: Option<OwnedSemaphorePermit>,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl Conn {
    fn new(io: TcpStream, permit: Option<OwnedSemaphorePermit>, idle: Duration) -> Self {
        Conn { io, _permit: permit, idle, deadline: Box::pin(tokio::time::sleep(idle)) }
    }

    /// Something moved: the idle clock starts again.
    fn touch(&mut self) {
        let at = Instant::now() + self.idle;
        self.deadline.as_mut().reset(at);
    }

    /// Whether the idle clock ran out (polled when the socket has nothing to give, so that the
    /// timer wakes the connection's task).
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        self.deadline.as_mut().poll(cx).is_ready()
    }
}

fn idle_error() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "the API connection was idle for too long")
}

impl AsyncRead for Conn {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.touch();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending if this.expired(cx) => Poll::Ready(Err(idle_error())),
            other => other,
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.touch();
        }
        r
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

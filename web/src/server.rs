//! The accept loop: TCP → TLS (bounded handshake) → HTTP/1.1 or HTTP/2 by ALPN → the
//! request pipeline of [`crate::middleware`]. Connections are capped, idle ones are
//! closed, and shutdown stops accepting, lets in-flight requests finish within a grace
//! period, then drops what is left.

use crate::middleware::{self, LimitedBody, RequestLimits};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use kopa_config::ServerConfig;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tower_service::Service;
use warp::reply::Response;

/// Limits and timeouts of the edge.
#[derive(Debug, Clone, Copy)]
pub struct EdgeSettings {
    /// Largest request body.
    pub max_body_bytes: u64,
    /// Largest upload (`POST …/attachments`); see `RequestLimits`.
    pub upload_max_body_bytes: u64,
    /// Time to receive a request head (also bounds idle HTTP/1.1 keep-alive).
    pub header_read_timeout: Duration,
    /// Time to complete the TLS handshake.
    pub tls_handshake_timeout: Duration,
    /// Time to read a body and produce the response head.
    pub request_timeout: Duration,
    /// A connection with no request in flight for this long is closed.
    pub idle_timeout: Duration,
    /// How long shutdown waits for in-flight requests.
    pub shutdown_grace: Duration,
    /// Most connections open at once; beyond it new ones wait in the kernel's backlog.
    pub max_connections: u32,
}

impl EdgeSettings {
    /// The settings of the `[server]` section.
    pub fn from_config(c: &ServerConfig) -> Self {
        Self {
            max_body_bytes: c.max_body_bytes,
            upload_max_body_bytes: c.max_body_bytes,
            header_read_timeout: Duration::from_secs(c.header_read_timeout_secs),
            tls_handshake_timeout: Duration::from_secs(c.tls_handshake_timeout_secs),
            request_timeout: Duration::from_secs(c.request_timeout_secs),
            idle_timeout: Duration::from_secs(c.keep_alive_secs),
            shutdown_grace: Duration::from_secs(c.shutdown_grace_secs),
            max_connections: c.max_connections,
        }
    }
}

/// Why the listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Binding the address failed (in use, no permission, no such address).
    #[error("Cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// What the accept loop did by the time it stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeSummary {
    /// Connections still open when the grace period ran out (then dropped).
    pub dropped_connections: usize,
}

/// A bound, not yet serving, listener.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    local_addr: SocketAddr,
}

impl Server {
    /// Binds `addr`; port 0 picks a free port.
    pub async fn bind(addr: SocketAddr) -> Result<Self, ServeError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Bind { addr, source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| ServeError::Bind { addr, source })?;
        Ok(Self {
            listener,
            local_addr,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` resolves, then drains.
    pub async fn serve<S>(
        self,
        service: S,
        tls: Arc<rustls::ServerConfig>,
        settings: EdgeSettings,
        shutdown: impl Future<Output = ()>,
    ) -> ServeSummary
    where
        S: Service<http::Request<LimitedBody<Incoming>>, Response = Response, Error = Infallible>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send,
    {
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        let permits = Arc::new(Semaphore::new(settings.max_connections as usize));
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut connections = JoinSet::new();
        tokio::pin!(shutdown);

        loop {
            // Reap finished connections so the set does not grow with the server's uptime.
            while connections.try_join_next().is_some() {}
            let permit = tokio::select! {
                () = &mut shutdown => break,
                p = permits.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break,
                },
            };
            let (tcp, peer) = tokio::select! {
                () = &mut shutdown => break,
                accepted = self.listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let service = service.clone();
            let stop_rx = stop_rx.clone();
            connections.spawn(async move {
                let _permit = permit;
                serve_connection(tcp, peer, acceptor, service, settings, stop_rx).await;
            });
        }

        drop(self.listener);
        let _ = stop_tx.send(true);
        let drained = tokio::time::timeout(settings.shutdown_grace, async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        let dropped_connections = if drained.is_ok() {
            0
        } else {
            let left = connections.len();
            // Abort and wait, so nothing a connection holds (service handles, database
            // references) outlives the server.
            connections.shutdown().await;
            left
        };
        ServeSummary {
            dropped_connections,
        }
    }
}

/// Request activity of one connection, for the idle timeout.
#[derive(Debug)]
struct Activity {
    born: Instant,
    in_flight: AtomicUsize,
    last_done_ms: AtomicU64,
}

impl Activity {
    fn idle_for(&self) -> Option<Duration> {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return None;
        }
        let last = Duration::from_millis(self.last_done_ms.load(Ordering::SeqCst));
        Some(self.born.elapsed().saturating_sub(last))
    }
}

/// Counts a request as in flight until dropped, so a request abandoned mid-way (an HTTP/2
/// stream reset drops its future) still ends its count.
struct InFlight {
    activity: Arc<Activity>,
    /// The process-wide count (`kopa_core::load`), which the store's commits consult.
    _process: kopa_core::load::Request,
}

impl InFlight {
    fn start(activity: Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::SeqCst);
        Self {
            activity,
            _process: kopa_core::load::Request::start(),
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let now = u64::try_from(self.activity.born.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.activity.last_done_ms.store(now, Ordering::SeqCst);
        self.activity.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn serve_connection<S>(
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    acceptor: tokio_rustls::TlsAcceptor,
    service: S,
    settings: EdgeSettings,
    mut stop_rx: watch::Receiver<bool>,
) where
    S: Service<http::Request<LimitedBody<Incoming>>, Response = Response, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send,
{
    let tls = match tokio::time::timeout(settings.tls_handshake_timeout, acceptor.accept(tcp)).await
    {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::debug!(peer = %peer.ip(), error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(peer = %peer.ip(), "TLS handshake timed out");
            return;
        }
    };
    let limits = RequestLimits {
        max_body_bytes: settings.max_body_bytes,
        upload_max_body_bytes: settings.upload_max_body_bytes,
        request_timeout: settings.request_timeout,
    };
    let activity = Arc::new(Activity {
        born: Instant::now(),
        in_flight: AtomicUsize::new(0),
        last_done_ms: AtomicU64::new(0),
    });
    let svc_activity = activity.clone();
    let svc = hyper::service::service_fn(move |req: http::Request<Incoming>| {
        let service = service.clone();
        let guard = InFlight::start(svc_activity.clone());
        async move {
            let resp = middleware::handle(service, peer, limits, req).await;
            drop(guard);
            Ok::<_, Infallible>(resp)
        }
    });

    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout)
        .keep_alive(true)
        .max_buf_size(64 * 1024);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(128)
        .max_header_list_size(64 * 1024)
        .keep_alive_interval(Some(settings.idle_timeout))
        .keep_alive_timeout(Duration::from_secs(20));
    let conn = builder.serve_connection(TokioIo::new(tls), svc);
    tokio::pin!(conn);
    let mut closing = false;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            res = conn.as_mut() => {
                if let Err(e) = res {
                    tracing::debug!(peer = %peer.ip(), error = %e, "connection ended with an error");
                }
                break;
            }
            _ = stop_rx.changed(), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            _ = tick.tick(), if !closing => {
                if activity.idle_for().is_some_and(|idle| idle >= settings.idle_timeout) {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
        }
    }
}

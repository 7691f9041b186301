//! One LDAP server of a directory: how connections to it are opened (TCP_NODELAY,
//! TLS or StartTLS with the directory's CA, the service bind), its two small
//! connection pools, and whether it is in back-off after a failure.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use kopa_config::{LdapUrl, Secret};
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, StdStream};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::time::{Instant, timeout};

/// How connections to the servers of one directory are opened.
#[derive(Debug)]
pub(super) struct Connector {
    pub tls: Arc<rustls::ClientConfig>,
    pub starttls: bool,
    pub connect_timeout: Duration,
    pub operation_timeout: Duration,
    pub bind_dn: String,
    pub bind_password: Secret,
}

/// What a pooled connection is for. Search connections are bound as the service
/// account; bind connections carry user binds only, so a user's identity never does a
/// search and the service identity is never lost to a user bind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Purpose {
    Search,
    Bind,
}

/// Why a server could not answer; `mark_down` puts it in back-off.
#[derive(Debug)]
pub(super) struct Failure {
    pub reason: String,
    pub mark_down: bool,
}

impl Failure {
    pub fn down(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            mark_down: true,
        }
    }

    pub fn refused(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            mark_down: false,
        }
    }
}

/// One server and its pools.
#[derive(Debug)]
pub(super) struct Server {
    /// The URL as configured, for logs and audit records.
    pub url: String,
    target: LdapUrl,
    connector: Arc<Connector>,
    search: Pool,
    bind: Pool,
    retry_after: Duration,
    down_until: Mutex<Option<Instant>>,
}

/// Idle connections plus a cap on how many exist at once.
#[derive(Debug)]
struct Pool {
    idle: Mutex<Vec<Ldap>>,
    permits: Semaphore,
}

impl Pool {
    fn new(size: usize) -> Self {
        Self {
            idle: Mutex::new(Vec::with_capacity(size)),
            permits: Semaphore::new(size),
        }
    }

    /// An idle connection whose driver is still running.
    fn take(&self) -> Option<Ldap> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some(mut ldap) = idle.pop() {
            if !ldap.is_closed() {
                return Some(ldap);
            }
        }
        None
    }

    fn put(&self, ldap: Ldap) {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(ldap);
    }

    /// Drops every idle connection (dropping the last handle closes it).
    fn clear(&self) {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

impl Server {
    pub fn new(
        url: String,
        target: LdapUrl,
        connector: Arc<Connector>,
        pool_size: usize,
        retry_after: Duration,
    ) -> Self {
        Self {
            url,
            target,
            connector,
            search: Pool::new(pool_size),
            bind: Pool::new(pool_size),
            retry_after,
            down_until: Mutex::new(None),
        }
    }

    /// When the back-off of this server ends, if it is in back-off at `now`.
    pub fn down_until(&self, now: Instant) -> Option<Instant> {
        let until = *self
            .down_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        until.filter(|until| *until > now)
    }

    /// Puts the server in back-off for `retry_after` and drops its idle connections.
    pub fn mark_down(&self) {
        *self
            .down_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now() + self.retry_after);
        self.search.clear();
        self.bind.clear();
    }

    /// Ends a back-off; true when the server had been marked down.
    pub fn mark_up(&self) -> bool {
        self.down_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .is_some()
    }

    /// Runs `op` on a pooled connection for `purpose` within the operation timeout.
    /// A reused connection that fails is assumed stale (the server closed it, or
    /// restarted): the idle ones are dropped and `op` is tried once more on a fresh
    /// connection. A connection that saw an error or timeout is never reused.
    pub async fn run<T, F, Fut>(&self, purpose: Purpose, op: F) -> Result<T, Failure>
    where
        F: Fn(Ldap) -> Fut,
        Fut: Future<Output = ldap3::result::Result<T>>,
    {
        let pool = match purpose {
            Purpose::Search => &self.search,
            Purpose::Bind => &self.bind,
        };
        let op_timeout = self.connector.operation_timeout;
        // The permit caps open connections per pool; it is held until this op ends.
        let _permit = match timeout(op_timeout, pool.permits.acquire()).await {
            Ok(Ok(permit)) => permit,
            _ => return Err(Failure::refused("every pooled connection stayed busy")),
        };
        let mut reused = pool.take();
        loop {
            let was_reused = reused.is_some();
            let ldap = match reused.take() {
                Some(ldap) => ldap,
                None => self.open(purpose).await?,
            };
            match timeout(op_timeout, op(ldap.clone())).await {
                Ok(Ok(value)) => {
                    pool.put(ldap);
                    return Ok(value);
                }
                Ok(Err(e)) if was_reused => {
                    tracing::debug!(url = %self.url, error = %e, "Dropping stale LDAP connections");
                    pool.clear();
                }
                Ok(Err(e)) => return Err(Failure::down(format!("LDAP operation failed: {e}"))),
                Err(_) => return Err(Failure::down("LDAP operation timed out")),
            }
        }
    }

    /// Opens a connection; a search connection is also bound as the service account.
    async fn open(&self, purpose: Purpose) -> Result<Ldap, Failure> {
        let c = &self.connector;
        let ldap = timeout(c.connect_timeout, self.connect())
            .await
            .map_err(|_| Failure::down("connecting timed out"))??;
        if purpose == Purpose::Search {
            let mut service = ldap.clone();
            let bind = service.simple_bind(&c.bind_dn, c.bind_password.expose());
            let result = timeout(c.operation_timeout, bind)
                .await
                .map_err(|_| Failure::down("service account bind timed out"))?
                .map_err(|e| Failure::down(format!("service account bind failed: {e}")))?;
            if result.rc != 0 {
                // A wrong service password is the operator's problem, not the server's.
                return Err(Failure::refused(format!(
                    "service account bind refused (result code {})",
                    result.rc
                )));
            }
        }
        Ok(ldap)
    }

    /// TCP (with TCP_NODELAY: ldap3 leaves Nagle on, which stalls the first request
    /// after the TLS handshake by ~40 ms), then LDAPS or StartTLS via ldap3.
    async fn connect(&self) -> Result<Ldap, Failure> {
        let c = &self.connector;
        let t = &self.target;
        let tcp = TcpStream::connect((t.host.as_str(), t.port))
            .await
            .map_err(|e| Failure::down(format!("cannot connect: {e}")))?;
        let std = tcp
            .set_nodelay(true)
            .and_then(|()| tcp.into_std())
            .map_err(|e| Failure::down(format!("cannot set up the socket: {e}")))?;
        let mut settings = LdapConnSettings::new()
            .set_std_stream(StdStream::Tcp(std))
            .set_config(c.tls.clone());
        if !t.tls && c.starttls {
            settings = settings.set_starttls(true);
        }
        let (conn, ldap) = LdapConnAsync::with_settings(settings, &self.url)
            .await
            .map_err(|e| Failure::down(format!("cannot establish TLS: {e}")))?;
        let url = self.url.clone();
        tokio::spawn(async move {
            if let Err(e) = conn.drive().await {
                tracing::debug!(url = %url, error = %e, "LDAP connection ended");
            }
        });
        Ok(ldap)
    }
}

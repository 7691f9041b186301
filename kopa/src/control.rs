//! The local control socket, `<data_dir>/control.sock` (mode 0600): how `kopa backup` and
//! `kopa admin …` reach a running appliance, whose databases are locked to it. Only a
//! process of the same user (root or the service account) can connect; there is no
//! network path to it. One JSON request per line, one JSON reply per line.
//!
//! The same [`execute`] runs the operations against databases opened directly when no
//! appliance is running, so the CLI behaves the same either way.

use crate::StartError;
use crate::services::Services;
use kopa_config::Secret;
use kopa_core::{Role, TenantId};
use kopa_idp::{IdpError, NewAccount};
use kopa_web::ReloadableCert;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinHandle;

/// Longest request line accepted.
const MAX_LINE: usize = 64 * 1024;

/// One operation.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// A consistent snapshot of every database into `dest`.
    Backup {
        /// Target directory (must not exist or be empty).
        dest: PathBuf,
    },
    /// Creates a local account; the reply carries a generated password once.
    AddLocalAccount {
        /// Login name.
        username: String,
        /// Display name.
        #[serde(default)]
        display_name: String,
        /// Tenant, none for platform accounts.
        #[serde(default)]
        tenant: Option<TenantId>,
        /// Roles.
        roles: Vec<Role>,
    },
    /// Lists local accounts.
    ListLocalAccounts,
    /// Sets a new generated password; the reply carries it once.
    ResetPassword {
        /// Login name.
        username: String,
    },
    /// Re-reads the TLS certificate (as SIGHUP does).
    ReloadTls,
}

/// The reply to one request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reply {
    /// Whether the operation succeeded.
    pub ok: bool,
    /// The result on success.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub result: Value,
    /// One line on failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Reply {
    fn ok(result: Value) -> Self {
        Self {
            ok: true,
            result,
            error: None,
        }
    }

    fn err(message: impl Into<String>) -> Self {
        Self {
            ok: false,
            result: Value::Null,
            error: Some(message.into()),
        }
    }
}

fn idp_reply(e: &IdpError) -> Reply {
    Reply::err(e.to_string())
}

/// Runs one operation; `tls` is absent when no appliance is running.
pub async fn execute(services: &Services, tls: Option<&ReloadableCert>, req: Request) -> Reply {
    match req {
        Request::Backup { dest } => {
            let stores = services.stores.clone();
            let now = kopa_core::SystemClock;
            let done = tokio::task::spawn_blocking(move || {
                kopa_store::backup::backup(
                    &stores,
                    &dest,
                    kopa_core::VERSION,
                    kopa_core::Clock::now_millis(&now),
                )
            })
            .await;
            match done {
                Ok(Ok(manifest)) => Reply::ok(json!(manifest)),
                Ok(Err(e)) => Reply::err(e.to_string()),
                Err(_) => Reply::err("Backup task failed"),
            }
        }
        Request::AddLocalAccount {
            username,
            display_name,
            tenant,
            roles,
        } => {
            let new = NewAccount {
                username,
                display_name,
                tenant,
                roles,
                password: None,
            };
            match services.accounts.create(new).await {
                Ok((summary, password)) => Reply::ok(json!({
                    "account": summary,
                    "password": password.as_ref().map(Secret::expose),
                })),
                Err(e) => idp_reply(&e),
            }
        }
        Request::ListLocalAccounts => match services.accounts.list().await {
            Ok(list) => Reply::ok(json!(list)),
            Err(e) => idp_reply(&e),
        },
        Request::ResetPassword { username } => {
            match services.accounts.reset_password(&username).await {
                Ok(password) => {
                    Reply::ok(json!({"username": username, "password": password.expose()}))
                }
                Err(e) => idp_reply(&e),
            }
        }
        Request::ReloadTls => match tls {
            Some(tls) => match tls.reload() {
                Ok(info) => Reply::ok(json!({"sha256_fingerprint": info.sha256_fingerprint})),
                Err(e) => Reply::err(e.to_string()),
            },
            None => Reply::err("Kopa is not running"),
        },
    }
}

/// The control socket's path under `data_dir`.
pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join("control.sock")
}

/// The listening control socket of a running appliance.
#[derive(Debug)]
pub struct ControlServer {
    path: PathBuf,
    task: JoinHandle<()>,
}

impl ControlServer {
    /// Listens on `<data_dir>/control.sock`, replacing a stale socket file.
    pub fn start(
        data_dir: &Path,
        services: Services,
        tls: Arc<ReloadableCert>,
    ) -> Result<Self, StartError> {
        let path = socket_path(data_dir);
        let fail = |e: std::io::Error| StartError::Control {
            path: path.clone(),
            reason: e.to_string(),
        };
        // A leftover file from a killed process; the databases' locks already proved no
        // other appliance uses this data directory.
        if path.exists() {
            std::fs::remove_file(&path).map_err(fail)?;
        }
        let listener = UnixListener::bind(&path).map_err(fail)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(fail)?;
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let services = services.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    if let Err(e) = serve_client(stream, &services, &tls).await {
                        tracing::debug!(error = %e, "control client ended with an error");
                    }
                });
            }
        });
        Ok(Self { path, task })
    }

    /// Stops listening and removes the socket file.
    pub async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
        let _ = std::fs::remove_file(&self.path);
    }
}

async fn serve_client(
    stream: UnixStream,
    services: &Services,
    tls: &ReloadableCert,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    while let Some(line) = lines.next_line().await? {
        let reply = if line.len() > MAX_LINE {
            Reply::err("Request too long")
        } else {
            match serde_json::from_str::<Request>(&line) {
                Ok(req) => execute(services, Some(tls), req).await,
                Err(e) => Reply::err(format!("Malformed request: {e}")),
            }
        };
        let mut out = serde_json::to_vec(&reply).map_err(std::io::Error::other)?;
        out.push(b'\n');
        write.write_all(&out).await?;
    }
    Ok(())
}

/// A client of a running appliance's control socket.
#[derive(Debug)]
pub struct ControlClient {
    lines: tokio::io::Lines<BufReader<tokio::net::unix::OwnedReadHalf>>,
    write: tokio::net::unix::OwnedWriteHalf,
}

impl ControlClient {
    /// Connects; `Ok(None)` when no appliance listens there.
    pub async fn connect(data_dir: &Path) -> std::io::Result<Option<Self>> {
        match UnixStream::connect(socket_path(data_dir)).await {
            Ok(stream) => {
                let (read, write) = stream.into_split();
                Ok(Some(Self {
                    lines: BufReader::new(read).lines(),
                    write,
                }))
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Sends one request and waits for its reply.
    pub async fn call(&mut self, req: &Request) -> std::io::Result<Reply> {
        let mut out = serde_json::to_vec(req).map_err(std::io::Error::other)?;
        out.push(b'\n');
        self.write.write_all(&out).await?;
        let line = self
            .lines
            .next_line()
            .await?
            .ok_or_else(|| std::io::Error::other("control socket closed"))?;
        serde_json::from_str(&line).map_err(std::io::Error::other)
    }
}

//! The local control socket, `<data_dir>/control.sock` (mode 0600): how `kopa backup` and
//! `kopa admin …` reach a running appliance, whose databases are locked to it. Only a
//! process of the same user (root or the service account) can connect; there is no
//! network path to it. One JSON request per line, one JSON reply per line.
//!
//! The same [`execute`] runs the operations against databases opened directly when no
//! appliance is running, so the CLI behaves the same either way.
//!
//! Every change made here, and every export of the audit log, is itself audited with the
//! actor `control-socket`: whoever can reach the socket is the appliance's operator.

use crate::StartError;
use crate::services::Services;
use kopa_config::Secret;
use kopa_core::{Role, TenantId};
use kopa_idp::{IdpError, NewAccount};
use kopa_store::audit::{AuditEvent, Category, ExportFormat, Outcome};
use kopa_web::ReloadableCert;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
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
    /// Checks the whole audit chain; the reply is a `VerifyReport`.
    AuditVerify,
    /// Fills an empty portal with demo data; the reply is a `SeedReport` (with the demo
    /// accounts' generated passwords, once).
    DemoSeed,
    /// One page of an audit export of `[since_ms, until_ms)`; the reply carries `data`,
    /// `records` and `next_after_seq` (send it back as `after_seq` until it is null).
    AuditExport {
        /// Start, inclusive (ms since the epoch); none for the first record.
        #[serde(default)]
        since_ms: Option<u64>,
        /// End, exclusive; none for the last record.
        #[serde(default)]
        until_ms: Option<u64>,
        /// `jsonl` or `csv`.
        format: ExportFormat,
        /// Cursor from the previous page; none on the first.
        #[serde(default)]
        after_seq: Option<u64>,
    },
}

/// Records per export page: about 1 MB of JSON lines.
const EXPORT_PAGE: u64 = 2000;

/// Who acts through the control socket, as the audit log records it.
const ACTOR: &str = "control-socket";

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

fn admin_event(category: Category, action: &str, outcome: Outcome) -> AuditEvent {
    AuditEvent::new(category, action, outcome)
        .user_resolved(ACTOR)
        .method(ACTOR)
}

/// Appends `event`; `Err` carries the reply to send instead of the operation's own, since
/// no answer may leave before its audit record is durable.
async fn audit(services: &Services, event: AuditEvent, done: &str) -> Result<(), Reply> {
    match services.audit.append(event).await {
        Ok(_) => Ok(()),
        Err(e) => {
            tracing::error!(error = %e, "control operation not audited");
            Err(Reply::err(format!(
                "{done}, but its audit record could not be written: {e}"
            )))
        }
    }
}

/// Replies with `reply` once `event` is durable.
async fn audited(services: &Services, event: AuditEvent, done: &str, reply: Reply) -> Reply {
    match audit(services, event, done).await {
        Ok(()) => reply,
        Err(instead) => instead,
    }
}

/// Runs one operation; `tls` is absent when no appliance is running.
pub async fn execute(services: &Services, tls: Option<&ReloadableCert>, req: Request) -> Reply {
    match req {
        Request::Backup { dest } => {
            let stores = services.stores.clone();
            let keys = services.data_dir.join("keys");
            let now = kopa_core::SystemClock;
            let shown = dest.display().to_string();
            let done = tokio::task::spawn_blocking(move || {
                // The signing keys, the SAML pairwise secret and the audit key go along:
                // without them a restore changes every identifier and signature.
                kopa_store::backup::backup_with(
                    &stores,
                    &dest,
                    kopa_core::VERSION,
                    kopa_core::Clock::now_millis(&now),
                    &[kopa_store::backup::ExtraDir {
                        name: "keys",
                        source: &keys,
                    }],
                )
            })
            .await;
            let event = admin_event(Category::Process, "backup-taken", Outcome::Success)
                .detail("dest", shown);
            match done {
                Ok(Ok(manifest)) => {
                    audited(services, event, "Backup taken", Reply::ok(json!(manifest))).await
                }
                Ok(Err(e)) => {
                    let event = AuditEvent {
                        outcome: Outcome::Failure,
                        ..event
                    };
                    audited(services, event, "Backup failed", Reply::err(e.to_string())).await
                }
                Err(_) => Reply::err("Backup task failed"),
            }
        }
        Request::AddLocalAccount {
            username,
            display_name,
            tenant,
            roles,
        } => {
            let event = admin_event(Category::Iam, "local-account-created", Outcome::Success)
                .tenant(tenant.clone())
                .detail("target_user", username.clone())
                .detail(
                    "roles",
                    roles
                        .iter()
                        .map(|r| r.as_str())
                        .collect::<Vec<_>>()
                        .join(","),
                );
            let new = NewAccount {
                username,
                display_name,
                tenant,
                roles,
                password: None,
            };
            match services.accounts.create(new).await {
                Ok((summary, password)) => {
                    let reply = Reply::ok(json!({
                        "account": summary,
                        "password": password.as_ref().map(Secret::expose),
                    }));
                    audited(services, event, "Account created", reply).await
                }
                Err(e) => {
                    let event = AuditEvent {
                        outcome: Outcome::Failure,
                        ..event
                    }
                    .reason("rejected");
                    audited(services, event, "Account not created", idp_reply(&e)).await
                }
            }
        }
        Request::DemoSeed => {
            let now = kopa_core::Clock::now_millis(&kopa_core::SystemClock);
            match crate::demo::seed(services, now).await {
                Ok(report) => {
                    let event = admin_event(Category::Configuration, "demo-seed", Outcome::Success)
                        .detail("cases", report.cases.to_string())
                        .detail(
                            "accounts",
                            report
                                .accounts
                                .iter()
                                .map(|(u, _)| u.as_str())
                                .collect::<Vec<_>>()
                                .join(","),
                        );
                    audited(
                        services,
                        event,
                        "Demo data seeded",
                        Reply::ok(json!(report)),
                    )
                    .await
                }
                Err(e) => Reply::err(e),
            }
        }
        Request::ListLocalAccounts => match services.accounts.list().await {
            Ok(list) => Reply::ok(json!(list)),
            Err(e) => idp_reply(&e),
        },
        Request::ResetPassword { username } => {
            let event = admin_event(Category::Iam, "password-reset", Outcome::Success)
                .detail("target_user", username.clone());
            match services.accounts.reset_password(&username).await {
                Ok(password) => {
                    let reply =
                        Reply::ok(json!({"username": username, "password": password.expose()}));
                    audited(services, event, "Password reset", reply).await
                }
                Err(e) => {
                    let event = AuditEvent {
                        outcome: Outcome::Failure,
                        ..event
                    }
                    .reason("rejected");
                    audited(services, event, "Password not reset", idp_reply(&e)).await
                }
            }
        }
        Request::ReloadTls => match tls {
            Some(tls) => {
                let event = admin_event(Category::Configuration, "tls-reloaded", Outcome::Success);
                match tls.reload() {
                    Ok(info) => {
                        let event = event.detail("sha256_fingerprint", &info.sha256_fingerprint);
                        let reply =
                            Reply::ok(json!({"sha256_fingerprint": info.sha256_fingerprint}));
                        audited(services, event, "TLS certificate reloaded", reply).await
                    }
                    Err(e) => {
                        let event = AuditEvent {
                            outcome: Outcome::Failure,
                            ..event
                        };
                        audited(
                            services,
                            event,
                            "TLS reload failed",
                            Reply::err(e.to_string()),
                        )
                        .await
                    }
                }
            }
            None => Reply::err("Kopa is not running"),
        },
        Request::AuditVerify => audit_verify(services).await,
        Request::AuditExport {
            since_ms,
            until_ms,
            format,
            after_seq,
        } => audit_export(services, since_ms, until_ms, format, after_seq).await,
    }
}

async fn audit_verify(services: &Services) -> Reply {
    let report = match services.audit.verify().await {
        Ok(r) => r,
        Err(e) => return Reply::err(e.to_string()),
    };
    let mut event = admin_event(Category::Process, "audit-verified", Outcome::Success)
        .detail("records", report.records.to_string());
    if let Some(b) = &report.broken {
        event = AuditEvent {
            outcome: Outcome::Failure,
            ..event
        }
        .reason("chain_broken")
        .detail("broken_seq", b.seq.to_string());
    }
    audited(
        services,
        event,
        "Audit log verified",
        Reply::ok(json!(report)),
    )
    .await
}

async fn audit_export(
    services: &Services,
    since_ms: Option<u64>,
    until_ms: Option<u64>,
    format: ExportFormat,
    after_seq: Option<u64>,
) -> Reply {
    // Reading the log is access to personal data: recorded once, before the first page.
    if after_seq.is_none() {
        let mut event = admin_event(Category::Process, "audit-exported", Outcome::Success)
            .detail("format", format.to_string());
        for (key, ms) in [("since", since_ms), ("until", until_ms)] {
            if let Some(ms) = ms {
                event = event.detail(key, kopa_store::audit::format_rfc3339_ms(ms));
            }
        }
        if let Err(reply) = audit(services, event, "Export not started").await {
            return reply;
        }
    }
    let store = services.audit.store().clone();
    let page = tokio::task::spawn_blocking(move || {
        kopa_store::audit::export_page(&store, since_ms, until_ms, format, after_seq, EXPORT_PAGE)
    })
    .await;
    match page {
        Ok(Ok(page)) => Reply::ok(json!(page)),
        Ok(Err(e)) => Reply::err(e.to_string()),
        Err(_) => Reply::err("Export task failed"),
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
    stop: tokio::sync::oneshot::Sender<()>,
    audit: kopa_store::AuditLog,
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
        let audit = services.audit.clone();
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let mut clients = tokio::task::JoinSet::new();
            loop {
                while clients.try_join_next().is_some() {}
                let accepted = tokio::select! {
                    _ = &mut stopped => break,
                    a = listener.accept() => a,
                };
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of descriptors and the like: back off rather than spin.
                        tracing::warn!(error = %e, "control socket accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let services = services.clone();
                let tls = tls.clone();
                clients.spawn(async move {
                    if let Err(e) = serve_client(stream, &services, &tls).await {
                        tracing::debug!(error = %e, "control client ended with an error");
                    }
                });
            }
            // Abort and wait for the clients, so none keeps the services (and their
            // databases) open after shutdown.
            clients.shutdown().await;
        });
        Ok(Self {
            path,
            task,
            stop,
            audit,
        })
    }

    /// Stops listening, removes the socket file and closes the audit log. It is the last
    /// step of `Handle::shutdown`, after every HTTP request has ended, so this is where the
    /// audit writer commits what is queued and stops; control clients still connected
    /// get errors from then on.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
        let _ = std::fs::remove_file(&self.path);
        self.audit.close().await;
    }
}

async fn serve_client(
    stream: UnixStream,
    services: &Services,
    tls: &ReloadableCert,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    loop {
        // Read at most one byte past the limit, so a huge line costs bounded memory.
        let mut line = Vec::new();
        let n = (&mut reader)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line)
            .await?;
        if n == 0 {
            break;
        }
        let too_long = line.len() > MAX_LINE;
        let reply = if too_long {
            Reply::err("Request too long")
        } else {
            match serde_json::from_slice::<Request>(&line) {
                Ok(req) => execute(services, Some(tls), req).await,
                Err(e) => Reply::err(format!("Malformed request: {e}")),
            }
        };
        let mut out = serde_json::to_vec(&reply).map_err(std::io::Error::other)?;
        out.push(b'\n');
        write.write_all(&out).await?;
        if too_long {
            break;
        }
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

//! The Kopa appliance: opens every service's storage, prepares keys and the first
//! administrator, and serves them all behind one HTTPS listener. [`start`] is what
//! `kopa serve` runs and what the integration tests start, one appliance per test.

pub mod apps;
pub mod control;
pub mod demo;
pub mod services;
mod tls_files;

use kopa_config::{Config, Secret};
use kopa_core::{Clock, SystemClock};
use kopa_idp::{KeyInfo, SigningKeys};
use kopa_web::{EdgeSettings, Readiness, ReloadableCert, ServeSummary, Server};
use services::Services;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use warp::Filter;

pub use services::SCHEMAS;

/// Every program that embeds the appliance (`kopa`, the benchmarks, the integration tests)
/// allocates through mimalloc: a sign-in makes hundreds of short-lived allocations across
/// the two runtime threads and the writer threads, and glibc's arena locking and chunk
/// consolidation cost about a tenth of the CPU of a sign-in under load (ADR 5).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Why the appliance could not start; each renders as one line naming the problem.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The data directory cannot be created or written.
    #[error("Data directory {path} is not usable: {reason}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The OS's reason.
        reason: String,
    },
    /// The listener could not bind.
    #[error(transparent)]
    Listen(#[from] kopa_web::ServeError),
    /// The TLS certificate or key is unusable.
    #[error(transparent)]
    Tls(#[from] kopa_web::TlsError),
    /// A service database could not be opened.
    #[error("{0}")]
    Store(#[from] kopa_store::StoreError),
    /// The directories could not be set up (unreadable CA or password file, duplicates).
    #[error("Directory configuration: {0}")]
    Directory(#[from] kopa_idp::directory::BuildError),
    /// The audit log refused a record that must be written.
    #[error("Audit log unavailable: {0}")]
    Audit(String),
    /// IdP keys or accounts failed.
    #[error(transparent)]
    Idp(#[from] kopa_idp::IdpError),
    /// A configured secret file could not be read.
    #[error("Cannot read secret file {path}: {reason}")]
    Secret {
        /// The file.
        path: PathBuf,
        /// The OS's reason.
        reason: String,
    },
    /// The OpenID Connect provider could not be set up (a client's secret, a key).
    #[error("OpenID Connect: {0}")]
    Oidc(String),
    /// The SAML identity provider could not be set up (a service provider's metadata, a key).
    #[error("SAML: {0}")]
    Saml(String),
    /// The control socket could not be created.
    #[error("Cannot create control socket {path}: {reason}")]
    Control {
        /// The socket path.
        path: PathBuf,
        /// The OS's reason.
        reason: String,
    },
}

/// What the first start created and must be shown once.
#[derive(Debug)]
pub struct FirstAdmin {
    /// The account's username.
    pub username: String,
    /// The generated password; `None` when it came from `admin_password_file`.
    pub password: Option<Secret>,
}

/// A running appliance.
#[derive(Debug)]
pub struct Handle {
    /// The bound HTTPS address.
    pub addr: SocketAddr,
    /// The data directory.
    pub data_dir: PathBuf,
    /// The TLS certificate in use (reloadable).
    pub tls: Arc<ReloadableCert>,
    /// Whether this start generated the self-signed TLS certificate.
    pub tls_generated: bool,
    /// The IdP signing keys' public facts.
    pub keys: Vec<KeyInfo>,
    /// Set when this start created the first platform administrator.
    pub first_admin: Option<FirstAdmin>,
    /// The security monitor (its schedules stop at shutdown).
    pub monitor: kopa_monitor::Monitor,
    readiness: Readiness,
    stop: oneshot::Sender<()>,
    serving: JoinHandle<ServeSummary>,
    control: control::ControlServer,
    /// For audited operations; dropped (closing the databases) with the handle.
    services: Services,
}

impl Handle {
    /// The portal's case work (for tests and tools in the same process).
    pub fn portal(&self) -> kopa_portal_server::work::CaseWork {
        self.services.portal.clone()
    }

    /// `https://<addr>` of the listener.
    pub fn base_url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// Re-reads the TLS certificate and key (what SIGHUP does), audited like the control
    /// socket's reload. Returns the new fingerprint, or why the old certificate stays.
    pub async fn reload_tls(&self) -> Result<String, String> {
        let reply =
            control::execute(&self.services, Some(&self.tls), control::Request::ReloadTls).await;
        if reply.ok {
            Ok(reply.result["sha256_fingerprint"]
                .as_str()
                .unwrap_or_default()
                .to_owned())
        } else {
            Err(reply.error.unwrap_or_default())
        }
    }

    /// Stops accepting, lets in-flight requests finish within the grace period, then closes
    /// the control socket and every database.
    pub async fn shutdown(self) -> ServeSummary {
        self.readiness.set_draining();
        self.monitor.stop();
        let _ = self.stop.send(());
        let summary = self.serving.await.unwrap_or(ServeSummary {
            dropped_connections: 0,
        });
        self.control.stop().await;
        summary
    }
}

fn prepare_data_dir(path: &Path) -> Result<(), StartError> {
    let fail = |e: std::io::Error| StartError::DataDir {
        path: path.to_owned(),
        reason: e.to_string(),
    };
    kopa_store::fsutil::ensure_private_dir(path).map_err(fail)?;
    // Prove we can write before anything else does: a read-only mount fails here, clearly.
    let probe = path.join(".write-probe");
    std::fs::write(&probe, b"ok").map_err(fail)?;
    std::fs::remove_file(&probe).map_err(fail)?;
    Ok(())
}

/// Starts the appliance described by a validated `config`.
pub async fn start(config: Config) -> Result<Handle, StartError> {
    start_with_clock(config, Arc::new(SystemClock)).await
}

/// [`start`] with a chosen clock.
pub async fn start_with_clock(config: Config, clock: Arc<dyn Clock>) -> Result<Handle, StartError> {
    let server = Server::bind(config.listen_addr()).await?;
    let addr = server.local_addr();
    let data_dir = config.server.data_dir.clone();
    prepare_data_dir(&data_dir)?;

    let (tls, tls_generated) = tls_files::load_or_create(&config, addr)?;
    let services = {
        let (dir, audit) = (data_dir.clone(), config.audit.clone());
        // Opening and migrating databases is blocking file work: keep it off the runtime.
        let clock = clock.clone();
        tokio::task::spawn_blocking(move || Services::open_with(&dir, clock, &audit))
            .await
            .map_err(|e| StartError::DataDir {
                path: data_dir.clone(),
                reason: e.to_string(),
            })??
    };
    let keys = SigningKeys::load_or_generate(&data_dir.join("keys"))?;
    let admin_password = read_secret(config.bootstrap.admin_password_file.as_deref())?;
    let tls_config = tls.server_config()?;
    let control = control::ControlServer::start(&data_dir, services.clone(), tls.clone())?;

    // Last, so that no later failure can swallow the one-time password.
    let first_admin = match services
        .accounts
        .bootstrap_admin(&config.bootstrap.admin_username, admin_password)
        .await
    {
        Ok(Some((summary, password))) => {
            let event = kopa_store::audit::AuditEvent::new(
                kopa_store::audit::Category::Iam,
                "local-account-created",
                kopa_store::audit::Outcome::Success,
            )
            .user_resolved("bootstrap")
            .method("bootstrap")
            .detail("target_user", summary.username.as_str())
            .detail("roles", "platform_admin");
            if let Err(e) = services.audit.append(event).await {
                control.stop().await;
                return Err(StartError::Audit(e.to_string()));
            }
            Some(FirstAdmin {
                username: summary.username,
                password,
            })
        }
        Ok(None) => None,
        Err(e) => {
            control.stop().await;
            return Err(e.into());
        }
    };

    let built = match build_login(&config, &services, clock.clone()).await {
        Ok(mut login) => {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            login.notify_ended(tx);
            let saml = build_saml(&config, &services, &keys, &data_dir, addr, clock.clone()).await;
            match saml {
                Ok(saml) => build_oidc(&config, &services, &keys, addr, clock.clone())
                    .await
                    .map(|oidc| (login, oidc, saml, rx)),
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    };
    let (login, oidc, saml, ended) = match built {
        Ok(parts) => parts,
        Err(e) => {
            control.stop().await;
            return Err(e);
        }
    };
    oidc.spawn_listener(ended);
    oidc.spawn_sweeper(std::time::Duration::from_secs(600));
    let login = Arc::new(login);
    login.spawn_session_sweeper(std::time::Duration::from_secs(600));
    let sso = kopa_web::sso::Sso::new(
        Arc::new(apps::InProcess(oidc.clone())),
        config.session.idle_timeout_secs,
    );
    let portal_api = Arc::new(kopa_portal_server::http::Api {
        work: services.portal.clone(),
        attachment_max_bytes: config.portal.attachment_max_bytes,
        audit: services.audit.clone(),
        sso: sso.clone(),
        app: apps::APPS[0].clone(),
    });
    let handle_services = services.clone();
    let mut probes = services.probes();
    probes.extend(directory_probes(login.directories()));
    let readiness = Readiness::new(probes.clone());
    let monitor =
        match start_monitor(&config, &services, &keys, &tls, probes, clock.clone(), addr).await {
            Ok(m) => m,
            Err(e) => {
                control.stop().await;
                return Err(e);
            }
        };
    let metrics_token = read_secret(config.monitor.metrics_token_file.as_deref())?;
    let monitor_api = Arc::new(kopa_monitor::http::Api {
        monitor: monitor.clone(),
        sso: sso.clone(),
        app: apps::APPS[0].clone(),
        metrics_token,
    });
    login.set_front_channel(saml.clone());
    saml.spawn_refresher();
    let routes = kopa_web::health_routes(readiness.clone())
        .or(kopa_idp::http::routes(login.clone()))
        .unify()
        .or(kopa_idp::saml::http::routes(saml, login.clone()))
        .unify()
        .or(kopa_idp::oidc::http::routes(oidc, login))
        .unify()
        .or(kopa_portal_server::http::routes(portal_api))
        .unify()
        .or(kopa_monitor::http::routes(monitor_api))
        .unify()
        .or(apps::routes(
            &sso,
            apps::PortalUi::load(config.portal.ui_dir.as_deref()),
        ))
        .unify()
        .recover(kopa_web::recover);
    let mut settings = EdgeSettings::from_config(&config.server);
    settings.upload_max_body_bytes = config.portal.attachment_max_bytes;
    let (stop, stopped) = oneshot::channel::<()>();
    let serving = tokio::spawn(async move {
        let summary = server
            .serve(warp::service(routes), tls_config, settings, async {
                let _ = stopped.await;
            })
            .await;
        // The services (and their databases) close when the last request holding them ends.
        drop(services);
        summary
    });

    Ok(Handle {
        addr,
        data_dir,
        keys: keys.infos().into_iter().cloned().collect(),
        tls,
        tls_generated,
        first_admin,
        monitor,
        readiness,
        stop,
        serving,
        control,
        services: handle_services,
    })
}

/// The tenant of the built-in local directory when the configuration names none: the
/// platform's own accounts (the first administrator, break-glass operators).
const PLATFORM_TENANT: &str = "platform";

/// Opens the monitor over its database and the audit log, and starts its schedules.
async fn start_monitor(
    config: &Config,
    services: &Services,
    keys: &SigningKeys,
    tls: &Arc<ReloadableCert>,
    probes: Vec<Arc<dyn kopa_web::ReadinessProbe>>,
    clock: Arc<dyn Clock>,
    addr: SocketAddr,
) -> Result<kopa_monitor::Monitor, StartError> {
    use kopa_monitor::collect::certs::CertSource;
    let m = &config.monitor;
    let email = match &m.email {
        Some(e) => Some((e.clone(), read_secret(e.password_file.as_deref())?)),
        None => None,
    };
    let mut webhooks = Vec::new();
    for w in &m.webhooks {
        let secret = read_secret(Some(&w.secret_file))?.ok_or_else(|| StartError::Secret {
            path: w.secret_file.clone(),
            reason: "empty".into(),
        })?;
        if secret.expose().len() < 16 {
            return Err(StartError::Secret {
                path: w.secret_file.clone(),
                reason: "a webhook secret needs at least 16 bytes".into(),
            });
        }
        webhooks.push((w.clone(), secret));
    }
    let base_url = config
        .server
        .public_url
        .clone()
        .unwrap_or_else(|| format!("https://{addr}"));
    let hostname = base_url
        .split("://")
        .nth(1)
        .and_then(|rest| rest.split(['/', ':']).next())
        .filter(|h| !h.is_empty() && !h.starts_with('['))
        .unwrap_or("kopa.localdomain")
        .to_owned();
    let mut own = vec![("saml-signing".to_owned(), keys.saml_certificate_pem.clone())];
    if let Some(next) = &keys.saml_next_certificate_pem {
        own.push(("saml-signing-next".to_owned(), next.clone()));
    }
    let ldap_cas: Vec<CertSource> = config
        .directories
        .iter()
        .filter_map(|d| {
            d.ca_file.as_ref().map(|path| CertSource::File {
                name: format!("ldap-ca:{}", d.id),
                path: path.clone(),
                tenant: Some(d.tenant.clone()),
            })
        })
        .collect();
    let tls = tls.clone();
    let own_certs = Arc::new(move || {
        let mut list = vec![CertSource::File {
            name: "kopa-tls".into(),
            path: tls.cert_path().to_owned(),
            tenant: None,
        }];
        list.extend(own.iter().map(|(name, pem)| CertSource::Pem {
            name: name.clone(),
            pem: pem.clone(),
        }));
        list.extend(ldap_cas.iter().cloned());
        list
    });
    let now = clock.now_millis();
    let deps = kopa_monitor::Deps {
        config: m.clone(),
        config_facts: kopa_monitor::collect::config_facts(
            config,
            kopa_idp::local::MIN_PASSWORD_LEN,
            now,
        ),
        tenants: config
            .directories
            .iter()
            .map(|d| d.tenant.clone())
            .collect(),
        store: services.stores[services::MONITOR_INDEX].clone(),
        audit: services.audit.clone(),
        clock,
        probes,
        data_dir: config.server.data_dir.clone(),
        own_certs,
        vms: None,
        notifier: kopa_monitor::notify::Notifier {
            email,
            webhooks,
            hostname,
            base_url,
        },
    };
    let monitor = kopa_monitor::Monitor::open(deps).await.map_err(|e| {
        StartError::Store(kopa_store::StoreError::Corrupt {
            what: format!("monitor: {e}"),
        })
    })?;
    monitor.run();
    Ok(monitor)
}

/// Directories from the configuration, plus a local one for the platform's accounts when
/// no local directory is configured (so the first administrator can always sign in).
fn directory_configs(config: &Config) -> Vec<kopa_config::DirectoryConfig> {
    let mut list = config.directories.clone();
    if !list
        .iter()
        .any(|d| d.kind == kopa_config::DirectoryKind::Local)
    {
        let mut local =
            kopa_config::DirectoryConfig::local("local", PLATFORM_TENANT, "Kopa vietējie konti");
        local.display_name_en = Some("Kopa local accounts".into());
        list.push(local);
    }
    list
}

/// The secret in `path`, when a path is configured.
fn read_secret(path: Option<&std::path::Path>) -> Result<Option<kopa_config::Secret>, StartError> {
    path.map(|path| {
        kopa_config::read_secret_file(path).map_err(|e| StartError::Secret {
            path: path.to_owned(),
            reason: e.kind().to_string(),
        })
    })
    .transpose()
}

/// The SAML identity provider: the signing key parsed once, the secret behind pairwise
/// NameIDs (made on first start), and the service providers' metadata (configured and
/// registered through the admin API).
async fn build_saml(
    config: &Config,
    services: &Services,
    keys: &SigningKeys,
    data_dir: &std::path::Path,
    addr: std::net::SocketAddr,
    clock: Arc<dyn Clock>,
) -> Result<Arc<kopa_idp::saml::Provider>, StartError> {
    use kopa_idp::saml::{Provider, Signer};
    let base = config
        .server
        .public_url
        .clone()
        .unwrap_or_else(|| format!("https://{addr}"));
    let signer = Signer::new(keys.saml.pem.expose(), &keys.saml_certificate_pem)
        .map_err(StartError::Saml)?;
    let secret =
        kopa_idp::saml::pairwise_secret(&data_dir.join("keys")).map_err(StartError::Saml)?;
    // Rollover: a staged next certificate, and those replaced within the last day.
    let published: Vec<String> = keys
        .saml_next_certificate_pem
        .iter()
        .cloned()
        .chain(keys.retired_saml_certificates(kopa_idp::keys::SAML_RETIRED_PUBLISHED_SECS))
        .collect();
    let saml = Arc::new(
        Provider::new(
            &base,
            config.saml.clone(),
            signer,
            &secret,
            services.audit.clone(),
            clock,
        )
        .with_published_certificates(&published),
    );
    saml.load_sources(&config.saml_sps, Some(services.idp_store()))
        .await
        .map_err(StartError::Saml)?;
    Ok(saml)
}

/// The OpenID Connect provider: configured clients (secrets read now, kept as hashes),
/// the current signing keys and those retired within the overlap.
async fn build_oidc(
    config: &Config,
    services: &Services,
    keys: &SigningKeys,
    addr: std::net::SocketAddr,
    clock: Arc<dyn Clock>,
) -> Result<Arc<kopa_idp::oidc::Provider>, StartError> {
    use kopa_idp::oidc::{Client, Clients, Keyring, Provider, jose::SigningKey};
    let issuer = config
        .server
        .public_url
        .clone()
        .unwrap_or_else(|| format!("https://{addr}"));
    let mut configured = Vec::new();
    for c in &config.oidc_clients {
        let secret = read_secret(c.secret_file.as_deref())?;
        let client = Client::from_config(c, secret.as_ref().map(|s| s.expose()), &config.oidc)
            .map_err(StartError::Oidc)?;
        configured.push(client);
    }
    // Kopa's own apps: public clients with PKCE, first-party (no consent page).
    for app in apps::APPS {
        let entry = kopa_config::OidcClientConfig {
            name: format!("Kopa {}", app.name),
            auth_method: kopa_config::ClientAuthMethod::None,
            redirect_uris: vec![format!("{issuer}{}", app.callback_path())],
            post_logout_redirect_uris: vec![format!("{issuer}/")],
            grant_types: vec!["authorization_code".into()],
            first_party: true,
            ..kopa_config::OidcClientConfig::new(app.client_id)
        };
        if configured.iter().any(|c| c.id == entry.id) {
            return Err(StartError::Oidc(format!(
                "Client id {:?} is reserved for Kopa's own {} app",
                entry.id, app.name
            )));
        }
        configured.push(Client::from_config(&entry, None, &config.oidc).map_err(StartError::Oidc)?);
    }
    let clients = Clients::load(services.idp_store(), configured).await?;
    let load = |alg, key: &kopa_idp::keys::LoadedKey| {
        SigningKey::from_pem(alg, &key.info.kid, key.pem.expose())
            .map_err(|e| StartError::Oidc(format!("{}: {e}", key.info.path.display())))
    };
    let keyring = Keyring::new(
        load(kopa_config::SigningAlg::ES256, &keys.oidc_es256)?,
        load(kopa_config::SigningAlg::RS256, &keys.oidc_rs256)?,
        keys.retired_oidc_public(config.oidc.key_overlap_secs)
            .map_err(StartError::Oidc)?,
    );
    Ok(Arc::new(Provider::new(
        issuer,
        config.oidc.clone(),
        clients,
        keyring,
        services.idp_store(),
        services.audit.clone(),
        clock,
    )))
}

async fn build_login(
    config: &Config,
    services: &Services,
    clock: Arc<dyn Clock>,
) -> Result<kopa_idp::login::Login, StartError> {
    use kopa_idp::directory::Directories;
    let idp = services.idp_store();
    let directories =
        Directories::from_config(&directory_configs(config), Some(&services.accounts))?;
    let sessions =
        kopa_idp::session::Sessions::new(idp.clone(), clock.clone(), config.session.clone());
    let throttle =
        kopa_idp::throttle::Throttle::load(idp.clone(), clock.clone(), config.login.clone())
            .await?;
    let mfa = kopa_idp::mfa::Mfa::load(idp, clock.clone(), config.mfa.clone())
        .await
        .map_err(kopa_idp::IdpError::from)?;
    Ok(kopa_idp::login::Login::new(
        Arc::new(directories),
        sessions,
        throttle,
        mfa,
        services.audit.clone(),
        clock,
    ))
}

/// A directory is ready when it answers (LDAP) or its store does (local).
#[derive(Debug)]
struct DirectoryProbe(Arc<dyn kopa_idp::directory::Directory>);

impl kopa_web::ReadinessProbe for DirectoryProbe {
    fn name(&self) -> String {
        format!("directory:{}", self.0.id())
    }

    fn check(&self) -> futures_util::future::BoxFuture<'_, Result<(), String>> {
        Box::pin(async move { self.0.check().await.map_err(|e| e.to_string()) })
    }
}

fn directory_probes(
    directories: &kopa_idp::directory::Directories,
) -> Vec<Arc<dyn kopa_web::ReadinessProbe>> {
    directories
        .iter()
        .map(|d| Arc::new(DirectoryProbe(d.clone())) as Arc<dyn kopa_web::ReadinessProbe>)
        .collect()
}

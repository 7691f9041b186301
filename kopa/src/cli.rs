//! Command-line parsing and the commands.

use clap::{Args, Parser, Subcommand};
use kopa::control::{self, ControlClient, Reply, Request};
use kopa::services::Services;
use kopa_config::{Config, LogFormat, Overrides, Problems, Source};
use kopa_core::{Role, SystemClock, TenantId};
use kopa_store::audit::{ExportFormat, ExportPage, VerifyReport};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

/// Exit code for configuration problems (as `check-config` documents).
const EXIT_CONFIG: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "kopa",
    version,
    about = "Kopa: shared secure platform for Latvian municipalities"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct ConfigArgs {
    /// Configuration file (kopa.toml); without it the embedded defaults are used.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data directory (overrides server.data_dir).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the appliance.
    Serve {
        #[command(flatten)]
        config: ConfigArgs,
        /// HTTPS listen address (overrides server.listen).
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
    },
    /// Checks a configuration file and reports every problem; exits 2 when there are any.
    CheckConfig {
        /// The file to check.
        file: PathBuf,
        /// Skip checking that referenced files exist and are readable.
        #[arg(long)]
        no_files: bool,
    },
    /// Takes a consistent snapshot of every database into DIR (online or offline).
    Backup {
        /// Target directory; must not exist or be empty.
        dir: PathBuf,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Verifies the snapshot in DIR, then replaces the databases and `keys/` with it (Kopa
    /// stopped); the current ones are kept beside them.
    Restore {
        /// The backup directory.
        dir: PathBuf,
        #[command(flatten)]
        config: ConfigArgs,
        /// Only verify the snapshot; change nothing.
        #[arg(long)]
        verify_only: bool,
    },
    /// Administration of the appliance.
    Admin {
        #[command(flatten)]
        config: ConfigArgs,
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// The tamper-evident audit log (online or offline).
    #[command(subcommand)]
    Audit(AuditCommand),
    /// The IdP's signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Demo data for a newcomer.
    #[command(subcommand)]
    Demo(DemoCommand),
}

#[derive(Debug, Subcommand)]
enum DemoCommand {
    /// Fills the portal with a small demo (institutions, centres, catalogue, three local
    /// staff accounts, clients, cases) and prints the accounts' passwords once.
    Seed {
        #[command(flatten)]
        config: ConfigArgs,
        /// Succeed quietly when the demo is already there.
        #[arg(long)]
        if_empty: bool,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Replaces the OIDC signing keys (ES256 and RS256) with new ones. The old keys stay
    /// in the published key set for `oidc.key_overlap_secs`, so tokens they signed keep
    /// verifying. Kopa signs with the new keys from its next start.
    Rotate {
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// SAML signing certificate rollover in two steps. `stage` makes the next key and
    /// certificate, published in the metadata beside the current one from Kopa's next
    /// start; once every service provider has refreshed the metadata, `promote` makes it
    /// the signing key (from the next start), and the old certificate stays published for
    /// a day.
    SamlRollover {
        #[arg(value_enum)]
        step: RolloverStep,
        #[command(flatten)]
        config: ConfigArgs,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum RolloverStep {
    Stage,
    Promote,
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Checks every record, link and signature of the chain; exits 1 naming the first
    /// broken record.
    Verify {
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Writes the records of a time range as ECS JSON lines or CSV.
    Export {
        /// Start, inclusive: RFC 3339 (2026-03-01T08:00:00Z, 2026-03-01T10:00:00+02:00) or
        /// a date (midnight UTC). Default: the first record.
        #[arg(long, value_name = "TIME", value_parser = parse_time)]
        since: Option<u64>,
        /// End, exclusive, in the same forms. Default: the last record.
        #[arg(long, value_name = "TIME", value_parser = parse_time)]
        until: Option<u64>,
        /// `jsonl` (one ECS object per line) or `csv`.
        #[arg(long, default_value = "jsonl", value_parser = parse_format)]
        format: ExportFormat,
        /// Write to FILE (created with mode 0600; must not exist) instead of stdout.
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
        #[command(flatten)]
        config: ConfigArgs,
    },
}

fn parse_time(s: &str) -> Result<u64, String> {
    kopa_store::audit::parse_rfc3339_ms(s)
}

fn parse_format(s: &str) -> Result<ExportFormat, String> {
    s.parse()
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Local (break-glass) accounts.
    #[command(subcommand)]
    LocalAccount(LocalAccountCommand),
    /// Re-reads the TLS certificate of the running appliance (same as SIGHUP).
    ReloadTls,
}

#[derive(Debug, Subcommand)]
enum LocalAccountCommand {
    /// Creates an account and prints its generated password once.
    Add {
        /// Login name.
        username: String,
        /// A role; repeat for several.
        #[arg(long = "role", required = true, value_parser = parse_role)]
        roles: Vec<Role>,
        /// Name shown in the UI.
        #[arg(long, default_value = "")]
        display_name: String,
        /// Tenant (institution) id; omit for platform accounts.
        #[arg(long, value_parser = parse_tenant)]
        tenant: Option<TenantId>,
    },
    /// Lists accounts.
    List,
    /// Sets a new generated password and prints it once.
    ResetPassword {
        /// Login name.
        username: String,
    },
}

fn parse_role(s: &str) -> Result<Role, String> {
    Role::parse(s).ok_or_else(|| {
        let all: Vec<_> = Role::ALL.iter().map(|r| r.as_str()).collect();
        format!("unknown role; one of: {}", all.join(", "))
    })
}

fn parse_tenant(s: &str) -> Result<TenantId, String> {
    TenantId::new(s).map_err(|e| e.to_string())
}

fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("kopa: {message}");
    ExitCode::FAILURE
}

/// An error with its causes on one line (`Cannot open …: Permission denied`), each cause
/// added unless the message already says it.
pub(crate) fn with_causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut line = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = cause.source();
    }
    line
}

fn config_problems(problems: &Problems) -> ExitCode {
    eprintln!(
        "kopa: the configuration has {} problem(s):",
        problems.0.len()
    );
    for p in &problems.0 {
        eprintln!("  {p}");
    }
    ExitCode::from(EXIT_CONFIG)
}

fn load_config(
    args: &ConfigArgs,
    listen: Option<String>,
) -> Result<(Config, kopa_config::Origins), Problems> {
    let source = match &args.config {
        Some(path) => Source::File(path),
        None => Source::Embedded,
    };
    let overrides = Overrides {
        data_dir: args.data_dir.clone(),
        listen,
    };
    kopa_config::load_with_origins(source, std::env::vars(), &overrides)
}

/// Runs the command.
pub async fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Serve { config, listen } => match load_config(&config, listen) {
            Ok((config, origins)) => {
                let missing = origins.attribute(config.check_files());
                match missing.first() {
                    Some(problem) => fail(problem),
                    None => serve(config).await,
                }
            }
            Err(p) => config_problems(&p),
        },
        Command::CheckConfig { file, no_files } => check_config(&file, no_files),
        Command::Backup { dir, config } => match load_config(&config, None) {
            Ok((config, _)) => backup(&config, dir).await,
            Err(p) => config_problems(&p),
        },
        Command::Restore {
            dir,
            config,
            verify_only,
        } => match load_config(&config, None) {
            Ok((config, _)) => restore(&config, &dir, verify_only),
            Err(p) => config_problems(&p),
        },
        Command::Admin { config, command } => match load_config(&config, None) {
            Ok((config, _)) => admin(&config, command).await,
            Err(p) => config_problems(&p),
        },
        Command::Keys(KeysCommand::Rotate { config }) => match load_config(&config, None) {
            Ok((config, _)) => keys_rotate(&config),
            Err(p) => config_problems(&p),
        },
        Command::Keys(KeysCommand::SamlRollover { step, config }) => {
            match load_config(&config, None) {
                Ok((config, _)) => saml_rollover(&config, step),
                Err(p) => config_problems(&p),
            }
        }
        Command::Demo(DemoCommand::Seed { config, if_empty }) => match load_config(&config, None) {
            Ok((config, _)) => demo_seed(&config, if_empty).await,
            Err(p) => config_problems(&p),
        },
        Command::Audit(AuditCommand::Verify { config }) => match load_config(&config, None) {
            Ok((config, _)) => audit_verify(&config).await,
            Err(p) => config_problems(&p),
        },
        Command::Audit(AuditCommand::Export {
            since,
            until,
            format,
            output,
            config,
        }) => match load_config(&config, None) {
            Ok((config, _)) => audit_export(&config, since, until, format, output).await,
            Err(p) => config_problems(&p),
        },
    }
}

fn check_config(file: &Path, no_files: bool) -> ExitCode {
    match kopa_config::load_with_origins(
        Source::File(file),
        std::env::vars(),
        &Overrides::default(),
    ) {
        Ok((config, origins)) => {
            let problems = if no_files {
                Vec::new()
            } else {
                origins.attribute(config.check_files())
            };
            if problems.is_empty() {
                println!("{}: OK", file.display());
                ExitCode::SUCCESS
            } else {
                config_problems(&Problems(problems))
            }
        }
        Err(p) => config_problems(&p),
    }
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log.level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match config.log.format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

async fn serve(config: Config) -> ExitCode {
    init_logging(&config);
    let handle = match kopa::start(config).await {
        Ok(h) => h,
        Err(e) => return fail(with_causes(&e)),
    };
    print_banner(&handle);
    tracing::info!(addr = %handle.addr, version = kopa_core::VERSION, "Kopa is serving");
    wait_for_stop(&handle).await;
    tracing::info!("stopping: draining connections");
    let summary = handle.shutdown().await;
    tracing::info!(dropped_connections = summary.dropped_connections, "stopped");
    ExitCode::SUCCESS
}

fn print_banner(handle: &kopa::Handle) {
    let fingerprint = handle
        .tls
        .info()
        .map(|i| i.sha256_fingerprint)
        .unwrap_or_default();
    println!(
        "Kopa {} listening on {}",
        kopa_core::VERSION,
        handle.base_url()
    );
    if handle.tls_generated {
        println!(
            "Generated a self-signed TLS certificate under {}/tls",
            handle.data_dir.display()
        );
    }
    println!("TLS certificate SHA-256 fingerprint: {fingerprint}");
    for key in &handle.keys {
        if key.generated {
            println!(
                "Generated IdP {} signing key {} (kid {})",
                key.purpose, key.algorithm, key.kid
            );
        }
    }
    if let Some(admin) = &handle.first_admin {
        println!("Created platform administrator account: {}", admin.username);
        match &admin.password {
            // Printed once, to the terminal only: it is never logged and never stored.
            Some(pw) => println!(
                "Password (shown only now, store it safely): {}",
                pw.expose()
            ),
            None => println!("Password: the one in bootstrap.admin_password_file"),
        }
    }
}

async fn wait_for_stop(handle: &kopa::Handle) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::error!("cannot install signal handlers; stopping");
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => return,
            _ = int.recv() => return,
            _ = hup.recv() => match handle.reload_tls().await {
                Ok(fingerprint) => tracing::info!(sha256_fingerprint = %fingerprint, "TLS certificate reloaded"),
                Err(e) => tracing::error!(error = %e, "TLS reload failed; keeping the current certificate"),
            },
        }
    }
}

/// Where requests go: the running appliance's control socket, or, when none runs, the
/// databases opened by this process.
enum Target {
    Running(ControlClient),
    Offline(Box<Services>),
}

impl Target {
    async fn connect(config: &Config) -> Result<Self, String> {
        let data_dir = &config.server.data_dir;
        match ControlClient::connect(data_dir).await {
            Ok(Some(client)) => Ok(Self::Running(client)),
            Ok(None) => {
                // Offline commands work on an existing appliance's data; a mistyped
                // --data-dir must not quietly create (and back up) an empty one.
                if !kopa_store::db_file(data_dir, "idp").exists() {
                    return Err(format!(
                        "No Kopa data in {} (is --data-dir right?)",
                        data_dir.display()
                    ));
                }
                let dir = data_dir.clone();
                let services = tokio::task::spawn_blocking(move || {
                    Services::open(&dir, Arc::new(SystemClock))
                })
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| with_causes(&e))?;
                Ok(Self::Offline(Box::new(services)))
            }
            Err(e) => Err(format!("Cannot reach the running Kopa: {e}")),
        }
    }

    async fn call(&mut self, req: Request) -> Result<Reply, String> {
        match self {
            Self::Running(client) => client
                .call(&req)
                .await
                .map_err(|e| format!("Control socket: {e}")),
            Self::Offline(services) => Ok(control::execute(services, None, req).await),
        }
    }
}

/// Sends `req` to the running appliance, or runs it on directly opened databases.
async fn dispatch(config: &Config, req: Request) -> Result<Reply, String> {
    Target::connect(config).await?.call(req).await
}

/// Connects for an audit command; refuses a data directory without an audit log rather
/// than creating one there.
async fn audit_target(config: &Config) -> Result<Target, String> {
    let data_dir = &config.server.data_dir;
    let db = kopa_store::db_file(data_dir, kopa_store::audit::AUDIT_SCHEMA.service);
    if !db.exists() {
        return Err(format!("No audit log in {}", data_dir.display()));
    }
    Target::connect(config).await
}

fn result<T: serde::de::DeserializeOwned>(reply: Reply) -> Result<T, String> {
    if !reply.ok {
        return Err(reply.error.unwrap_or_else(|| "Failed".into()));
    }
    serde_json::from_value(reply.result).map_err(|e| format!("Unexpected reply: {e}"))
}

async fn demo_seed(config: &Config, if_empty: bool) -> ExitCode {
    // A fresh appliance has no data yet: the demo creates it (as `serve` would).
    if let Err(e) = std::fs::create_dir_all(&config.server.data_dir) {
        return fail(format!(
            "Cannot create {}: {e}",
            config.server.data_dir.display()
        ));
    }
    if !kopa_store::db_file(&config.server.data_dir, "idp").exists() {
        let dir = config.server.data_dir.clone();
        let opened =
            tokio::task::spawn_blocking(move || Services::open(&dir, Arc::new(SystemClock))).await;
        match opened {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return fail(with_causes(&e)),
            Err(e) => return fail(e),
        }
    }
    let reply = dispatch(config, Request::DemoSeed).await;
    let report: kopa::demo::SeedReport = match reply.and_then(result) {
        Ok(r) => r,
        Err(e) if if_empty && e.contains("already there") => {
            println!("Demo data already there.");
            return ExitCode::SUCCESS;
        }
        Err(e) => return fail(e),
    };
    println!(
        "Demo: {} institutions, {} centres, {} services, {} clients, {} cases.",
        report.institutions, report.centres, report.services, report.clients, report.cases
    );
    for (user, password) in &report.accounts {
        println!("Demo account {user} (Kopa local accounts): {password}");
    }
    ExitCode::SUCCESS
}

async fn audit_verify(config: &Config) -> ExitCode {
    let report: VerifyReport = match audit_target(config).await {
        Ok(mut target) => match target.call(Request::AuditVerify).await.and_then(result) {
            Ok(r) => r,
            Err(e) => return fail(e),
        },
        Err(e) => return fail(e),
    };
    let range = match (report.first_seq, report.last_seq) {
        (Some(a), Some(b)) => format!(" ({a} to {b})"),
        _ => String::new(),
    };
    match &report.broken {
        None => {
            println!(
                "Audit log intact: {} records{range}, {} retention cuts",
                report.records, report.cut_records
            );
            ExitCode::SUCCESS
        }
        Some(b) => {
            println!("Audit log checked: {} records{range}", report.records);
            fail(format!("audit log broken at {b}"))
        }
    }
}

async fn audit_export(
    config: &Config,
    since_ms: Option<u64>,
    until_ms: Option<u64>,
    format: ExportFormat,
    output: Option<PathBuf>,
) -> ExitCode {
    let mut target = match audit_target(config).await {
        Ok(t) => t,
        Err(e) => return fail(e),
    };
    let mut out: Box<dyn Write> = match &output {
        Some(path) => {
            use std::os::unix::fs::OpenOptionsExt;
            // Audit records are personal data: the file is private from its first byte.
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
            {
                Ok(f) => Box::new(std::io::BufWriter::new(f)),
                Err(e) => return fail(format!("Cannot create {}: {e}", path.display())),
            }
        }
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let mut after_seq = None;
    let mut total = 0;
    loop {
        let req = Request::AuditExport {
            since_ms,
            until_ms,
            format,
            after_seq,
        };
        let page: ExportPage = match target.call(req).await.and_then(result) {
            Ok(p) => p,
            Err(e) => return fail(e),
        };
        if let Err(e) = out.write_all(page.data.as_bytes()) {
            return fail(format!("Cannot write the export: {e}"));
        }
        total += page.records;
        match page.next_after_seq {
            Some(next) => after_seq = Some(next),
            None => break,
        }
    }
    if let Err(e) = out.flush() {
        return fail(format!("Cannot write the export: {e}"));
    }
    if let Some(path) = output {
        eprintln!("Exported {total} records to {}", path.display());
    }
    ExitCode::SUCCESS
}

fn print_reply(reply: Reply) -> ExitCode {
    if reply.ok {
        match serde_json::to_string_pretty(&reply.result) {
            Ok(text) => println!("{text}"),
            Err(e) => return fail(e),
        }
        ExitCode::SUCCESS
    } else {
        fail(reply.error.unwrap_or_else(|| "Failed".into()))
    }
}

async fn backup(config: &Config, dir: PathBuf) -> ExitCode {
    let dest = match std::path::absolute(&dir) {
        Ok(d) => d,
        Err(e) => return fail(format!("Bad backup directory {}: {e}", dir.display())),
    };
    match dispatch(config, Request::Backup { dest }).await {
        Ok(reply) => print_reply(reply),
        Err(e) => fail(e),
    }
}

fn restore(config: &Config, dir: &Path, verify_only: bool) -> ExitCode {
    if verify_only {
        return match kopa_store::backup::verify(dir) {
            Ok(m) => {
                println!(
                    "{}: OK ({} databases, {} key files)",
                    dir.display(),
                    m.databases.len(),
                    m.files.len()
                );
                ExitCode::SUCCESS
            }
            Err(e) => fail(with_causes(&e)),
        };
    }
    match kopa_store::backup::restore(dir, &config.server.data_dir, &kopa::SCHEMAS) {
        Ok(report) => {
            println!("Restored: {}", report.restored.join(", "));
            for p in report.moved_aside {
                println!("Previous copy kept as {}", p.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(with_causes(&e)),
    }
}

async fn admin(config: &Config, command: AdminCommand) -> ExitCode {
    let req = match command {
        AdminCommand::ReloadTls => Request::ReloadTls,
        AdminCommand::LocalAccount(LocalAccountCommand::Add {
            username,
            roles,
            display_name,
            tenant,
        }) => Request::AddLocalAccount {
            username,
            display_name,
            tenant,
            roles,
        },
        AdminCommand::LocalAccount(LocalAccountCommand::List) => Request::ListLocalAccounts,
        AdminCommand::LocalAccount(LocalAccountCommand::ResetPassword { username }) => {
            Request::ResetPassword { username }
        }
    };
    match dispatch(config, req).await {
        Ok(reply) => print_reply(reply),
        Err(e) => fail(e),
    }
}

fn saml_rollover(config: &Config, step: RolloverStep) -> ExitCode {
    let dir = config.server.data_dir.join("keys");
    let result = match step {
        RolloverStep::Stage => kopa_idp::SigningKeys::stage_saml(&dir),
        RolloverStep::Promote => kopa_idp::SigningKeys::promote_saml(&dir),
    };
    match (step, result) {
        (RolloverStep::Stage, Ok(info)) => {
            println!("Next SAML key staged: kid {}", info.kid);
            println!(
                "Restart Kopa to publish its certificate beside the current one; promote it once \
                 every service provider has refreshed the metadata."
            );
            ExitCode::SUCCESS
        }
        (RolloverStep::Promote, Ok(info)) => {
            println!("SAML signing key is now kid {}", info.kid);
            println!(
                "Restart Kopa to sign with it; the old certificate stays published for {} s.",
                kopa_idp::keys::SAML_RETIRED_PUBLISHED_SECS
            );
            ExitCode::SUCCESS
        }
        (_, Err(e)) => fail(e),
    }
}

fn keys_rotate(config: &Config) -> ExitCode {
    let dir = config.server.data_dir.join("keys");
    match kopa_idp::SigningKeys::rotate_oidc(&dir) {
        Ok(infos) => {
            for info in infos {
                println!("New {} key: kid {}", info.algorithm, info.kid);
            }
            println!(
                "The old keys stay published for {} s. Restart Kopa to sign with the new keys.",
                config.oidc.key_overlap_secs
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

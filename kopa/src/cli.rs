//! Command-line parsing and the commands.

use clap::{Args, Parser, Subcommand};
use kopa::control::{self, ControlClient, Reply, Request};
use kopa::services::Services;
use kopa_config::{Config, LogFormat, Overrides, Problems, Source};
use kopa_core::{Role, SystemClock, TenantId};
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
    /// Verifies the snapshot in DIR, then replaces the databases with it (Kopa stopped).
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
            .with_current_span(false)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

async fn serve(config: Config) -> ExitCode {
    init_logging(&config);
    let handle = match kopa::start(config).await {
        Ok(h) => h,
        Err(e) => return fail(e),
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
            _ = hup.recv() => match handle.reload_tls() {
                Ok(info) => tracing::info!(sha256_fingerprint = %info.sha256_fingerprint, "TLS certificate reloaded"),
                Err(e) => tracing::error!(error = %e, "TLS reload failed; keeping the current certificate"),
            },
        }
    }
}

/// Sends `req` to the running appliance, or runs it on directly opened databases.
async fn dispatch(config: &Config, req: Request) -> Result<Reply, String> {
    let data_dir = &config.server.data_dir;
    match ControlClient::connect(data_dir).await {
        Ok(Some(mut client)) => client
            .call(&req)
            .await
            .map_err(|e| format!("Control socket: {e}")),
        Ok(None) => {
            let services =
                Services::open(data_dir, Arc::new(SystemClock)).map_err(|e| e.to_string())?;
            Ok(control::execute(&services, None, req).await)
        }
        Err(e) => Err(format!("Cannot reach the running Kopa: {e}")),
    }
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
                println!("{}: OK ({} databases)", dir.display(), m.databases.len());
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        };
    }
    match kopa_store::backup::restore(dir, &config.server.data_dir, &kopa::SCHEMAS) {
        Ok(report) => {
            println!("Restored: {}", report.restored.join(", "));
            for p in report.moved_aside {
                println!("Previous database kept as {}", p.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
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

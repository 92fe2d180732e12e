//! keygate: API security gateway. One binary: `serve` runs the gateway; `sign` and `curl` sign
//! requests with the same code the gateway verifies with; `master-key` manages key material.
#![forbid(unsafe_code)]
#![allow(clippy::print_stdout)] // printing is a CLI's job

mod admin_cli;
mod audit_cli;
mod cache;
mod client;
mod config;
mod config_io;
mod demo;
mod nudge;
mod outbound;
mod serve;
mod telemetry;
mod tenant_objects;
mod time;
mod versions;

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

// glibc malloc/free were ~13% of the signed request path in profiles; mimalloc's per-thread
// free lists cut that for the many small, short-lived allocations of a proxy.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "keygate",
    version,
    about = "API security gateway: verify inbound signatures, keep outbound keys"
)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, env = "KEYGATE_LOG_FORMAT", default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        /// Config file (TOML). See docs/config.md.
        #[arg(long, short = 'c', required_unless_present = "demo")]
        config: Option<PathBuf>,
        /// Self-contained demo: echo upstream, demo app and key, embedded store in --data-dir.
        #[arg(long, conflicts_with = "config")]
        demo: bool,
        /// Where --demo keeps its SQLite file, master key and demo secret.
        #[arg(long, default_value = "keygate-demo")]
        data_dir: PathBuf,
        /// Override [server] inbound (e.g. 127.0.0.1:0 for a free port).
        #[arg(long)]
        listen: Option<String>,
    },
    /// Create or migrate the store's schema and exit.
    Migrate {
        #[arg(long, short = 'c')]
        config: PathBuf,
    },
    /// Print the KG1 headers for a request.
    Sign {
        #[command(flatten)]
        args: client::SignArgs,
        #[arg(long, value_enum, default_value = "headers")]
        format: client::SignFormat,
    },
    /// Sign and send a request, like curl.
    Curl {
        #[command(flatten)]
        args: client::CurlArgs,
    },
    /// Master key material.
    MasterKey {
        #[command(subcommand)]
        command: MasterKeyCommand,
    },
    /// Create the first admin token directly on the store (later ones: `keygate tokens create`).
    AdminToken {
        #[command(subcommand)]
        command: AdminTokenCommand,
    },
    /// The request audit log: search, tail, export.
    Audit {
        #[command(subcommand)]
        command: audit_cli::AuditCmd,
    },
    /// Tenants, through the admin API.
    Tenants {
        #[command(flatten)]
        conn: admin_cli::Conn,
        #[command(subcommand)]
        command: admin_cli::TenantCmd,
    },
    /// Apps, through the admin API.
    Apps {
        #[command(flatten)]
        conn: admin_cli::Conn,
        #[command(subcommand)]
        command: admin_cli::AppCmd,
    },
    /// Access keys, through the admin API.
    Keys {
        #[command(flatten)]
        conn: admin_cli::Conn,
        #[command(subcommand)]
        command: admin_cli::KeyCmd,
    },
    /// Outbound providers and their scripts, through the admin API.
    Providers {
        #[command(flatten)]
        conn: admin_cli::Conn,
        #[command(subcommand)]
        command: admin_cli::ProviderCmd,
    },
    /// Admin tokens, through the admin API.
    Tokens {
        #[command(flatten)]
        conn: admin_cli::Conn,
        #[command(subcommand)]
        command: admin_cli::TokenCmd,
    },
    /// Declarative config on the store: export as TOML, import with diff/dry run/prune (GitOps).
    Config {
        #[command(subcommand)]
        command: config_io::ConfigCmd,
    },
}

#[derive(Debug, Subcommand)]
enum AdminTokenCommand {
    /// Create an admin token and print it once.
    Create {
        #[arg(long, short = 'c')]
        config: PathBuf,
        #[arg(long)]
        name: String,
        /// gateway_admin, tenant_admin or tenant_developer.
        #[arg(long, default_value = "gateway_admin")]
        role: String,
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long = "grant")]
        grants: Vec<String>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum MasterKeyCommand {
    /// Print a new random master key (`v<N>:<base64>`) for KEYGATE_MASTER_KEY or a key file.
    Generate {
        #[arg(long, default_value_t = 1)]
        version: u32,
    },
    /// Re-wrap every stored data key under the newest master key, without downtime. Give all
    /// keys in KEYGATE_MASTER_KEY, comma-separated (old and new); the highest version seals.
    Rotate {
        #[arg(long, short = 'c')]
        config: PathBuf,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match run(cli) {
        Ok(code) => std::process::ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<u8> {
    match cli.command {
        Command::Serve { config, demo, data_dir, listen } => {
            let mut runtime = tokio::runtime::Builder::new_multi_thread();
            runtime.enable_all();
            let mut rt = |threads: Option<usize>| -> Result<tokio::runtime::Runtime> {
                if let Some(n) = threads {
                    runtime.worker_threads(n.max(1));
                }
                Ok(runtime.build()?)
            };
            if demo {
                let listen = listen.unwrap_or_else(|| "127.0.0.1:8080".into());
                let rt = rt(None)?;
                rt.block_on(async {
                    let upstream = demo::start_echo_upstream().await?;
                    let cfg = demo::prepare(&data_dir, &listen, upstream)?;
                    let dir = data_dir.clone();
                    serve::run(serve::ServeOptions {
                        config: cfg,
                        base_dir: std::env::current_dir()?,
                        banner: Some(Box::new(move |addr| demo::banner(addr, upstream, &dir))),
                    })
                    .await
                })?;
            } else {
                let path = config.context("--config is required")?;
                let mut cfg = config::Config::load(&path)?;
                if let Some(l) = listen {
                    cfg.server.inbound = l;
                }
                let base_dir = path.parent().map(|p| p.to_path_buf()).unwrap_or_default();
                let rt = rt(cfg.server.worker_threads)?;
                rt.block_on(serve::run(serve::ServeOptions { config: cfg, base_dir, banner: None }))?;
            }
            Ok(0)
        }
        Command::Migrate { config } => {
            let cfg = config::Config::load(&config)?;
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(async {
                let keyring = std::sync::Arc::new(serve::load_keyring(cfg.store.master_key_file.as_deref())?);
                let store = keygate_store::Store::open(&cfg.store.url, keyring).await?;
                store.close().await;
                println!("store {} is migrated", keygate_store::redact_url(&cfg.store.url));
                Ok::<_, anyhow::Error>(())
            })?;
            Ok(0)
        }
        Command::Sign { args, format } => {
            let prepared = client::prepare(&args)?;
            client::print_signed(&prepared, format)?;
            Ok(0)
        }
        Command::Curl { args } => {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let code = rt.block_on(client::curl(&args))?;
            Ok(u8::try_from(code).unwrap_or(1))
        }
        Command::MasterKey { command: MasterKeyCommand::Generate { version } } => {
            let (_, text) = keygate_store::MasterKey::generate(version)?;
            println!("{}", &*text);
            Ok(0)
        }
        Command::MasterKey { command: MasterKeyCommand::Rotate { config } } => {
            let cfg = config::Config::load(&config)?;
            with_store(&cfg, |store| async move {
                let n = store.with_actor("cli").rewrap_all().await?;
                println!("re-wrapped {n} secret(s) under the current master key");
                Ok(())
            })?;
            Ok(0)
        }
        Command::AdminToken {
            command: AdminTokenCommand::Create { config, name, role, tenant, grants, json },
        } => {
            let cfg = config::Config::load(&config)?;
            with_store(&cfg, |store| async move {
                admin_cli::bootstrap_token(&store, &name, &role, tenant.as_deref(), &grants, json).await
            })?;
            Ok(0)
        }
        Command::Audit { command } => {
            current_thread()?.block_on(audit_cli::run(&command))?;
            Ok(0)
        }
        Command::Tenants { conn, command } => {
            current_thread()?.block_on(admin_cli::tenants(&conn, &command))?;
            Ok(0)
        }
        Command::Apps { conn, command } => {
            current_thread()?.block_on(admin_cli::apps(&conn, &command))?;
            Ok(0)
        }
        Command::Keys { conn, command } => {
            current_thread()?.block_on(admin_cli::keys(&conn, &command))?;
            Ok(0)
        }
        Command::Tokens { conn, command } => {
            current_thread()?.block_on(admin_cli::tokens(&conn, &command))?;
            Ok(0)
        }
        Command::Providers { conn, command } => {
            current_thread()?.block_on(admin_cli::providers(&conn, &command))?;
            Ok(0)
        }
        Command::Config { command } => config_io::run(&command),
    }
}

fn current_thread() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
}

/// Runs `f` with the configured store open (and closed afterwards).
fn with_store<F, Fut>(cfg: &config::Config, f: F) -> Result<()>
where
    F: FnOnce(keygate_store::Store) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    current_thread()?.block_on(async {
        let keyring = std::sync::Arc::new(serve::load_keyring(cfg.store.master_key_file.as_deref())?);
        let store = keygate_store::Store::open(&cfg.store.url, keyring).await?;
        let result = f(store.clone()).await;
        store.close().await;
        result
    })
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KEYGATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

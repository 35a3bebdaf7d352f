//! `crio`: flags and subcommands; the work is in the library.

// The flags' doc comments are `--help` text, written for the terminal: `[crio] root`
// is a config table, not a rustdoc link.
#![allow(rustdoc::broken_intra_doc_links)]

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use crio_core::config::{self, Overrides, Sources};
use crio_core::version::BuildInfo;

#[derive(Parser, Debug)]
#[command(
    name = "crio",
    version,
    about = "A CRI runtime that runs every container through a shim v2"
)]
struct Cli {
    /// Main config file.
    #[arg(
        short = 'c',
        long = "config",
        env = "CONTAINER_CONFIG",
        global = true,
        default_value = "/etc/crio/crio.conf"
    )]
    config: PathBuf,
    /// Drop-in directory, read after the main file in lexical order.
    #[arg(
        short = 'd',
        long = "config-dir",
        env = "CONTAINER_CONFIG_DIR",
        global = true,
        default_value = "/etc/crio/crio.conf.d"
    )]
    config_dir: PathBuf,
    /// Persistent state root (overrides [crio] root).
    #[arg(short = 'r', long, env = "CONTAINER_ROOT", global = true)]
    root: Option<PathBuf>,
    /// Volatile state root (overrides [crio] runroot).
    #[arg(long, env = "CONTAINER_RUNROOT", global = true)]
    runroot: Option<PathBuf>,
    /// CRI socket path (overrides [crio.api] listen).
    #[arg(long, env = "CONTAINER_LISTEN", global = true)]
    listen: Option<PathBuf>,
    /// Log level (overrides [crio.runtime] log_level).
    #[arg(
        short = 'l',
        long = "log-level",
        env = "CONTAINER_LOG_LEVEL",
        global = true
    )]
    log_level: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the merged configuration as TOML.
    Config,
    /// Print build information.
    Version {
        /// As JSON.
        #[arg(short = 'j', long)]
        json: bool,
    },
    /// Check the store (crio stopped) for broken images and leftovers; exits 1
    /// when it finds any.
    Check {
        /// Remove broken image records and leftover layers and blobs.
        #[arg(long)]
        repair: bool,
    },
    /// Wipe pods, containers and images as CRI-O's `crio wipe` does (crio
    /// stopped): pods after a reboot ([crio] version_file missing), images too
    /// after an upgrade (version_file_persist); with internal_wipe on, the daemon
    /// does it at its next start instead.
    Wipe {
        /// Wipe pods, containers and images whatever the version files say.
        #[arg(short = 'f', long)]
        force: bool,
    },
    /// Ask the running daemon.
    Status {
        /// The daemon's socket (default: the configured [crio.api] listen).
        #[arg(short = 's', long)]
        socket: Option<PathBuf>,
        #[command(subcommand)]
        what: StatusCommand,
    },
}

#[derive(Subcommand, Debug)]
enum StatusCommand {
    /// The daemon's effective configuration.
    Config,
    /// Storage and cgroup facts.
    Info,
}

fn main() -> ExitCode {
    // containerd's legacy event path: shims run `<publish-binary> --address A publish
    // --topic T --namespace N` with the event on stdin. Not a clap subcommand: the
    // flags are containerd's, not ours.
    let args: Vec<String> = std::env::args().collect();
    if let Some(publish) = PublishArgs::parse(&args[1..]) {
        return match publish.run() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("crio publish: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("crio: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    if let Some(Command::Version { json }) = &cli.command {
        let info = BuildInfo::current();
        if *json {
            println!("{}", serde_json::to_string_pretty(&info)?);
        } else {
            print!("{}", info.to_text());
        }
        return Ok(());
    }
    let loaded = config::load(
        &Sources {
            file: cli.config.clone(),
            dir: cli.config_dir.clone(),
        },
        &Overrides {
            root: cli.root.clone(),
            runroot: cli.runroot.clone(),
            listen: cli.listen.clone(),
            log_level: cli.log_level.clone(),
        },
    )?;
    match cli.command {
        Some(Command::Version { .. }) => unreachable!("handled above"),
        Some(Command::Config) => {
            for warning in &loaded.warnings {
                eprintln!("warning: {warning}");
            }
            print!("{}", loaded.config.to_toml());
            Ok(())
        }
        Some(Command::Check { repair }) => {
            let report = crio_core::check::check(&loaded.config.crio.root, repair)?;
            for p in &report.problems {
                println!("problem: {p}");
            }
            for r in &report.repaired {
                println!("repaired: {r}");
            }
            if report.problems.is_empty() {
                println!("the store is consistent");
                Ok(())
            } else if repair {
                Ok(())
            } else {
                anyhow::bail!(
                    "{} problem(s): run crio check --repair",
                    report.problems.len()
                )
            }
        }
        Some(Command::Wipe { force }) => {
            // The pods' removal logs what it does: to stderr, at info.
            let _ = init_logging("info");
            let said = runtime()?
                .block_on(crio_core::wipe::offline(loaded, force))
                .context("crio wipe")?;
            for line in said {
                println!("{line}");
            }
            Ok(())
        }
        Some(Command::Status { socket, what }) => {
            let socket = socket.unwrap_or_else(|| loaded.config.crio.api.listen.clone());
            let endpoint = match what {
                StatusCommand::Config => "/config",
                StatusCommand::Info => "/info",
            };
            let body =
                runtime()?.block_on(crio_core::server::inspect::get_endpoint(&socket, endpoint))?;
            println!("{}", body.trim_end());
            Ok(())
        }
        None => {
            let log_level = init_logging(&loaded.config.crio.runtime.log_level);
            runtime()?
                .block_on(crio_core::daemon::run(loaded, log_level))
                .context("crio daemon")
        }
    }
}

/// `[--address A] publish --topic T --namespace N` (flags with one or two dashes).
#[derive(Debug, PartialEq)]
struct PublishArgs {
    address: String,
    topic: String,
    namespace: String,
}

impl PublishArgs {
    fn parse(args: &[String]) -> Option<Self> {
        if !args.iter().any(|a| a == "publish") {
            return None;
        }
        let mut out = PublishArgs {
            address: String::new(),
            topic: String::new(),
            namespace: String::new(),
        };
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let name = arg.trim_start_matches('-');
            let (name, inline) = match name.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (name, None),
            };
            let slot = match name {
                "address" | "a" => &mut out.address,
                "topic" => &mut out.topic,
                "namespace" | "n" => &mut out.namespace,
                _ => continue,
            };
            *slot = match inline {
                Some(v) => v,
                None => it.next()?.clone(),
            };
        }
        (!out.address.is_empty() && !out.topic.is_empty()).then_some(out)
    }

    fn run(&self) -> anyhow::Result<()> {
        use std::io::Read;
        let mut event = Vec::new();
        std::io::stdin()
            .take(1 << 20)
            .read_to_end(&mut event)
            .context("reading the event from stdin")?;
        runtime()?.block_on(crio_core::runtime::events::publish(
            &self.address,
            &self.topic,
            &self.namespace,
            &event,
        ))?;
        Ok(())
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    crio_core::memory::limit_arenas();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// The filter of CRI-O's logrus level name (libraries' own debug output, HTTP/2
/// frames and TLS, only when CRIO_LOG asks for it).
fn level_filter(level: &str) -> tracing_subscriber::EnvFilter {
    let level = match level {
        "fatal" | "panic" | "error" => "error",
        "warn" => "warn",
        "debug" => "debug",
        "trace" => "trace",
        _ => "info",
    };
    tracing_subscriber::EnvFilter::new(format!(
        "{level},h2=warn,hyper=warn,hyper_util=warn,tower=warn,reqwest=warn,rustls=warn,tonic=info"
    ))
}

/// Logs to stderr at `level`; the hook changes the level later (SIGHUP), unless
/// CRIO_LOG set the filter.
fn init_logging(level: &str) -> Option<crio_core::reload::LogLevelHook> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let from_env = tracing_subscriber::EnvFilter::try_from_env("CRIO_LOG").ok();
    let fixed = from_env.is_some();
    let (filter, handle) =
        tracing_subscriber::reload::Layer::new(from_env.unwrap_or_else(|| level_filter(level)));
    tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
        )
        .init();
    (!fixed).then(|| {
        Box::new(move |level: &str| {
            handle
                .reload(level_filter(level))
                .map_err(|e| e.to_string())
        }) as crio_core::reload::LogLevelHook
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_takes_containerds_flags() {
        let args: Vec<String> = [
            "--address",
            "/run/e.sock",
            "publish",
            "--topic",
            "/tasks/exit",
            "--namespace",
            "k8s.io",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            PublishArgs::parse(&args),
            Some(PublishArgs {
                address: "/run/e.sock".into(),
                topic: "/tasks/exit".into(),
                namespace: "k8s.io".into()
            })
        );
        assert_eq!(PublishArgs::parse(&["config".to_string()]), None);
    }
}

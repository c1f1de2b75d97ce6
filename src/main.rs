//! The command line: parse arguments, set up logging and signals, call the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use rampart::config::{self, MissingCert};

#[derive(Parser)]
#[command(
    name = "rampart",
    version,
    about = "A security-hardening, TLS-terminating reverse proxy"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy (the default command).
    Run(ConfigArg),
    /// Validate a config fully (syntax, semantics, certificate files) and exit 0, or list every
    /// error with file:line and exit 1.
    Check(ConfigArg),
    /// Write a self-signed development certificate and key.
    Cert {
        /// Host names (or IP addresses) the certificate is for.
        #[arg(long = "host", required = true, num_args = 1..)]
        hosts: Vec<String>,
        /// Folder to write dev.crt and dev.key into.
        #[arg(long, default_value = "certs")]
        out: PathBuf,
    },
}

#[derive(clap::Args, Default)]
struct ConfigArg {
    /// Config file [default: $RAMPART_CONFIG, else config/rampart.toml]
    #[arg(short = 'c', long = "config")]
    config: Option<PathBuf>,
}

impl ConfigArg {
    fn path(&self) -> PathBuf {
        self.config
            .clone()
            .or_else(|| std::env::var_os("RAMPART_CONFIG").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("config/rampart.toml"))
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run(ConfigArg::default())) {
        Command::Run(arg) => run(&arg.path()),
        Command::Check(arg) => check(&arg.path()),
        Command::Cert { hosts, out } => cert(&hosts, &out),
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only for a person at a terminal; log collectors get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .init();
}

fn print_errors(errors: &config::ConfigErrors) {
    for error in &errors.0 {
        eprintln!("{error}");
    }
}

fn run(path: &std::path::Path) -> ExitCode {
    init_tracing();
    let snapshot = match config::load_file(path) {
        Ok(snapshot) => snapshot,
        Err(errors) => {
            print_errors(&errors);
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let handle = match rampart::Server::start(snapshot).await {
            Ok(handle) => handle,
            Err(err) => {
                eprintln!("{err}");
                return ExitCode::FAILURE;
            }
        };
        wait_for_shutdown_signal().await;
        tracing::info!("shutting down: finishing in-flight requests");
        handle.shutdown().await;
        ExitCode::SUCCESS
    })
}

async fn wait_for_shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(term) => term,
        Err(err) => {
            tracing::warn!(error = %err, "cannot listen for SIGTERM; only Ctrl-C stops rampart");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

fn check(path: &std::path::Path) -> ExitCode {
    match config::load_file_with(path, MissingCert::Warn) {
        Ok(snapshot) => {
            for warning in &snapshot.warnings {
                eprintln!("warning: {warning}");
            }
            println!("{}: ok", path.display());
            ExitCode::SUCCESS
        }
        Err(errors) => {
            print_errors(&errors);
            ExitCode::FAILURE
        }
    }
}

fn cert(hosts: &[String], out: &std::path::Path) -> ExitCode {
    let cert_path = out.join("dev.crt");
    let key_path = out.join("dev.key");
    match rampart::certgen::write_self_signed(hosts, &cert_path, &key_path) {
        Ok(_) => {
            println!("wrote {} and {}", cert_path.display(), key_path.display());
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("{err}");
            ExitCode::FAILURE
        }
    }
}

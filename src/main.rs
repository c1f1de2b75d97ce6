//! The command line: parse arguments, set up logging and signals, call the library.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use rampart::access_log;
use rampart::config::watch::ConfigWatch;
use rampart::config::{self, MissingCert};
use rampart::copy_tuning;
use tracing::Level;
use tracing_subscriber::filter::FilterExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{filter, fmt, reload, EnvFilter, Layer, Registry};

// The allocator is mimalloc instead of glibc's malloc: a request makes some thirty small
// allocations (header maps, bodies' frames, futures), and its per-thread free lists serve them
// in a fraction of the instructions. It is not a `#[global_allocator]`: its crate's `GlobalAlloc`
// sends every allocation through `mi_malloc_aligned`, whose slow path (a size class's free list
// run dry, or a block over 1 KiB) over-allocates into a larger class unless the size is a power
// of two. Built with its `override` feature, mimalloc defines `malloc` and `free` themselves,
// and Rust's default allocator calls those for every alignment up to 16: the allocator's own
// instructions per proxied HTTP/1.1 request fell from 2,232 to 1,196 (docs/performance.md,
// "The allocator"). `main` calls into it so that the linker keeps it.

/// `--version`, with a second line saying whether the shipped profile guided this build's
/// optimization: tools/rustc-wrapper.sh tells rustc in `RAMPART_PGO`.
static LONG_VERSION: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let build = option_env!("RAMPART_PGO")
        .unwrap_or("not profile-guided: a debug build, or built without tools/rustc-wrapper.sh");
    format!("{}\nbuild: {build}", env!("CARGO_PKG_VERSION"))
});

#[derive(Parser)]
#[command(
    name = "rampart",
    version,
    long_version = LONG_VERSION.as_str(),
    about = "A security-hardening, TLS-terminating reverse proxy",
    // `rampart -c FILE` runs, as `rampart run -c FILE` does; a subcommand takes its own.
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunOptions,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy (the default command: `rampart -c FILE` is `rampart run -c FILE`). The
    /// config file and its certificates are watched and reloaded on change; SIGHUP reloads too.
    Run(RunArgs),
    /// Validate a config fully (syntax, semantics, certificate files) and exit 0, or list every
    /// error with file:line and exit 1.
    Check(CheckArgs),
    /// Write a self-signed development certificate and key.
    Cert {
        /// Host names (or IP addresses) the certificate is for.
        #[arg(long = "host", required = true, num_args = 1..)]
        hosts: Vec<String>,
        /// Folder to write the certificate and key into.
        #[arg(long, default_value = "certs")]
        out: PathBuf,
        /// File name stem: writes NAME.crt and NAME.key ("tls" for the compose examples).
        #[arg(long, default_value = "dev", value_parser = cert_name)]
        name: String,
    },
    /// Config-less sidecar mode: the strict default policy in front of one upstream, with a
    /// self-signed development certificate held in memory.
    Proxy(ProxyArgs),
    /// Read a password on stdin (one line, or everything piped) and print its argon2id hash,
    /// for a `basic_auth` users file line `name:HASH`.
    HashPassword,
    /// Exit 0 when the admin listener's /healthz answers 200, else 1 (Docker HEALTHCHECK in
    /// images without curl).
    Healthcheck {
        /// [default: /healthz on the config's listen.admin, else http://127.0.0.1:9090/healthz]
        #[arg(long)]
        url: Option<String>,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// List the bans in force, or lift one, through the admin listener.
    Bans {
        #[command(subcommand)]
        action: Option<BansAction>,
        /// The admin listener [default: the config's listen.admin, else http://127.0.0.1:9090]
        #[arg(long, global = true)]
        url: Option<String>,
        #[command(flatten)]
        config: ConfigArg,
    },
}

#[derive(Subcommand)]
enum BansAction {
    /// Print the bans in force as JSON (the default)
    List,
    /// Lift the ban of an address (an IPv6 address's /64)
    Remove {
        /// The banned address, as `rampart bans list` prints it
        ip: String,
    },
}

/// `run`'s options, also taken without the subcommand (`rampart -c FILE`).
#[derive(clap::Args, Default)]
struct RunOptions {
    #[command(flatten)]
    config: ConfigArg,
    /// Do not watch the config and certificate files; reload on SIGHUP only.
    #[arg(long)]
    no_watch: bool,
}

#[derive(clap::Args)]
struct RunArgs {
    #[command(flatten)]
    options: RunOptions,
    #[command(flatten)]
    file: FileArg,
}

#[derive(clap::Args)]
struct CheckArgs {
    #[command(flatten)]
    config: ConfigArg,
    #[command(flatten)]
    file: FileArg,
    /// Report static roots and certificate or key files that do not exist (volumes mounted only
    /// at run time) as warnings, and validate everything else.
    #[arg(long)]
    skip_missing_paths: bool,
    /// Also print what loading FILE over OLD (the running config, say) would change: per
    /// route, upstream, headers, limits and certificate, listen changes marked "needs restart".
    #[arg(long, value_name = "OLD")]
    diff: Option<PathBuf>,
}

/// The config file given without `-c` (`rampart check FILE`).
#[derive(clap::Args)]
struct FileArg {
    /// Config file (the same as -c FILE)
    #[arg(value_name = "FILE", conflicts_with = "config")]
    file: Option<PathBuf>,
}

#[derive(clap::Args)]
struct ProxyArgs {
    /// The app server: "http://host:port" or "unix:/path/to/app.sock".
    #[arg(long)]
    to: String,
    /// Address of the TLS listener.
    #[arg(long, default_value = "0.0.0.0:8443")]
    https: SocketAddr,
    /// Address of a plain-HTTP listener that redirects to https (none unless given).
    #[arg(long)]
    http: Option<SocketAddr>,
    /// The https port clients see, written into the redirects of --http (listen.https_port_public).
    /// Give it behind a port map (e.g. 443 when a container's 8443 is published as 443).
    /// [default: the port of --https]
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    https_port_public: Option<u16>,
    /// Address of the admin listener (/metrics, /healthz, /readyz; none unless given).
    #[arg(long)]
    admin: Option<SocketAddr>,
    /// The security-header preset ([headers] preset). "strict" sends a Content-Security-Policy
    /// that allows only same-origin scripts, styles and images: pages that load assets from a
    /// CDN (FastAPI's /docs, say) need "basic" (no CSP) or --csp.
    #[arg(long, value_enum, default_value_t = HeaderPreset::Strict)]
    headers: HeaderPreset,
    /// A Content-Security-Policy of your own in place of the preset's ("" sends none), e.g.
    /// --csp "default-src 'self'; script-src 'self' https://cdn.jsdelivr.net".
    #[arg(long, value_name = "POLICY")]
    csp: Option<String>,
    /// The largest request body (client.max_body): "100MiB", "10m", "512KiB". [default: 50MiB]
    #[arg(long, value_name = "SIZE")]
    max_body: Option<rampart::config::units::ByteSize>,
}

/// `rampart proxy --headers`: the `[headers] preset` values.
#[derive(Clone, Copy, clap::ValueEnum)]
enum HeaderPreset {
    /// HSTS, a same-origin CSP, X-Frame-Options DENY, COOP, Permissions-Policy and more
    Strict,
    /// HSTS, nosniff, X-Frame-Options SAMEORIGIN, Referrer-Policy; no CSP
    Basic,
    /// no security headers
    Off,
}

impl HeaderPreset {
    fn name(self) -> &'static str {
        match self {
            HeaderPreset::Strict => "strict",
            HeaderPreset::Basic => "basic",
            HeaderPreset::Off => "off",
        }
    }
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

    /// The positional `FILE` (clap refuses it together with `-c`), else [`ConfigArg::path`].
    fn path_or(&self, file: Option<PathBuf>) -> PathBuf {
        file.unwrap_or_else(|| self.path())
    }
}

fn main() -> ExitCode {
    // mimalloc's `malloc` is linked in only when something of its object file is used.
    let _mimalloc = mimalloc::MiMalloc.version();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => with_file_hint(err).exit(),
    };
    // The commands that serve start again at once on CPUs where glibc's copies need a tunable
    // (src/copy_tuning.rs); the others have no large copies to make.
    let serving = matches!(
        cli.command,
        None | Some(Command::Run(_) | Command::Proxy(_))
    );
    let copy_tuning = serving.then(copy_tuning::reexec_if_wanted);
    match cli.command {
        None => run(&cli.run.config.path(), !cli.run.no_watch, copy_tuning),
        Some(Command::Run(args)) => run(
            &args.options.config.path_or(args.file.file),
            !args.options.no_watch,
            copy_tuning,
        ),
        Some(Command::Check(args)) => check(
            &args.config.path_or(args.file.file),
            args.skip_missing_paths,
            args.diff.as_deref(),
        ),
        Some(Command::Cert { hosts, out, name }) => cert(&hosts, &out, &name),
        Some(Command::Proxy(args)) => proxy(&args, copy_tuning),
        Some(Command::Healthcheck { url, config }) => healthcheck(url, &config.path()),
        Some(Command::Bans {
            action,
            url,
            config,
        }) => bans(action.unwrap_or(BansAction::List), url, &config.path()),
        Some(Command::HashPassword) => hash_password(),
    }
}

/// `rampart FILE` is not a command: clap says so, and a tip shows how to run or check a file.
fn with_file_hint(mut err: clap::Error) -> clap::Error {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if err.kind() != ErrorKind::InvalidSubcommand {
        return err;
    }
    let Some(ContextValue::String(word)) = err.get(ContextKind::InvalidSubcommand) else {
        return err;
    };
    if !(word.ends_with(".toml") || Path::new(word).is_file()) {
        return err;
    }
    let tips = vec![
        format!("to run this config: rampart -c {word}").into(),
        format!("to validate it: rampart check {word}").into(),
    ];
    err.insert(ContextKind::Suggested, ContextValue::StyledStrs(tips));
    err
}

/// The level of the text log, changed once the config is read and at every reload (unless
/// `RUST_LOG` is set).
#[derive(Clone)]
struct LogLevel(Option<reload::Handle<EnvFilter, Registry>>);

impl LogLevel {
    /// `[log] level` (validated with the config) replaces the `info` used while loading.
    fn set_from_config(&self, level: &str) {
        if let Some(handle) = &self.0 {
            if let Err(err) = handle.reload(level_filter(level)) {
                tracing::warn!(error = %err, "cannot apply log.level");
            }
        }
    }
}

/// The text log's filter for `[log] level` (or the `info` used while loading). rustls warns once
/// per handshake about what a client did wrong (an IP address as SNI, which OpenSSL-based
/// clients send for `https://127.0.0.1/`): any client could flood the log with it, so rustls is
/// kept to errors unless the level names it. `RUST_LOG` is taken as it is.
fn level_filter(level: &str) -> EnvFilter {
    let filter = EnvFilter::new(level);
    if level.contains("rustls") {
        return filter;
    }
    match "rustls=error".parse() {
        Ok(directive) => filter.add_directive(directive),
        Err(_) => filter,
    }
}

/// Access-log lines (target `rampart::access`) go to stdout as one JSON object per line, at any
/// level; every other line goes to stderr as text, filtered by `RUST_LOG`, else by `[log]
/// level` once the config is read (`info` until then).
fn init_tracing() -> LogLevel {
    let from_env = EnvFilter::try_from_default_env().ok();
    let env_set = from_env.is_some();
    let (level, handle) = reload::Layer::new(from_env.unwrap_or_else(|| level_filter("info")));
    let not_access = filter::filter_fn(|meta| {
        meta.target() != access_log::TARGET && meta.target() != rampart::policy::csp::TARGET
    });
    // Colour only for a person at a terminal; log collectors get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let text = fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_filter(level.and(not_access));
    // The event's fields are the whole line: `{"time":…,"request_id":…,…}`.
    let access = fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .without_time()
        .with_level(false)
        .with_target(false)
        .with_writer(std::io::stdout)
        .with_filter(
            filter::Targets::new()
                .with_target(access_log::TARGET, Level::INFO)
                .with_target(rampart::policy::csp::TARGET, Level::INFO),
        );
    tracing_subscriber::registry()
        .with(text)
        .with(access)
        .init();
    LogLevel((!env_set).then_some(handle))
}

fn print_errors(errors: &config::ConfigErrors) {
    for error in &errors.0 {
        eprintln!("{error}");
    }
}

fn run(path: &Path, watch: bool, copy_tuning: Option<copy_tuning::Outcome>) -> ExitCode {
    let log_level = init_tracing();
    match config::load_file(path) {
        Ok(snapshot) => {
            log_level.set_from_config(&snapshot.log.level);
            if let Some(development) = &snapshot.development_certificate {
                if let Err(err) = development.write() {
                    eprintln!("tls.cert: missing, and the development certificate could not be written: {err}");
                    return ExitCode::FAILURE;
                }
                tracing::warn!(
                    cert = %development.cert.display(),
                    key = %development.key.display(),
                    "GENERATED A SELF-SIGNED DEVELOPMENT CERTIFICATE (tls.self_signed_if_missing = true): browsers will not trust it; configure a real certificate for production"
                );
            }
            log_copy_tuning(copy_tuning);
            serve(snapshot, Some((path, watch, log_level)))
        }
        Err(errors) => {
            print_errors(&errors);
            ExitCode::FAILURE
        }
    }
}

/// Says whether large copies run with the tunable AMD Zen cores need (src/copy_tuning.rs): once
/// the config is good, so that a refused command's first line is still its error.
fn log_copy_tuning(outcome: Option<copy_tuning::Outcome>) {
    match outcome {
        Some(copy_tuning::Outcome::InEffect) => tracing::info!(
            glibc_tunables = %std::env::var("GLIBC_TUNABLES").unwrap_or_default(),
            "AMD Zen 3 or later CPU: glibc's rep movsb threshold as GLIBC_TUNABLES sets it (docs/operations.md, \"Large responses on AMD hosts\")"
        ),
        Some(copy_tuning::Outcome::ExecFailed(err)) => tracing::warn!(
            error = %err,
            "AMD Zen 3 or later CPU: could not start again with {}; large responses will cost more CPU (set GLIBC_TUNABLES yourself, docs/operations.md)",
            copy_tuning::SETTING
        ),
        Some(copy_tuning::Outcome::SecureExecution) => tracing::info!(
            "AMD Zen 3 or later CPU, but started setuid or with file capabilities: glibc ignores GLIBC_TUNABLES then, and large responses cost more CPU (docs/operations.md, \"Large responses on AMD hosts\")"
        ),
        Some(copy_tuning::Outcome::Dropped) => tracing::warn!(
            "AMD Zen 3 or later CPU: started again with {} but GLIBC_TUNABLES did not survive it; large responses will cost more CPU (docs/operations.md)",
            copy_tuning::SETTING
        ),
        Some(copy_tuning::Outcome::NotNeeded) | None => {}
    }
}

/// `rampart proxy --to URL`: the config a sidecar would write, built from the arguments.
fn proxy(args: &ProxyArgs, copy_tuning: Option<copy_tuning::Outcome>) -> ExitCode {
    init_tracing();
    if let Err(err) = rampart::upstream::ServerAddr::parse(&args.to) {
        eprintln!("--to: {err}");
        return ExitCode::FAILURE;
    }
    let sidecar = config::sidecar::Sidecar {
        to: args.to.clone(),
        https: args.https,
        http: args.http,
        https_port_public: args.https_port_public,
        admin: args.admin,
        headers_preset: args.headers.name(),
        csp: args.csp.clone(),
        max_body: args.max_body,
    };
    match config::load_model(sidecar.model(), "rampart proxy", MissingCert::InMemory) {
        Ok(mut snapshot) => {
            // Redirects name the port clients reach the https listener on: its own unless said
            // otherwise; `--https` on port 0 is known once bound (`Server::start`).
            if args.https_port_public.is_none() && args.https.port() == 0 {
                snapshot.listen.https_port_public = 0;
            }
            log_copy_tuning(copy_tuning);
            serve(snapshot, None)
        }
        Err(errors) => {
            print_errors(&errors);
            ExitCode::FAILURE
        }
    }
}

/// Serves until SIGTERM or SIGINT. With a config file, it is watched (unless `--no-watch`) and
/// SIGHUP reloads it.
fn serve(snapshot: rampart::Snapshot, config_file: Option<(&Path, bool, LogLevel)>) -> ExitCode {
    // The control plane (signals, config watch, the plain-http and admin listeners, health
    // checks): one thread. The https listener runs on `listen.workers` threads of its own
    // (`rampart::runtime`).
    let runtime = match tokio::runtime::Builder::new_current_thread()
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
        // Handlers first: a signal that arrives while the server starts is never the default
        // action (SIGHUP's would kill the process).
        let mut signals = match Signals::install() {
            Ok(signals) => signals,
            Err(err) => {
                eprintln!("cannot install signal handlers: {err}");
                return ExitCode::FAILURE;
            }
        };
        let handle = match rampart::Server::start(snapshot).await {
            Ok(handle) => handle,
            Err(err) => {
                eprintln!("{err}");
                return ExitCode::FAILURE;
            }
        };
        let watch = config_file.map(|(path, watch, log_level)| {
            // `[log] level` follows each reload.
            let reloader = handle
                .reloader()
                .on_apply(move |snapshot| log_level.set_from_config(&snapshot.log.level));
            ConfigWatch::spawn(path.to_path_buf(), reloader, watch)
        });
        signals.wait_for_shutdown(watch.as_ref()).await;
        drop(watch);
        tracing::info!("shutting down: finishing in-flight requests");
        handle.shutdown().await;
        ExitCode::SUCCESS
    })
}

/// SIGTERM and SIGINT stop rampart; SIGHUP reloads its config.
struct Signals {
    term: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }

    /// Returns on SIGTERM or SIGINT; SIGHUP reloads the config meanwhile.
    async fn wait_for_shutdown(&mut self, watch: Option<&ConfigWatch>) {
        loop {
            tokio::select! {
                _ = self.term.recv() => return,
                _ = self.interrupt.recv() => return,
                _ = self.hangup.recv() => match watch {
                    Some(watch) => watch.reload_now(),
                    None => tracing::warn!("SIGHUP ignored: there is no config file to reload"),
                },
            }
        }
    }
}

fn check(path: &Path, skip_missing_paths: bool, diff_from: Option<&Path>) -> ExitCode {
    let missing = if skip_missing_paths {
        MissingCert::Unseen
    } else {
        MissingCert::Warn
    };
    match config::load_file_with(path, missing) {
        Ok(snapshot) => {
            for warning in &snapshot.warnings {
                eprintln!("warning: {warning}");
            }
            println!("{}: ok", path.display());
            match diff_from {
                Some(old) => print_diff(old, path),
                None => ExitCode::SUCCESS,
            }
        }
        Err(errors) => {
            print_errors(&errors);
            ExitCode::FAILURE
        }
    }
}

/// `check --diff OLD`: the changes, one indented line each, after FILE's `ok`.
fn print_diff(old: &Path, new: &Path) -> ExitCode {
    let sides = config::diff::Side::read(old).and_then(|o| Ok((o, config::diff::Side::read(new)?)));
    match sides {
        Ok((before, after)) => {
            println!("changes from {}:", old.display());
            for line in config::diff::describe(&before, &after).lines() {
                println!("  {line}");
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("--diff: {err}");
            ExitCode::FAILURE
        }
    }
}

/// `--name`: a plain file name stem, so that the files land in `--out` and nowhere else.
fn cert_name(name: &str) -> Result<String, String> {
    let plain =
        !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\', '\0']);
    if plain {
        Ok(name.to_string())
    } else {
        Err("a file name without a folder (e.g. \"tls\"); use --out for the folder".to_string())
    }
}

/// `rampart hash-password`: the password is the first line of stdin (its line ending dropped,
/// nothing else trimmed), so `echo 's3cret' | rampart hash-password` and a typed line both work.
fn hash_password() -> ExitCode {
    use std::io::Read;
    let mut input = Vec::new();
    if let Err(err) = std::io::stdin().lock().take(4096).read_to_end(&mut input) {
        eprintln!("cannot read the password from stdin: {err}");
        return ExitCode::FAILURE;
    }
    let line = input.split(|b| *b == b'\n').next().unwrap_or(&[]);
    let password = line.strip_suffix(b"\r").unwrap_or(line);
    if password.is_empty() {
        eprintln!("no password on stdin (usage: echo 'PASSWORD' | rampart hash-password)");
        return ExitCode::FAILURE;
    }
    match rampart::policy::auth::basic::hash_password(password) {
        Ok(hash) => {
            println!("{hash}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("hashing failed: {err}");
            ExitCode::FAILURE
        }
    }
}

fn cert(hosts: &[String], out: &std::path::Path, name: &str) -> ExitCode {
    let cert_path = out.join(format!("{name}.crt"));
    let key_path = out.join(format!("{name}.key"));
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

/// How long `healthcheck` waits for the whole exchange (Docker's own default timeout is 30 s;
/// a healthy admin listener answers in milliseconds).
const HEALTHCHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

fn healthcheck(url: Option<String>, config: &Path) -> ExitCode {
    let url = url
        .or_else(|| rampart::admin::configured_healthz_url(config))
        .unwrap_or_else(|| "http://127.0.0.1:9090/healthz".to_string());
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("rampart healthcheck: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(rampart::admin::probe(&url, HEALTHCHECK_TIMEOUT)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(reason) => {
            eprintln!("rampart healthcheck: {reason}");
            ExitCode::FAILURE
        }
    }
}

/// `rampart bans list|remove IP`: `GET /bans` or `DELETE /bans/IP` on the admin listener; the
/// answer's body on stdout, exit 0 on 200.
fn bans(action: BansAction, url: Option<String>, config: &Path) -> ExitCode {
    let base = url
        .or_else(|| rampart::admin::configured_admin_base(config))
        .unwrap_or_else(|| "http://127.0.0.1:9090".to_string());
    let (method, path) = match &action {
        BansAction::List => (http::Method::GET, "/bans".to_string()),
        BansAction::Remove { ip } => {
            let address = ip.strip_suffix("/64").unwrap_or(ip);
            if address.parse::<std::net::IpAddr>().is_err() {
                eprintln!("rampart bans remove: {ip:?} is not an IP address");
                return ExitCode::FAILURE;
            }
            (http::Method::DELETE, format!("/bans/{address}"))
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("rampart bans: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let answer = rampart::admin::admin_request(&base, method, &path, HEALTHCHECK_TIMEOUT);
    match runtime.block_on(answer) {
        Ok((status, body)) if status == http::StatusCode::OK => {
            print!("{body}");
            ExitCode::SUCCESS
        }
        Ok((status, body)) => {
            eprint!("rampart bans: {status}: {body}");
            ExitCode::FAILURE
        }
        Err(reason) => {
            eprintln!("rampart bans: {reason}");
            ExitCode::FAILURE
        }
    }
}

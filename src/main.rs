//! The `knockgate` command: the daemon, the config checker, the knock client, the knockd.conf
//! importer, the capture replayer and the first-boot step of the SD-card image.
#![forbid(unsafe_code)]

use std::fs::OpenOptions;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use knockgate::cli::client::{self, Family};
use knockgate::cli::{bootfiles, firstboot, knockd_import, replay};
use knockgate::{config, daemon};

/// sysexits.h EX_CONFIG: the config is invalid.
const EX_CONFIG: u8 = 78;

#[derive(Parser)]
#[command(
    name = "knockgate",
    version,
    about = "Port-knocking daemon for a home gateway, compatible with knockd"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the daemon.
    Run {
        /// Config file [default: /etc/knockgate/knockgate.toml, or a built-in config if missing]
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// Interface to listen on (repeat for several); overrides the config
        #[arg(short, long = "interface")]
        interface: Vec<String>,
        /// Log what every action would do instead of doing it
        #[arg(long)]
        dry_run: bool,
        /// Where `knockgate bootfiles` leaves this boot's setup problems for the status page
        #[arg(long, default_value = bootfiles::NOTICES_DIR)]
        notices_dir: PathBuf,
    },
    /// Validate a config: exit 0 if fine, 78 with the error otherwise.
    Check {
        #[arg(short, long)]
        config: Option<PathBuf>,
    },
    /// Send a knock sequence (like knockd's `knock`).
    Knock(KnockArgs),
    /// Print the current ports of a time-based (hmac) door, to knock by hand or with an app.
    Otp(HmacArgs),
    /// Convert a knockd.conf to knockgate TOML (printed on stdout).
    ImportKnockd { file: PathBuf },
    /// Run a capture file through the parser and engine and print what would happen.
    Replay {
        #[arg(short, long)]
        config: PathBuf,
        /// Only knocks to these addresses count for doors without a target (default: any)
        #[arg(long)]
        local: Vec<IpAddr>,
        capture: PathBuf,
    },
    /// Generate the knock sequences left empty (`sequence = []`) in the config, at the first
    /// boot of an SD-card image; write them down in the boot directory, then in the config.
    #[command(after_help = FIRSTBOOT_HELP)]
    Firstboot {
        /// Config file to fill in
        #[arg(short, long, default_value = config::DEFAULT_CONFIG_PATH)]
        config: PathBuf,
        /// Where the note for the owner goes: the boot partition, readable from any PC
        /// (e.g. /boot/firmware on Raspberry Pi OS)
        #[arg(long)]
        boot_dir: PathBuf,
        /// The note's file name in the boot directory
        #[arg(long, default_value = firstboot::DEFAULT_NOTE, value_parser = note_name)]
        file: String,
    },
    /// Take in the settings the owner put on the boot partition: wifi.txt (or
    /// wpa_supplicant.conf) for wlan0, and knockgate.toml for the daemon.
    #[command(after_help = BOOTFILES_HELP)]
    Bootfiles {
        /// The boot partition (e.g. /boot/firmware)
        #[arg(long)]
        boot_dir: PathBuf,
        /// The daemon's config, replaced by a valid knockgate.toml from the boot partition
        #[arg(short, long, default_value = config::DEFAULT_CONFIG_PATH)]
        config: PathBuf,
        /// wlan0's wpa_supplicant config, written from wifi.txt
        #[arg(long, default_value = bootfiles::DEFAULT_WPA_CONF)]
        wpa_conf: PathBuf,
        /// Where problems are left for the status page
        #[arg(long, default_value = bootfiles::NOTICES_DIR)]
        notices_dir: PathBuf,
    },
}

const BOOTFILES_HELP: &str = "\
wifi.txt (TOML, as the config):
    country = \"DE\"          your two-letter country code (mandatory)
    ssid = \"My network\"
    password = \"my passphrase\"   (WPA2-PSK, 8 to 63 characters, or the 64-hex-digit key)
    hidden = true            (only if the network does not broadcast its name)
It becomes wpa_supplicant's config for wlan0 (mode 600, the derived key instead of the
passphrase). A wpa_supplicant.conf with a country= line is taken as it is instead.
knockgate.toml replaces the daemon's config if it passes `knockgate check` (sequence = []
allowed). Each file taken in is removed from the boot partition; a file with an error is
left there, the current settings are kept, and the error (file:line: key) is printed and
shown on the status page. Secrets are never printed.

Exit status:
  0   every file present was taken in, or none was present
  1   a file was refused or could not be written (the others were still taken in)
  2   invalid arguments";

const FIRSTBOOT_HELP: &str = "\
Each door written `sequence = []` gets 3 distinct random TCP ports from 10000-65000 (the
kernel's CSPRNG), none used elsewhere in the config nor 22, never in ascending or descending
order. The note (plain text, CRLF) is written and synced first, then only the `[]` of each
door is replaced in the config, atomically; the ports are never printed or logged. With no
`sequence = []` left it prints \"nothing to do\" and changes nothing.

Exit status:
  0   sequences generated, or nothing to do
  78  the config is invalid for another reason, or a file it names cannot be read (as
      `knockgate check`); nothing was written
  1   the boot directory is missing, a file cannot be written, or no random numbers
  2   invalid arguments";

#[derive(Args)]
struct KnockArgs {
    /// Host to knock on
    host: String,
    /// Knocks: PORT[:tcp|udp] (or a service name from /etc/services); none with --secret-file
    #[arg(
        required_unless_present = "secret_file",
        conflicts_with = "secret_file"
    )]
    ports: Vec<String>,
    #[command(flatten)]
    hmac: HmacArgs,
    /// Make UDP the default protocol
    #[arg(short, long)]
    udp: bool,
    /// Wait this many milliseconds after each knock
    #[arg(short, long, default_value_t = 0)]
    delay: u64,
    /// Use IPv4 only
    #[arg(short = '4', conflicts_with = "ipv6")]
    ipv4: bool,
    /// Use IPv6 only
    #[arg(short = '6')]
    ipv6: bool,
    /// Say what is sent
    #[arg(short, long)]
    verbose: bool,
}

/// A door whose sequence comes from a secret and the time (`hmac = {...}` in the config).
#[derive(Args)]
struct HmacArgs {
    /// Compute the sequence from this secret file (the door's `hmac.secret_file`)
    #[arg(long, requires = "door")]
    secret_file: Option<PathBuf>,
    /// The door's name (part of the derivation)
    #[arg(long)]
    door: Option<String>,
    /// Knocks in the sequence (the door's `hmac.steps`)
    #[arg(long, default_value_t = 4)]
    steps: usize,
    /// Port range (the door's `hmac.ports`)
    #[arg(long, default_value = "10000-60000")]
    port_range: String,
    /// Window length in seconds (the door's `hmac.window`)
    #[arg(long, default_value_t = 30)]
    window: u64,
}

impl HmacArgs {
    /// The current sequence, if a secret file was given.
    fn sequence(&self) -> anyhow::Result<Option<Vec<knockgate::knock::KnockSpec>>> {
        let (Some(file), Some(door)) = (&self.secret_file, &self.door) else {
            return Ok(None);
        };
        let secret = knockgate::doors::hmacseq::Secret::load(file)?;
        let (first, last) = self
            .port_range
            .split_once('-')
            .and_then(|(a, b)| Some((a.trim().parse().ok()?, b.trim().parse().ok()?)))
            .filter(|(a, b): &(u16, u16)| *a >= 1 && b > a)
            .ok_or_else(|| {
                anyhow::anyhow!("--port-range `{}`: expected FIRST-LAST", self.port_range)
            })?;
        anyhow::ensure!((2..=8).contains(&self.steps), "--steps: from 2 to 8");
        anyhow::ensure!(self.window >= 5, "--window: at least 5 seconds");
        let params = knockgate::doors::hmacseq::Params {
            steps: self.steps,
            first,
            last,
            window: self.window,
        };
        let now = knockgate::time::unix_secs(knockgate::time::wall_now());
        Ok(Some(knockgate::doors::hmacseq::sequence(
            &secret,
            door,
            params.counter(now),
            &params,
        )))
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Run {
            config,
            interface,
            dry_run,
            notices_dir,
        } => exit(run_daemon(config, interface, dry_run, notices_dir)),
        Cmd::Check { config } => check(config.as_deref()),
        Cmd::Knock(args) => exit(knock(args)),
        Cmd::Otp(args) => exit(otp(&args)),
        Cmd::ImportKnockd { file } => import(&file),
        Cmd::Replay {
            config,
            local,
            capture,
        } => exit(run_replay(&config, &local, &capture)),
        Cmd::Firstboot {
            config,
            boot_dir,
            file,
        } => first_boot(firstboot::Options {
            config,
            boot_dir,
            file_name: file,
        }),
        Cmd::Bootfiles {
            boot_dir,
            config,
            wpa_conf,
            notices_dir,
        } => boot_files(&bootfiles::Options {
            boot_dir,
            config,
            wpa_conf,
            notices_dir,
        }),
    }
}

fn boot_files(opts: &bootfiles::Options) -> ExitCode {
    let report = bootfiles::run(opts);
    for line in &report.done {
        println!("{line}");
    }
    for line in &report.problems {
        eprintln!("knockgate: {line}");
    }
    if report.done.is_empty() && report.problems.is_empty() {
        println!(
            "nothing to do: no wifi.txt, wpa_supplicant.conf or knockgate.toml in {}",
            opts.boot_dir.display()
        );
    }
    if report.problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `--file`: a plain file name, to be created in the boot directory.
fn note_name(name: &str) -> Result<String, String> {
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\\', '\0']) {
        return Err("expected a file name, without a directory".to_string());
    }
    Ok(name.to_string())
}

fn first_boot(opts: firstboot::Options) -> ExitCode {
    let mut rng = match firstboot::OsRng::open() {
        Ok(r) => r,
        Err(source) => {
            let e = firstboot::FirstbootError::Random { source };
            eprintln!("knockgate: {e}");
            return ExitCode::FAILURE;
        }
    };
    match firstboot::run(&opts, &mut rng) {
        Ok(firstboot::Outcome::NothingToDo) => {
            println!(
                "nothing to do: no door has `sequence = []` in {}",
                opts.config.display()
            );
            ExitCode::SUCCESS
        }
        Ok(firstboot::Outcome::Generated { doors, note }) => {
            for door in doors {
                println!(
                    "door {door}: knock sequence generated and written to {}",
                    note.display()
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            let config_error = matches!(
                e,
                firstboot::FirstbootError::Config(_) | firstboot::FirstbootError::Sources(_)
            );
            eprintln!("knockgate: {e}");
            if config_error {
                ExitCode::from(EX_CONFIG)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn exit(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("knockgate: {e:#}");
            let config_error = e.downcast_ref::<config::ConfigError>().is_some()
                || e.downcast_ref::<knockgate::doors::SourceError>().is_some()
                || e.downcast_ref::<knockgate::cli::replay::ReplayError>()
                    .is_some_and(|r| matches!(r, knockgate::cli::replay::ReplayError::Doors(_)))
                || matches!(
                    e.downcast_ref::<daemon::DaemonError>(),
                    Some(daemon::DaemonError::Config(_) | daemon::DaemonError::Doors(_))
                );
            if config_error {
                ExitCode::from(EX_CONFIG)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// Logs to stderr (journald) or the config's log file, and also to syslog with `syslog = true`.
/// The level is `info` unless `KNOCKGATE_LOG` says otherwise (`debug`, `warn`, ...).
fn init_logging(cfg: &config::Config) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;

    let filter =
        EnvFilter::try_from_env("KNOCKGATE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let main = match &cfg.daemon.log_file {
        Some(path) => {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("cannot open log file {}", path.display()))?;
            tracing_subscriber::fmt::layer()
                .with_target(false)
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(file))
                .boxed()
        }
        None => tracing_subscriber::fmt::layer()
            .with_target(false)
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr)
            .boxed(),
    };
    let syslog = cfg.daemon.syslog.then(|| {
        tracing_subscriber::fmt::layer()
            .without_time()
            .with_level(false)
            .with_target(false)
            .with_ansi(false)
            .with_writer(knockgate::sys::syslog::Syslog::at(Path::new(
                knockgate::sys::syslog::DEFAULT_SOCKET,
            )))
    });
    tracing_subscriber::registry()
        .with(filter)
        .with(main)
        .with(syslog)
        .init();
    Ok(())
}

fn run_daemon(
    config: Option<PathBuf>,
    interfaces: Vec<String>,
    dry_run: bool,
    notices_dir: PathBuf,
) -> anyhow::Result<()> {
    let cfg = daemon::load_config(config.as_deref())?;
    init_logging(&cfg)?;
    if cfg.origin == config::BUILTIN_ORIGIN {
        tracing::warn!(
            "no config file at {}: running the built-in example config (it only logs knocks)",
            config::DEFAULT_CONFIG_PATH
        );
    }
    let opts = daemon::Options {
        config_path: config,
        interfaces,
        dry_run,
        notices_dir: Some(notices_dir),
    };
    daemon::run(opts, cfg)?;
    Ok(())
}

fn check(path: Option<&Path>) -> ExitCode {
    let loaded = daemon::load_config(path)
        .map_err(|e| e.to_string())
        .and_then(|cfg| {
            knockgate::doors::Dynamic::load(&cfg)
                .map(|_| cfg)
                .map_err(|e| e.to_string())
        });
    match loaded {
        Ok(cfg) => {
            println!("{}: OK, {} door(s)", cfg.origin, cfg.doors.len());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("knockgate: {e}");
            ExitCode::from(EX_CONFIG)
        }
    }
}

fn knock(args: KnockArgs) -> anyhow::Result<()> {
    let family = match (args.ipv4, args.ipv6) {
        (true, _) => Family::V4,
        (_, true) => Family::V6,
        _ => Family::Any,
    };
    let knocks = match args.hmac.sequence()? {
        Some(seq) => seq,
        None => args
            .ports
            .iter()
            .map(|p| client::parse_knock(p, args.udp))
            .collect::<Result<Vec<_>, _>>()?,
    };
    let addr = client::resolve(&args.host, family)?;
    let plan = client::Plan {
        addr,
        knocks,
        delay: Duration::from_millis(args.delay),
    };
    client::run(&plan, |k| {
        if args.verbose {
            println!("hitting {} {}:{}", k.proto, addr, k.port);
        }
    })?;
    Ok(())
}

fn otp(args: &HmacArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.secret_file.is_some(), "give --secret-file and --door");
    let seq = args.sequence()?.expect("secret file given");
    let ports: Vec<String> = seq.iter().map(|k| k.port.to_string()).collect();
    println!("{}", ports.join(" "));
    Ok(())
}

fn import(file: &Path) -> ExitCode {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("knockgate: {}: {e}", file.display());
            return ExitCode::FAILURE;
        }
    };
    match knockd_import::import(&text, &file.display().to_string()) {
        Ok(toml) => {
            print!("{toml}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("knockgate: {e}");
            ExitCode::from(EX_CONFIG)
        }
    }
}

fn run_replay(config: &Path, local: &[IpAddr], capture: &Path) -> anyhow::Result<()> {
    let cfg = config::load(config)?;
    let stdout = std::io::stdout();
    replay::replay(&cfg, capture, local, &mut stdout.lock())?;
    Ok(())
}

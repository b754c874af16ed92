//! The `knockgate` command: the daemon, the config checker, the knock client, the knockd.conf
//! importer, the capture replayer and the first-boot step of the SD-card image.
#![forbid(unsafe_code)]

use std::fs::OpenOptions;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tracing_subscriber::filter::Targets;

use knockgate::cli::args::{Cli, Cmd, HmacArgs, KnockArgs, SpaCmd};
use knockgate::cli::client::{self, Family};
use knockgate::cli::{bootfiles, firstboot, knockd_import, replay};
use knockgate::{config, daemon};

/// sysexits.h EX_CONFIG: the config is invalid.
const EX_CONFIG: u8 = 78;

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("knockgate: {}", message(&e));
            exit_code(&e)
        }
    }
}

/// Runs one command. A command that reports its own problems (several of them, as
/// `bootfiles` does) returns the code to exit with; any other failure is an error, printed and
/// mapped to an exit code in one place ([`exit_code`]).
fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Cmd::Run {
            config,
            interface,
            dry_run,
            notices_dir,
        } => run_daemon(config, interface, dry_run, notices_dir)?,
        Cmd::Check { config } => check(config.as_deref())?,
        Cmd::Knock(args) => knock(args)?,
        Cmd::Otp(args) => otp(&args)?,
        Cmd::ImportKnockd { file } => import(&file)?,
        Cmd::Replay {
            config,
            local,
            capture,
        } => run_replay(&config, &local, &capture)?,
        Cmd::Firstboot {
            config,
            boot_dir,
            file,
        } => first_boot(firstboot::Options {
            config,
            // The first directory that exists; none: the first, for the error.
            boot_dir: boot_dir
                .iter()
                .find(|d| d.is_dir())
                .unwrap_or(&boot_dir[0])
                .clone(),
            file_name: file,
        })?,
        Cmd::RemoveChain { config } => remove_chain(config.as_deref())?,
        Cmd::Phone {
            door,
            config,
            host,
            out,
            page,
        } => phone(&door, config.as_deref(), host, &out, page.as_deref())?,
        Cmd::Spa(SpaCmd::Keygen {
            key_file,
            hmac_key_file,
            force,
            owner,
            server,
            access,
            port,
        }) => spa_keygen(
            &knockgate::cli::spa::KeygenOptions {
                key_file,
                hmac_key_file,
                force,
                server,
                access,
                port,
            },
            &owner,
        )?,
        Cmd::Bootfiles {
            boot_dir,
            config,
            wpa_conf,
            notices_dir,
        } => {
            return Ok(boot_files(&bootfiles::Options {
                boot_dir,
                config,
                wpa_conf,
                notices_dir,
            }))
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The error and its causes, each cause once: a message that already says its cause (as
/// the config's errors do) is not followed by it again.
fn message(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

/// The exit code of a failed command: EX_CONFIG when the config (or a file it names: a
/// one-time list, a secret, a key; a knockd.conf being imported) is what is wrong, 1 for
/// anything else.
fn exit_code(e: &anyhow::Error) -> ExitCode {
    use knockgate::cli::firstboot::FirstbootError;
    use knockgate::cli::replay::ReplayError;
    use knockgate::daemon::DaemonError;
    let config = e.chain().any(|c| {
        c.is::<config::ConfigError>()
            || c.is::<knockgate::doors::SourceError>()
            || c.is::<knockd_import::ImportError>()
            || matches!(c.downcast_ref(), Some(ReplayError::Doors(_)))
            || matches!(
                c.downcast_ref(),
                Some(DaemonError::Config(_) | DaemonError::Doors(_))
            )
            || matches!(
                c.downcast_ref(),
                Some(FirstbootError::Config(_) | FirstbootError::Sources(_))
            )
    });
    if config {
        ExitCode::from(EX_CONFIG)
    } else {
        ExitCode::FAILURE
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

fn first_boot(opts: firstboot::Options) -> anyhow::Result<()> {
    let mut rng =
        firstboot::OsRng::open().map_err(|source| firstboot::FirstbootError::Random { source })?;
    match firstboot::run(&opts, &mut rng)? {
        firstboot::Outcome::NothingToDo => println!(
            "nothing to do: no door has `sequence = []` in {}",
            opts.config.display()
        ),
        firstboot::Outcome::Generated { doors, note } => {
            for door in doors {
                println!(
                    "door {door}: knock sequence generated and written to {}",
                    note.display()
                );
            }
        }
    }
    Ok(())
}

/// Logs to stderr (journald) or the config's log file, and also to syslog with `syslog = true`.
/// The level is `info` unless `KNOCKGATE_LOG` says otherwise (`debug`, `warn`, ...).
fn init_logging(cfg: &config::Config) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;

    let filter: Targets = std::env::var("KNOCKGATE_LOG")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| Targets::new().with_default(tracing::Level::INFO));
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

fn check(path: Option<&Path>) -> anyhow::Result<()> {
    let cfg = daemon::load_config(path)?;
    knockgate::doors::Dynamic::load(&cfg)?;
    // The MQTT client's files: the daemon starts without MQTT if they are wrong (the doors
    // do not depend on it), so `check` is where the owner hears of it.
    if let Some(m) = &cfg.mqtt {
        let problem = |key: &str, message: String| config::ConfigError {
            file: cfg.origin.clone(),
            line: None,
            key: Some(key.into()),
            message,
        };
        if let Some(p) = &m.password_file {
            knockgate::mqtt::client::read_password(p)
                .map_err(|e| problem("mqtt.password_file", e))?;
        }
        if m.tls {
            let ca = m
                .ca_file
                .clone()
                .unwrap_or_else(|| config::SYSTEM_CA_FILE.into());
            std::fs::File::open(&ca).map_err(|e| {
                problem("mqtt.ca_file", format!("cannot read {}: {e}", ca.display()))
            })?;
        }
    }
    println!("{}: OK, {} door(s)", cfg.origin, cfg.doors.len());
    if cfg.uses_firewall() {
        use knockgate::config::Backend;
        let f = &cfg.firewall;
        match f.backend {
            Backend::Iptables => println!(
                "firewall: iptables, chain {} jumped to from INPUT rule {}",
                f.chain, f.jump_position
            ),
            Backend::Nftables => println!(
                "firewall: nftables, sets knockgate_allow4/6 and their rules at {} of {}",
                f.jump_position, f.nft_chain
            ),
            Backend::None => println!("firewall: none (doors only logged)"),
        }
    }
    Ok(())
}

fn spa_keygen(opts: &knockgate::cli::spa::KeygenOptions, owner: &str) -> anyhow::Result<()> {
    let mut random = std::fs::File::open("/dev/random").context("/dev/random")?;
    let stanza = knockgate::cli::spa::keygen(opts, &mut random).map_err(anyhow::Error::msg)?;
    // The daemon reads the files as its own user (the unit's User=knockgate).
    if let Ok(Some(user)) = nix::unistd::User::from_name(owner) {
        for f in [&opts.key_file, &opts.hmac_key_file] {
            std::os::unix::fs::chown(f, Some(user.uid.as_raw()), Some(user.gid.as_raw()))
                .with_context(|| format!("cannot give {} to {owner}", f.display()))?;
        }
    }
    eprintln!(
        "knockgate: keys written to {} and {}; the door:\n  spa = {{ key_file = \"{}\", hmac_key_file = \"{}\" }}",
        opts.key_file.display(),
        opts.hmac_key_file.display(),
        opts.key_file.display(),
        opts.hmac_key_file.display()
    );
    print!("{stanza}");
    Ok(())
}

fn remove_chain(path: Option<&Path>) -> anyhow::Result<()> {
    use knockgate::config::{Backend, FirewallConfig};
    let path = path.unwrap_or(Path::new(config::DEFAULT_CONFIG_PATH));
    // `sequence = []` is fine here: only [firewall] matters.
    let read = std::fs::read_to_string(path)
        .map_err(|e| e.to_string())
        .and_then(|text| {
            config::parse_unfilled(&text, &path.display().to_string()).map_err(|e| e.to_string())
        });
    let fw = match read {
        Ok((cfg, _)) => cfg.firewall,
        Err(e) => {
            let fw = FirewallConfig::default();
            eprintln!("knockgate: {e}; removing the default chain {}", fw.chain);
            fw
        }
    };
    if fw.backend == Backend::None {
        println!("nothing to do: the config has [firewall] backend = \"none\"");
        return Ok(());
    }
    // Through the daemon's own backend for this [firewall].
    let backends = daemon::Backends::system();
    let what = match fw.backend {
        Backend::Nftables => format!(
            "knockgate's sets and rules in {} (the rest of that table as it was)",
            fw.nft_chain
        ),
        _ => format!("chain {} and its INPUT jump (IPv4 and IPv6)", fw.chain),
    };
    (backends.firewall)(&fw, &backends.steps)
        .remove_chain()
        .with_context(|| format!("cannot remove {what}"))?;
    println!("removed {what}");
    // What the other backend left, if the config changed backends since: removed too, when
    // it is there (looked at first without changing anything; a missing iptables or nft is
    // nothing to remove).
    use knockgate::actions::firewall::{iptables::Iptables, nft::Nft};
    match fw.backend {
        Backend::Nftables => {
            let old = Iptables::new(&fw.chain, 1);
            if old.has_chain() {
                old.remove_chain()
                    .with_context(|| format!("cannot remove the old chain {}", fw.chain))?;
                println!(
                    "removed the chain {} of the iptables backend used before",
                    fw.chain
                );
            }
        }
        _ => {
            let mut old = Nft::new(&fw.nft_chain, 1);
            if old.has_anything() {
                knockgate::actions::firewall::Firewall::remove_chain(&mut old).with_context(
                    || {
                        format!(
                            "cannot remove knockgate's sets and rules in {}",
                            fw.nft_chain
                        )
                    },
                )?;
                println!(
                    "removed knockgate's sets and rules in {} of the nftables backend used before",
                    fw.nft_chain
                );
            }
        }
    }
    Ok(())
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

fn import(file: &Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(file).with_context(|| file.display().to_string())?;
    print!(
        "{}",
        knockd_import::import(&text, &file.display().to_string())?
    );
    Ok(())
}

fn run_replay(config: &Path, local: &[IpAddr], capture: &Path) -> anyhow::Result<()> {
    let cfg = daemon::load_config(Some(config))?;
    let stdout = std::io::stdout();
    replay::replay(&cfg, capture, local, &mut stdout.lock())?;
    Ok(())
}

fn phone(
    name: &str,
    path: Option<&Path>,
    host: Option<String>,
    out: &Path,
    page: Option<&Path>,
) -> anyhow::Result<()> {
    let cfg = daemon::load_config(path)?;
    let Some(door) = cfg.doors.iter().find(|d| d.name == name) else {
        let names: Vec<&str> = cfg.doors.iter().map(|d| d.name.as_str()).collect();
        anyhow::bail!(
            "{}: no door named `{name}` (doors: {})",
            cfg.origin,
            names.join(", ")
        );
    };
    let host = host.unwrap_or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "knockgate".into())
    });
    if let Some(file) = page {
        use knockgate::cli::knock_page::{self, Knocks};
        let secret;
        let knocks = match &door.hmac {
            Some(h) => {
                secret = knockgate::doors::hmacseq::Secret::load(&h.secret_file)?;
                Knocks::Hmac {
                    secret: secret.bytes(),
                    params: &h.params,
                }
            }
            None => Knocks::Fixed(&door.sequence),
        };
        let html = knock_page::page(&door.name, &host, &knocks).map_err(anyhow::Error::msg)?;
        knockgate::sys::fsutil::write_atomic_keep_owner(file, html.as_bytes())
            .with_context(|| format!("cannot write {}", file.display()))?;
        println!(
            "{}: the knock page (open it in the phone's browser; it holds the door's secret)",
            file.display()
        );
        if door.hmac.is_some() || door.sequence.is_empty() {
            return Ok(());
        }
    }
    let keys = match &door.spa {
        Some(s) => Some((
            knockgate::doors::spa::read_key_file(&s.key_file).map_err(anyhow::Error::msg)?,
            knockgate::doors::spa::read_key_file(&s.hmac_key_file).map_err(anyhow::Error::msg)?,
        )),
        None => None,
    };
    let made = knockgate::cli::phone::phone(
        door,
        &host,
        keys.as_ref().map(|(k, h)| (k.as_slice(), h.as_slice())),
    )
    .map_err(anyhow::Error::msg)?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    println!("{}\n{}\n", made.terminal, made.qr_text);
    for f in &made.files {
        let path = out.join(&f.name);
        // Private (mode 600) and durable: they hold the door's secret.
        knockgate::sys::fsutil::write_atomic_keep_owner(&path, &f.bytes)
            .with_context(|| format!("cannot write {}", path.display()))?;
        println!("{}: {}", path.display(), f.what);
    }
    println!("Delete these files once the phone has imported them: they hold the door's secret.");
    Ok(())
}

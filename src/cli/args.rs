//! The command line, as clap reads it: shared by the `knockgate` binary and the generator of
//! its man pages and shell completions (`examples/gen-docs.rs`, run by `scripts/deb.sh`).

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::cli::{bootfiles, firstboot};
use crate::config;

const LONG_ABOUT: &str = "\
Port-knocking daemon for a home gateway, compatible with knockd.

knockgate watches the network interfaces with libpcap (no open port) for secret sequences of
TCP/UDP knocks to closed ports. When a source address knocks a door's sequence, knockgate opens
the door for that address: an ACCEPT rule in its own iptables chain (KNOCKD, jumped to from
INPUT), closed after the door's duration, by a closing sequence or by the daily flush; and runs
the door's commands, relays (GPIO) and wake-on-LAN. A status page shows what happens.

knockd.conf files convert with `knockgate import-knockd`; knockd's `knock` client, nmap, nc and
knock apps work as clients, as does `knockgate knock`.";

#[derive(Parser)]
#[command(
    name = "knockgate",
    version,
    about = "Port-knocking daemon for a home gateway, compatible with knockd",
    long_about = LONG_ABOUT
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Subcommand)]
pub enum Cmd {
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
        /// (e.g. /boot/firmware on Raspberry Pi OS). Repeat it for fallbacks: the first one
        /// that exists is used (the package: /boot/firmware, else /etc/knockgate)
        #[arg(long, required = true)]
        boot_dir: Vec<PathBuf>,
        /// The note's file name in the boot directory
        #[arg(long, default_value = firstboot::DEFAULT_NOTE, value_parser = note_name)]
        file: String,
    },
    /// Remove knockgate's firewall chain and its INPUT jump, IPv4 and IPv6 (every door
    /// closed), touching no other rule: what `apt remove` runs after stopping the daemon.
    /// The daemon creates them again when it starts.
    RemoveChain {
        /// The config that names the chain [default: /etc/knockgate/knockgate.toml; the chain
        /// KNOCKD if it is missing or invalid]
        #[arg(short, long)]
        config: Option<PathBuf>,
    },
    /// What a phone app imports for DOOR: a Knock on Ports file, a knockd.conf snippet and a
    /// QR code of the sequence (fixed doors), or fwknop's QR string and .fwknoprc stanza (SPA
    /// doors). The files hold the door's secret (mode 600): delete them once imported.
    Phone {
        /// The door's name
        door: String,
        /// The config [default: /etc/knockgate/knockgate.toml]
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// The gateway's name or address as the phone reaches it [default: this host's name]
        #[arg(long)]
        host: Option<String>,
        /// Where the files go
        #[arg(long, default_value = ".")]
        out: PathBuf,
        /// Also write a knock page for any browser to this file (fixed and HMAC doors)
        #[arg(long)]
        page: Option<PathBuf>,
    },
    /// fwknop's Single Packet Authorization: `keygen` makes an SPA door's keys.
    #[command(subcommand)]
    Spa(SpaCmd),
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
pub struct KnockArgs {
    /// Host to knock on
    pub host: String,
    /// Knocks: PORT[:tcp|udp] (or a service name from /etc/services); none with --secret-file
    #[arg(
        required_unless_present = "secret_file",
        conflicts_with = "secret_file"
    )]
    pub ports: Vec<String>,
    #[command(flatten)]
    pub hmac: HmacArgs,
    /// Make UDP the default protocol
    #[arg(short, long)]
    pub udp: bool,
    /// Wait this many milliseconds after each knock
    #[arg(short, long, default_value_t = 0)]
    pub delay: u64,
    /// Use IPv4 only
    #[arg(short = '4', conflicts_with = "ipv6")]
    pub ipv4: bool,
    /// Use IPv6 only
    #[arg(short = '6')]
    pub ipv6: bool,
    /// Say what is sent
    #[arg(short, long)]
    pub verbose: bool,
}

/// A door whose sequence comes from a secret and the time (`hmac = {...}` in the config).
#[derive(Args)]
pub struct HmacArgs {
    /// Compute the sequence from this secret file (the door's `hmac.secret_file`)
    #[arg(long, requires = "door")]
    pub secret_file: Option<PathBuf>,
    /// The door's name (part of the derivation)
    #[arg(long)]
    pub door: Option<String>,
    /// Knocks in the sequence (the door's `hmac.steps`)
    #[arg(long, default_value_t = 4)]
    pub steps: usize,
    /// Port range (the door's `hmac.ports`)
    #[arg(long, default_value = "10000-60000")]
    pub port_range: String,
    /// Window length in seconds (the door's `hmac.window`)
    #[arg(long, default_value_t = 30)]
    pub window: u64,
    /// The derivation's version (the door's `hmac.version`: 1, or 2 for no browser-refused
    /// port)
    #[arg(long = "hmac-version", default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=2))]
    pub version: u8,
}

impl HmacArgs {
    /// The current sequence, if a secret file was given.
    pub fn sequence(&self) -> anyhow::Result<Option<Vec<crate::knock::KnockSpec>>> {
        let (Some(file), Some(door)) = (&self.secret_file, &self.door) else {
            return Ok(None);
        };
        let secret = crate::doors::hmacseq::Secret::load(file)?;
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
        let params = crate::doors::hmacseq::Params {
            steps: self.steps,
            first,
            last,
            window: self.window,
            version: self.version,
        };
        let now = crate::time::unix_secs(crate::time::wall_now());
        Ok(Some(crate::doors::hmacseq::sequence(
            &secret,
            door,
            params.counter(now),
            &params,
        )))
    }
}

/// `--file`: a plain file name, to be created in the boot directory.
fn note_name(name: &str) -> Result<String, String> {
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\\', '\0']) {
        return Err("expected a file name, without a directory".to_string());
    }
    Ok(name.to_string())
}

#[derive(Subcommand)]
pub enum SpaCmd {
    /// Write a new key pair for an SPA door (two files, mode 600, owned by the daemon's user)
    /// and print the `.fwknoprc` stanza for fwknop's client (it holds the keys)
    Keygen {
        /// The encryption key's file (the door's `spa.key_file`)
        #[arg(long, default_value = "/etc/knockgate/spa.key")]
        key_file: PathBuf,
        /// The HMAC key's file (the door's `spa.hmac_key_file`)
        #[arg(long, default_value = "/etc/knockgate/spa.hmac")]
        hmac_key_file: PathBuf,
        /// Replace existing key files (clients with the old keys stop working)
        #[arg(long)]
        force: bool,
        /// Who owns the files: the user the daemon runs as (if it exists; run as root)
        #[arg(long, default_value = "knockgate")]
        owner: String,
        /// For the stanza: the gateway's name or address, as clients reach it
        #[arg(long, default_value = "GATEWAY")]
        server: String,
        /// For the stanza: what the client asks to open
        #[arg(long, default_value = "tcp/22")]
        access: String,
        /// For the stanza: the door's `spa.port`
        #[arg(long, default_value_t = crate::doors::spa::DEFAULT_PORT)]
        port: u16,
    },
}

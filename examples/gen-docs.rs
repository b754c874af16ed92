//! Generates knockgate's man pages and shell completions from its clap definitions
//! (`knockgate::cli::args`), so that they never drift from `--help`. Run by `scripts/deb.sh`
//! when it builds the Debian packages:
//!
//!     cargo run --example gen-docs -- OUT_DIR
//!
//! writes OUT_DIR/man/knockgate.8 (the command, its files, exit status and the list of
//! subcommands), OUT_DIR/man/knockgate-SUBCOMMAND.8 (each subcommand's options and notes), and
//! OUT_DIR/completions/{knockgate.bash,_knockgate} for bash and zsh.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_complete::Shell;
use clap_mangen::roff::{bold, roman, Roff};
use clap_mangen::Man;

use knockgate::cli::args::Cli;

/// The sections of knockgate(8) that clap does not know: where things are, and how it ends.
const FILES: &[(&str, &str)] = &[
    (
        "/etc/knockgate/knockgate.toml",
        "The config (a conffile of the package). Check it with knockgate check; reload it with \
         systemctl reload knockgate. An invalid config is refused and the running one kept.",
    ),
    (
        "/var/lib/knockgate/",
        "The state directory: the journal of open doors (reconciled at start) and the files \
         the daemon rewrites, such as one-time sequences.",
    ),
    (
        "/lib/systemd/system/knockgate.service",
        "The hardened unit: user knockgate, CAP_NET_RAW and CAP_NET_ADMIN only.",
    ),
    (
        "knockgate-sequence.txt",
        "The note written by knockgate firstboot with the drawn knock sequences: on the boot \
         partition (/boot/firmware) when there is one, else in /etc/knockgate/, readable by \
         root only.",
    ),
];

const EXIT_STATUS: &[(&str, &str)] = &[
    (
        "0",
        "Success (run: stopped by SIGTERM or SIGINT, the doors closed).",
    ),
    ("1", "A failure at run time, named on standard error."),
    ("2", "Invalid arguments."),
    (
        "78",
        "The config is invalid (EX_CONFIG): the error names the file, the line and the key.",
    ),
];

fn main() -> std::io::Result<()> {
    let out = PathBuf::from(
        std::env::args_os()
            .nth(1)
            .unwrap_or_else(|| "target/docs".into()),
    );
    let man_dir = out.join("man");
    let completions = out.join("completions");
    fs::create_dir_all(&man_dir)?;
    fs::create_dir_all(&completions)?;

    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let version = cmd.get_version().unwrap_or_default().to_string();
    let source = format!("knockgate {version}");

    // knockgate(8).
    let man = Man::new(cmd.clone())
        .section("8")
        .source(&source)
        .manual("System Administration");
    let mut page = Vec::new();
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    man.render_synopsis_section(&mut page)?;
    man.render_description_section(&mut page)?;
    man.render_options_section(&mut page)?;
    man.render_subcommands_section(&mut page)?;
    let mut roff = Roff::new();
    definitions(&mut roff, "FILES", FILES);
    definitions(&mut roff, "EXIT STATUS", EXIT_STATUS);
    roff.control("SH", ["SEE ALSO"]);
    let mut see_also: Vec<_> = cmd
        .get_subcommands()
        .filter(|s| s.get_name() != "help")
        .map(|s| format!("knockgate-{}(8)", s.get_name()))
        .collect();
    see_also.extend(["iptables(8)", "knockd(1)", "fwknop(8)"].map(String::from));
    roff.text([roman(see_also.join(", "))]);
    page.extend_from_slice(roff.to_roff().as_bytes());
    man.render_version_section(&mut page)?;
    write(&man_dir.join("knockgate.8"), &page)?;

    // knockgate-SUBCOMMAND(8).
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        // clap keeps names as &'static str; this program runs once.
        let name: &'static str = format!("knockgate-{}", sub.get_name()).leak();
        let sub = sub
            .clone()
            .name(name)
            .bin_name(format!("knockgate {}", sub.get_name()));
        let man = Man::new(sub.clone())
            .section("8")
            .source(&source)
            .manual("System Administration");
        let mut page = Vec::new();
        man.render_title(&mut page)?;
        man.render_name_section(&mut page)?;
        man.render_synopsis_section(&mut page)?;
        man.render_description_section(&mut page)?;
        man.render_options_section(&mut page)?;
        let mut roff = Roff::new();
        if let Some(notes) = sub.get_after_long_help().or(sub.get_after_help()) {
            roff.control("SH", ["NOTES"]);
            for paragraph in notes.to_string().split("\n\n") {
                roff.control("PP", []);
                roff.control("nf", []);
                roff.text([roman(paragraph)]);
                roff.control("fi", []);
            }
        }
        roff.control("SH", ["SEE ALSO"]);
        roff.text([bold("knockgate"), roman("(8)")]);
        page.extend_from_slice(roff.to_roff().as_bytes());
        write(&man_dir.join(format!("{name}.8")), &page)?;
    }

    // Shell completions.
    for (shell, file) in [(Shell::Bash, "knockgate.bash"), (Shell::Zsh, "_knockgate")] {
        let mut text = Vec::new();
        clap_complete::generate(shell, &mut cmd, "knockgate", &mut text);
        write(&completions.join(file), &text)?;
    }
    Ok(())
}

/// A section of tagged paragraphs: each term in bold, then its meaning.
fn definitions(roff: &mut Roff, heading: &str, items: &[(&str, &str)]) {
    roff.control("SH", [heading]);
    for (term, meaning) in items {
        roff.control("TP", []);
        roff.text([bold(*term)]);
        roff.text([roman(*meaning)]);
    }
}

fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    fs::File::create(path)?.write_all(bytes)?;
    println!("{}", path.display());
    Ok(())
}

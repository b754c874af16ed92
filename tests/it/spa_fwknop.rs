//! knockgate's SPA decoder (`doors::spa`) against packets built by Debian's own fwknop client
//! (fwknop-client 2.6.10, installed by scripts/setup.sh), with keys from `cli::spa::keygen`
//! and its `.fwknoprc` stanza. `fwknop --test` builds the packet and sends nothing; the
//! packet is read back from `--save-packet`. Outside CI, without fwknop, the tests skip and say
//! so; in CI they must run.

use std::fs;
use std::io::Read;
use std::net::IpAddr;
use std::path::Path;
use std::process::Command;

use knockgate::cli::spa::{keygen, KeygenOptions};
use knockgate::doors::spa::{verify, Access, Keys, Refusal, DEFAULT_PORT};

fn fwknop_available() -> bool {
    let ok = Command::new("fwknop")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        let why = "fwknop (Debian's fwknop-client) is not installed";
        if std::env::var_os("CI").is_some() {
            panic!("{why}: CI must run these tests (scripts/setup.sh installs it)");
        }
        eprintln!("SKIPPED outside CI: {why}");
    }
    ok
}

fn now() -> u64 {
    knockgate::time::unix_secs(knockgate::time::wall_now())
}

/// A key pair from keygen (the kernel's random numbers), its files and stanza.
fn keys(dir: &Path) -> (Keys, String) {
    let opts = KeygenOptions {
        key_file: dir.join("spa.key"),
        hmac_key_file: dir.join("spa.hmac"),
        force: false,
        server: "127.0.0.1".into(),
        access: "tcp/22".into(),
        port: DEFAULT_PORT,
    };
    let mut random = fs::File::open("/dev/urandom").unwrap().take(1024);
    let stanza = keygen(&opts, &mut random).unwrap();
    let keys = Keys::load(&opts.key_file, &opts.hmac_key_file).unwrap();
    (keys, stanza)
}

/// Runs fwknop with `args` (HOME in `dir`, --test: nothing sent) and returns the saved packet.
fn fwknop(dir: &Path, args: &[&str]) -> Vec<u8> {
    let packet = dir.join("packet");
    let _ = fs::remove_file(&packet);
    let out = Command::new("fwknop")
        .env("HOME", dir)
        .args(args)
        .args(["--test", "--save-packet", packet.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "fwknop {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    fs::read(&packet).unwrap()
}

fn key_args(keys: &Keys) -> Vec<String> {
    let (k, h) = keys.to_base64();
    vec![
        "--key-base64-rijndael".into(),
        k,
        "--key-base64-hmac".into(),
        h,
        "--use-hmac".into(),
    ]
}

fn with<'a>(base: &'a [String], more: &[&'a str]) -> Vec<&'a str> {
    base.iter()
        .map(String::as_str)
        .chain(more.iter().copied())
        .collect()
}

#[test]
fn fwknop_client_packets_verify_and_tampering_is_refused() {
    if !fwknop_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (keys, _) = keys(dir.path());
    let k = key_args(&keys);
    let tcp22 = Access {
        udp: false,
        port: 22,
    };

    let packet = fwknop(
        dir.path(),
        &with(&k, &["-A", "tcp/22", "-a", "10.77.0.2", "-D", "127.0.0.1"]),
    );
    let r = verify(&packet, &keys, now(), 120).unwrap();
    assert_eq!(r.addr, "10.77.0.2".parse::<IpAddr>().unwrap());
    assert_eq!(r.access, vec![tcp22]);
    assert_eq!(r.client_timeout, None);
    assert!(r.timestamp.abs_diff(now()) <= 5);

    // Several ports, and the client's own timeout (message type 3).
    let packet = fwknop(
        dir.path(),
        &with(
            &k,
            &[
                "-A",
                "tcp/22,udp/53",
                "-a",
                "192.0.2.9",
                "-f",
                "45",
                "-D",
                "127.0.0.1",
            ],
        ),
    );
    let r = verify(&packet, &keys, now(), 120).unwrap();
    assert_eq!(
        r.access,
        vec![
            tcp22,
            Access {
                udp: true,
                port: 53
            }
        ]
    );
    assert_eq!(r.client_timeout, Some(45));

    // A packet from 5 minutes ago (--time-offset-minus) is refused for its age.
    let old = fwknop(
        dir.path(),
        &with(
            &k,
            &[
                "-A",
                "tcp/22",
                "-a",
                "10.77.0.2",
                "-D",
                "127.0.0.1",
                "--time-offset-minus",
                "300sec",
            ],
        ),
    );
    assert!(matches!(
        verify(&old, &keys, now(), 120),
        Err(Refusal::Age(-310..=-290, 120))
    ));

    // Other keys: the HMAC fails first, whichever key differs.
    let other = tempfile::tempdir().unwrap();
    let (other_keys, _) = self::keys(other.path());
    assert_eq!(verify(&packet, &other_keys, now(), 120), Err(Refusal::Hmac));
    // A flipped byte, a truncated packet.
    let mut flipped = packet.clone();
    flipped[packet.len() / 2] ^= 0x01;
    assert!(verify(&flipped, &keys, now(), 120).is_err());
    assert_eq!(
        verify(&packet[..packet.len() - 10], &keys, now(), 120),
        Err(Refusal::Hmac)
    );
}

/// The stanza keygen prints is a working `.fwknoprc`: `fwknop -n knockgate` builds a packet
/// with those keys that asks for the source's address (ALLOW_IP source: 0.0.0.0).
#[test]
fn the_keygen_stanza_is_a_working_fwknoprc() {
    if !fwknop_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (keys, stanza) = keys(dir.path());
    let rc = dir.path().join(".fwknoprc");
    fs::write(&rc, &stanza).unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&rc, fs::Permissions::from_mode(0o600)).unwrap();
    let packet = fwknop(dir.path(), &["-n", "knockgate"]);
    let r = verify(&packet, &keys, now(), 120).unwrap();
    assert_eq!(r.addr, "0.0.0.0".parse::<IpAddr>().unwrap());
    assert_eq!(
        r.access,
        vec![Access {
            udp: false,
            port: 22
        }]
    );
}

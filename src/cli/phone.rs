//! `knockgate phone DOOR`: what the phone apps people already have can import, so that a
//! door is set up on a phone without typing a port or a key (issue 26).
//!
//! - A fixed-sequence door: a Knock on Ports import file (its JSON, version 1, as its
//!   importer reads it: `app/src/main/java/me/impa/knockonports/data/json/SequencesData.kt`,
//!   `SequenceEntryData.kt`, `SequenceStepData.kt` and the enums of `data/type/`, decoded
//!   with `ignoreUnknownKeys` in `data/file/FileRepository.kt`), a knockd.conf snippet for its
//!   knockd importer (`data/file/KnockdConfDecoder.kt`: a `[name]` section and its
//!   `sequence = port[:udp],...` line), and the sequence as a QR code.
//! - An SPA door: the QR string of fwknop's clients (`KEY_BASE64:<b64> HMAC_KEY_BASE64:<b64>`,
//!   as Fwknop2 and PortGuard scan it) and the `.fwknoprc` stanza of `knockgate spa keygen`.
//!
//! The QR codes come as PNG and SVG files and, for the owner's terminal, as text. Files are
//! written mode 600 and fsynced: they hold the door's secret.

use base64::Engine;
use qrcode::QrCode;
use serde_json::json;

use crate::config::Door;
use crate::knock::{KnockSpec, Proto};

/// One file to write: its name (in the output directory) and content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    pub name: String,
    pub bytes: Vec<u8>,
    /// What it is for, one line for the owner.
    pub what: String,
}

/// Everything `phone` makes for a door.
#[derive(Debug, Clone)]
pub struct Phone {
    pub files: Vec<Export>,
    /// The QR code's text, and the code for a terminal.
    pub qr_text: String,
    pub terminal: String,
}

/// A name usable in a file name.
fn file_stem(door: &str) -> String {
    let s: String = door
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() {
        "door".into()
    } else {
        s
    }
}

/// Knock on Ports' import file (JSON, version 1) for a fixed sequence to `host`.
pub fn knock_on_ports(door: &str, host: &str, sequence: &[KnockSpec]) -> String {
    let steps: Vec<serde_json::Value> = sequence
        .iter()
        .map(|k| {
            json!({
                "type": match k.proto { Proto::Tcp => "tcp", Proto::Udp => "udp" },
                "port": k.port,
            })
        })
        .collect();
    let doc = json!({
        "version": 1,
        "sequences": [{
            "name": door,
            "host": host,
            "delay": 100,
            "ipv": "prefer_ipv4",
            "icmp_type": "without_headers",
            "steps": steps,
        }],
    });
    serde_json::to_string_pretty(&doc).expect("JSON") + "\n"
}

/// A knockd.conf section with the door's sequence, as Knock on Ports' knockd importer reads
/// it (and knockd itself).
pub fn knockd_snippet(door: &str, sequence: &[KnockSpec]) -> String {
    let steps: Vec<String> = sequence
        .iter()
        .map(|k| match k.proto {
            Proto::Tcp => format!("{}:tcp", k.port),
            Proto::Udp => format!("{}:udp", k.port),
        })
        .collect();
    format!(
        "[{}]\n    sequence = {}\n",
        door.replace([']', '\n'], "_"),
        steps.join(",")
    )
}

/// The sequence as text for a QR code: `HOST 7000/tcp 8000/udp 9000/tcp`.
pub fn sequence_text(host: &str, sequence: &[KnockSpec]) -> String {
    let mut t = host.to_string();
    for k in sequence {
        t.push_str(&format!(" {}/{}", k.port, k.proto.as_str()));
    }
    t
}

/// fwknop's clients' QR string for an SPA door's keys.
pub fn fwknop_qr(key: &[u8], hmac: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    format!(
        "KEY_BASE64:{} HMAC_KEY_BASE64:{}",
        b64.encode(key),
        b64.encode(hmac)
    )
}

/// A QR code of `text` as a grayscale PNG (8 pixels a module, the 4-module quiet zone).
pub fn qr_png(text: &str) -> Result<Vec<u8>, String> {
    let code = QrCode::new(text.as_bytes()).map_err(|e| format!("no QR code: {e}"))?;
    let width = code.width();
    let colors = code.to_colors();
    const SCALE: usize = 8;
    const QUIET: usize = 4;
    let side = (width + 2 * QUIET) * SCALE;
    let mut pixels = vec![255u8; side * side];
    for (i, c) in colors.iter().enumerate() {
        if *c == qrcode::Color::Dark {
            let (x, y) = (i % width + QUIET, i / width + QUIET);
            for dy in 0..SCALE {
                let row = (y * SCALE + dy) * side;
                pixels[row + x * SCALE..row + (x + 1) * SCALE].fill(0);
            }
        }
    }
    let mut out = Vec::new();
    {
        let side = u32::try_from(side).map_err(|_| "QR code too large".to_string())?;
        let mut enc = png::Encoder::new(&mut out, side, side);
        enc.set_color(png::ColorType::Grayscale);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header().map_err(|e| e.to_string())?;
        w.write_image_data(&pixels).map_err(|e| e.to_string())?;
    }
    Ok(out)
}

/// A QR code of `text` as SVG.
pub fn qr_svg(text: &str) -> Result<String, String> {
    let code = QrCode::new(text.as_bytes()).map_err(|e| format!("no QR code: {e}"))?;
    Ok(code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(320, 320)
        .build())
}

/// A QR code of `text` for a terminal (two rows a line, light on dark or dark on light as
/// the terminal shows Unicode half blocks).
pub fn qr_terminal(text: &str) -> Result<String, String> {
    let code = QrCode::new(text.as_bytes()).map_err(|e| format!("no QR code: {e}"))?;
    Ok(code
        .render::<qrcode::render::unicode::Dense1x2>()
        .quiet_zone(true)
        .build())
}

/// What `phone` makes for `door`, reached at `host`; `spa_keys`: the door's keys if it is an
/// SPA door (read by the caller from its key files).
pub fn phone(door: &Door, host: &str, spa_keys: Option<(&[u8], &[u8])>) -> Result<Phone, String> {
    let stem = file_stem(&door.name);
    let mut files = Vec::new();
    let qr_text = if let Some(spa) = &door.spa {
        let (key, hmac) = spa_keys.ok_or("the door's SPA keys are needed")?;
        let b64 = base64::engine::general_purpose::STANDARD;
        let access = spa.allow.first().map_or("tcp/22".to_string(), |r| {
            format!("{}/{}", r.proto.as_str(), r.first)
        });
        let opts = crate::cli::spa::KeygenOptions {
            key_file: spa.key_file.clone(),
            hmac_key_file: spa.hmac_key_file.clone(),
            force: false,
            server: host.to_string(),
            access,
            port: spa.port,
        };
        files.push(Export {
            name: format!("{stem}.fwknoprc"),
            bytes: crate::cli::spa::stanza(&opts, &b64.encode(key), &b64.encode(hmac)).into_bytes(),
            what: "the stanza for ~/.fwknoprc (fwknop, Termux's fwknop)".into(),
        });
        fwknop_qr(key, hmac)
    } else if !door.sequence.is_empty() {
        files.push(Export {
            name: format!("{stem}-knockonports.json"),
            bytes: knock_on_ports(&door.name, host, &door.sequence).into_bytes(),
            what: "Knock on Ports: menu, Import, this file".into(),
        });
        files.push(Export {
            name: format!("{stem}-knockd.conf"),
            bytes: knockd_snippet(&door.name, &door.sequence).into_bytes(),
            what: "Knock on Ports' knockd.conf importer, or any knockd client".into(),
        });
        sequence_text(host, &door.sequence)
    } else {
        return Err(format!(
            "door {}: no fixed sequence (an HMAC or one-time door: its knock page comes with --page, next)",
            door.name
        ));
    };
    files.push(Export {
        name: format!("{stem}-qr.png"),
        bytes: qr_png(&qr_text)?,
        what: "the QR code (PNG)".into(),
    });
    files.push(Export {
        name: format!("{stem}-qr.svg"),
        bytes: qr_svg(&qr_text)?.into_bytes(),
        what: "the QR code (SVG)".into(),
    });
    Ok(Phone {
        files,
        terminal: qr_terminal(&qr_text)?,
        qr_text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq() -> Vec<KnockSpec> {
        vec![
            KnockSpec::tcp(7000),
            KnockSpec {
                port: 8000,
                proto: Proto::Udp,
            },
            KnockSpec::tcp(9000),
        ]
    }

    /// The structure Knock on Ports' importer reads (`SequencesDataV1`): an object with
    /// `version` 1 and `sequences`, each entry's keys among `SequenceEntryDataV1`'s serial
    /// names with their types, steps with `type` one of its `SequenceStepType` serial names
    /// and an integer port, `ipv` and `icmp_type` among their enums' serial names.
    #[test]
    fn the_knock_on_ports_file_has_the_structure_its_importer_reads() {
        let doc: serde_json::Value =
            serde_json::from_str(&knock_on_ports("open SSH", "gw.example", &seq())).unwrap();
        assert_eq!(doc["version"], 1);
        let entries = doc["sequences"].as_array().unwrap();
        assert_eq!(entries.len(), 1);
        let e = entries[0].as_object().unwrap();
        let known = [
            "name",
            "host",
            "delay",
            "application",
            "app_name",
            "icmp_type",
            "ipv",
            "local_port",
            "ttl",
            "uri",
            "group",
            "checkAccess",
            "check_type",
            "check_port",
            "check_host",
            "check_timeout",
            "check_post_knock",
            "check_max_retries",
            "steps",
        ];
        assert!(e.keys().all(|k| known.contains(&k.as_str())), "{e:?}");
        assert_eq!(e["name"], "open SSH");
        assert_eq!(e["host"], "gw.example");
        assert!(e["delay"].is_i64());
        assert!([
            "prefer_ipv4",
            "prefer_ipv6",
            "only_ipv4",
            "only_ipv6",
            "both_ipv4_ipv6"
        ]
        .contains(&e["ipv"].as_str().unwrap()));
        assert!([
            "without_headers",
            "with_ip_header",
            "with_ip_and_icmp_headers"
        ]
        .contains(&e["icmp_type"].as_str().unwrap()));
        let steps: Vec<(String, u64)> = e["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                let o = s.as_object().unwrap();
                assert!(o.keys().all(|k| [
                    "type",
                    "port",
                    "icmp_size",
                    "icmp_count",
                    "content",
                    "encoding",
                    "udp_payload_size"
                ]
                .contains(&k.as_str())));
                (
                    s["type"].as_str().unwrap().to_string(),
                    s["port"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            steps,
            [
                ("tcp".into(), 7000),
                ("udp".into(), 8000),
                ("tcp".into(), 9000)
            ]
        );
    }

    /// `KnockdConfDecoder`'s rules: a `[name]` section, `sequence =` split at commas, each
    /// `port:type` (udp or else tcp).
    #[test]
    fn the_knockd_snippet_reads_back_as_its_decoder_reads_it() {
        let text = knockd_snippet("open SSH", &seq());
        let mut name = None;
        let mut steps = Vec::new();
        for line in text.lines() {
            let line = line.split('#').next().unwrap().trim();
            if line.starts_with('[') && line.ends_with(']') {
                name = Some(line.trim_matches(['[', ']', ' ']).to_string());
            } else if let Some((k, v)) = line.split_once('=') {
                if k.trim().eq_ignore_ascii_case("sequence") {
                    for step in v.split(',') {
                        let (port, kind) = step.split_once(':').unwrap_or((step, "tcp"));
                        let udp = kind.trim().eq_ignore_ascii_case("udp");
                        steps.push((port.trim().parse::<u16>().unwrap(), udp));
                    }
                }
            }
        }
        assert_eq!(name.as_deref(), Some("open SSH"));
        assert_eq!(steps, [(7000, false), (8000, true), (9000, false)]);
    }

    #[test]
    fn the_fwknop_string_and_the_sequence_text() {
        assert_eq!(
            fwknop_qr(b"0123", b"abcd"),
            "KEY_BASE64:MDEyMw== HMAC_KEY_BASE64:YWJjZA=="
        );
        assert_eq!(
            sequence_text("gw.example", &seq()),
            "gw.example 7000/tcp 8000/udp 9000/tcp"
        );
        let png = qr_png("x").unwrap();
        assert_eq!(&png[1..4], b"PNG");
        assert!(qr_svg("x").unwrap().starts_with("<?xml"));
    }
}

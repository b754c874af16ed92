//! The knock page (`knockgate phone DOOR --page FILE`): one self-contained HTML file the owner
//! keeps on a phone or laptop, which knocks with `fetch()` to each port in order (a browser's
//! connection attempt is a SYN) and, for an HMAC door, computes the current window's sequence
//! in the page with WebCrypto, exactly as [`crate::doors::hmacseq`] does (its self-test runs
//! the README's vectors before it knocks). No script, style or font is fetched from anywhere:
//! the only requests the page makes are the knocks.

use serde_json::json;

use crate::config::HmacParams;
use crate::knock::{KnockSpec, Proto, BROWSER_UNSAFE};

/// What the page knocks.
pub enum Knocks<'a> {
    /// A fixed sequence (TCP steps only: a browser cannot send UDP).
    Fixed(&'a [KnockSpec]),
    /// An HMAC door: its secret's bytes and parameters.
    Hmac {
        secret: &'a [u8],
        params: &'a HmacParams,
    },
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The page for `door` at `host`. Fails for a step a browser cannot send (UDP, or a port it
/// refuses).
pub fn page(door: &str, host: &str, knocks: &Knocks<'_>) -> Result<String, String> {
    let spec = match knocks {
        Knocks::Fixed(seq) => {
            if let Some(k) = seq.iter().find(|k| k.proto == Proto::Udp) {
                return Err(format!(
                    "door {door}: step {} is UDP: a browser can only send TCP knocks",
                    k.port
                ));
            }
            if let Some(k) = seq.iter().find(|k| !crate::knock::browser_safe(k.port)) {
                return Err(format!(
                    "door {door}: port {} is one browsers refuse to connect to",
                    k.port
                ));
            }
            json!({"kind": "fixed", "ports": seq.iter().map(|k| k.port).collect::<Vec<_>>()})
        }
        Knocks::Hmac { secret, params } => json!({
            "kind": "hmac",
            "secret": hex(secret),
            "steps": params.steps,
            "first": params.first,
            "last": params.last,
            "window": params.window,
            "version": params.version,
        }),
    };
    let config = json!({"door": door, "host": host, "spec": spec, "unsafe": BROWSER_UNSAFE});
    // `</` cannot end the script early: JSON escapes it.
    let config = config.to_string().replace("</", "<\\/");
    let title = crate::status::html::escape(door);
    Ok(PAGE.replace("@TITLE@", &title).replace("@CONFIG@", &config))
}

const PAGE: &str = r##"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src http: https:">
<title>Knock: @TITLE@</title>
<style>
body{font:16px/1.4 system-ui,sans-serif;margin:0;padding:1rem;background:#111;color:#eee}
h1{font-size:1.3rem;margin:0 0 .5rem}
button{font-size:1.2rem;width:100%;padding:1rem;border:0;border-radius:.5rem;background:#2a7;color:#fff}
button:disabled{background:#555}
ol{padding-left:1.5rem}li.done{color:#7d7}li.now{color:#fd5}
#result{margin-top:1rem;padding:.75rem;border-radius:.5rem;background:#222}
#result[data-state=sent]{background:#143}#result[data-state=error]{background:#511}
.muted{color:#999;font-size:.85rem}
</style></head><body>
<h1>Knock: @TITLE@</h1>
<p class="muted" id="target"></p>
<button id="knock">Knock</button>
<ol id="steps"></ol>
<div id="result" data-state="idle">Ready.</div>
<p class="muted" id="selftest"></p>
<script>
"use strict";
const CFG = @CONFIG@;
const UNSAFE = new Set(CFG.unsafe);
const enc = new TextEncoder();
function unhex(h) { const b = new Uint8Array(h.length / 2); for (let i = 0; i < b.length; i++) b[i] = parseInt(h.substr(2 * i, 2), 16); return b; }
async function hmac(key, data) {
  const k = await crypto.subtle.importKey("raw", key, {name: "HMAC", hash: "SHA-256"}, false, ["sign"]);
  return new Uint8Array(await crypto.subtle.sign("HMAC", k, data));
}
// src/doors/hmacseq.rs, version 1 or 2 (README: "Derivation").
async function sequence(secret, door, counter, p) {
  const span = p.last - p.first + 1;
  const ctx = enc.encode(p.version >= 2 ? "knockgate-seq-v2" : "knockgate-seq-v1");
  const name = enc.encode(door);
  const c = new Uint8Array(8);
  let n = counter;
  for (let i = 7; i >= 0; i--) { c[i] = n % 256; n = Math.floor(n / 256); }
  const msg = new Uint8Array(ctx.length + name.length + 1 + 8);
  msg.set(ctx, 0); msg.set(name, ctx.length); msg[ctx.length + name.length] = 0; msg.set(c, ctx.length + name.length + 1);
  let block = await hmac(secret, msg), at = 0;
  const ports = [];
  while (ports.length < p.steps) {
    if (at === block.length) { block = await hmac(secret, block); at = 0; }
    const value = block[at] * 256 + block[at + 1];
    at += 2;
    const port = p.first + value % span;
    if (!ports.includes(port) && (p.version < 2 || !UNSAFE.has(port))) ports.push(port);
  }
  return ports;
}
// The README's test vectors: the page computes what knockgate computes, or it does not knock.
async function selfTest() {
  const s = enc.encode("0123456789abcdef0123456789abcdef");
  const p = {steps: 4, first: 10000, last: 60000, window: 30};
  const want = [
    [1, "ssh", 59833333, "10466,55378,35678,17443"],
    [1, "garage", 59833333, "23886,20698,33853,33556"],
    [2, "ssh", 59833333, "39549,20263,23370,21750"],
    [2, "ssh", 59833334, "50831,44458,24668,11182"],
  ];
  for (const [version, door, counter, seq] of want) {
    const got = (await sequence(s, door, counter, {...p, version})).join(",");
    if (got !== seq) throw new Error(`self-test failed: version ${version} ${door} ${counter}: ${got}`);
  }
}
function knockOne(port) {
  // A SYN to HOST:PORT; whatever comes back (nothing, a reset, a refusal) is fine.
  const ctl = new AbortController();
  const t = setTimeout(() => ctl.abort(), 400);
  return fetch(`http://${CFG.host}:${port}/`, {mode: "no-cors", cache: "no-store", signal: ctl.signal})
    .catch(() => {}).finally(() => clearTimeout(t));
}
async function ports() {
  const s = CFG.spec;
  if (s.kind === "fixed") return s.ports;
  const counter = Math.floor(Date.now() / 1000 / s.window);
  const seq = await sequence(unhex(s.secret), CFG.door, counter, s);
  const bad = seq.find(p => UNSAFE.has(p));
  if (bad !== undefined) throw new Error(`this window's sequence has port ${bad}, which browsers refuse: wait ${s.window} s (or use version = 2)`);
  return seq;
}
async function run() {
  const button = document.getElementById("knock"), list = document.getElementById("steps"), result = document.getElementById("result");
  button.disabled = true; list.textContent = ""; result.dataset.state = "knocking"; result.textContent = "Knocking…";
  try {
    await selfTest();
    const seq = await ports();
    const items = seq.map(p => { const li = document.createElement("li"); li.textContent = `port ${p}`; list.appendChild(li); return li; });
    for (let i = 0; i < seq.length; i++) {
      items[i].className = "now";
      await knockOne(seq[i]);
      items[i].className = "done";
    }
    result.dataset.state = "sent";
    result.textContent = `Sent ${seq.length} knocks to ${CFG.host}: the door opens for this device now.`;
  } catch (e) {
    result.dataset.state = "error";
    result.textContent = String(e.message || e);
  }
  button.disabled = false;
}
document.getElementById("target").textContent = `${CFG.host} · ${CFG.spec.kind === "hmac" ? "time-based sequence" : CFG.spec.ports.length + " knocks"}`;
document.getElementById("knock").addEventListener("click", run);
selfTest().then(() => { document.getElementById("selftest").textContent = "Self-test passed (knockgate's test vectors)."; },
                e => { document.getElementById("selftest").textContent = e.message; });
if (location.hash === "#knock") run();
</script>
</body></html>
"##;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fixed_page_holds_its_ports_and_refuses_what_a_browser_cannot_send() {
        let seq = [KnockSpec::tcp(7000), KnockSpec::tcp(8000)];
        let p = page("open </script> SSH", "gw.example", &Knocks::Fixed(&seq)).unwrap();
        assert!(p.contains(r#""ports":[7000,8000]"#));
        assert!(
            !p.contains("open </script> SSH"),
            "escaped in the title and the script"
        );
        assert!(
            !p.contains("src=") && !p.contains("href="),
            "nothing fetched but the knocks"
        );
        let udp = [KnockSpec {
            port: 7000,
            proto: Proto::Udp,
        }];
        assert!(page("d", "h", &Knocks::Fixed(&udp))
            .unwrap_err()
            .contains("UDP"));
        let unsafe_port = [KnockSpec::tcp(10080)];
        assert!(page("d", "h", &Knocks::Fixed(&unsafe_port))
            .unwrap_err()
            .contains("refuse"));
    }
}

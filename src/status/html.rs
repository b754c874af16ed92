//! The status page: one self-contained HTML document rendered from a [`Snapshot`].
//!
//! Invariants:
//! - Every string that comes from the snapshot goes through [`escape`] (door, interface and relay
//!   names are user-controlled, error texts come from the OS).
//! - No external assets: the CSS and the one script are inline and static, so the server's
//!   Content-Security-Policy allows exactly them by hash ([`STYLE_HASH`], [`SCRIPT_HASH`]); no
//!   `style=` attribute is ever emitted (a hash does not cover those).
//! - The content needs no JavaScript. The script only counts the time left down between two
//!   reloads (`<meta http-equiv="refresh">`, every [`REFRESH_SECS`] s).
//! - Times are shown relative to the snapshot's `now_unix` ("2 min ago", "29:41" left), with the
//!   absolute UTC time in a `title` attribute.

use std::fmt::Write;

use super::{Activity, ActivityKind, DoorStatus, LedPattern, Snapshot};

/// The page reloads itself this often.
pub const REFRESH_SECS: u32 = 5;

/// The page's only stylesheet. Changing it changes [`STYLE_HASH`] (a unit test checks the pair).
pub const STYLE: &str = r#":root{color-scheme:light dark;--bg:#f4f6f8;--card:#fff;--fg:#1c2330;--muted:#5b6676;--line:#dce1e7;--ok:#1a7f37;--bad:#c62828;--lan:#1d5fbf;--out:#9a4d00;--bar:#3b82f6}
@media (prefers-color-scheme:dark){:root{--bg:#0e1217;--card:#171d25;--fg:#e5e9ef;--muted:#95a1b2;--line:#29313c;--ok:#3fb950;--bad:#ff6b61;--lan:#79b0ff;--out:#f0a060;--bar:#5b9cf6}}
*{box-sizing:border-box}
body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;background:var(--bg);color:var(--fg)}
header{padding:12px 14px 8px;display:flex;flex-wrap:wrap;gap:2px 14px;align-items:baseline}
h1{font-size:1.3rem;margin:0}
h2{font-size:1rem;margin:0 0 8px}
main{display:grid;gap:12px;padding:0 12px 16px;grid-template-columns:minmax(0,1fr)}
@media (min-width:760px){main{grid-template-columns:repeat(2,minmax(0,1fr))}.wide{grid-column:1/-1}}
@media (min-width:1180px){main{grid-template-columns:repeat(3,minmax(0,1fr))}}
section{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:12px 14px;min-width:0}
.banner{border-width:2px}
.banner.ok{border-color:var(--ok)}
.banner.bad{border-color:var(--bad)}
.banner h2{font-size:1.15rem;margin:0}
.banner ul{margin:6px 0 0;padding-left:20px}
.muted{color:var(--muted)}
.ok{color:var(--ok)}
.bad{color:var(--bad)}
.badge{display:inline-block;padding:0 7px;margin:0 2px;border-radius:999px;font-size:.78rem;line-height:1.5;border:1px solid currentColor;white-space:nowrap}
.lan{color:var(--lan)}
.out{color:var(--out)}
table{width:100%;border-collapse:collapse}
th,td{text-align:left;padding:4px 6px;border-top:1px solid var(--line);vertical-align:top}
th{font-weight:600;color:var(--muted);border-top:0;font-size:.85rem}
.num{text-align:right;font-variant-numeric:tabular-nums}
.scroll{overflow-x:auto}
.door{padding:8px 0;border-top:1px solid var(--line)}
.door:first-of-type{border-top:0;padding-top:0}
.door-name{font-weight:650;font-size:1.05rem;overflow-wrap:anywhere}
.sessions{margin:6px 0 0;padding:0;list-style:none}
.sessions li{padding:3px 0}
.left{font-variant-numeric:tabular-nums;font-weight:650}
code{font:.92em ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;overflow-wrap:anywhere}
dl{display:grid;grid-template-columns:auto auto;gap:2px 12px;margin:0}
dd{margin:0;text-align:right;font-variant-numeric:tabular-nums}
svg{width:100%;height:auto;display:block}
svg text{fill:var(--muted);font:11px system-ui,sans-serif}
svg .bar{fill:var(--bar)}
svg .axis{stroke:var(--line)}
footer{padding:0 14px 16px;font-size:.85rem}"#;

/// The page's only script: counts every `data-left` element down once a second, from the
/// seconds the server rendered, by the browser's elapsed time (not its wall clock, which may
/// differ from the gateway's). Changing it changes [`SCRIPT_HASH`].
pub const SCRIPT: &str = r#"(function(){var t0=Date.now();function p(n){return(n<10?"0":"")+n}function f(s){if(s<=0)return"closing";var h=Math.floor(s/3600),m=Math.floor(s%3600/60),x=s%60;return(h?h+":"+p(m):m)+":"+p(x)}function tick(){var e=(Date.now()-t0)/1000;var l=document.querySelectorAll("[data-left]");for(var i=0;i<l.length;i++){var n=l[i];n.textContent=f(Math.max(0,Math.round(Number(n.getAttribute("data-left"))-e)))}}setInterval(tick,1000)})();"#;

/// `sha256-…` of [`STYLE`], for the Content-Security-Policy.
pub const STYLE_HASH: &str = "sha256-0pVujXTVwsS5m9BpeeV9D5jQJ48bZZN0CkWTyhErEiY=";
/// `sha256-…` of [`SCRIPT`], for the Content-Security-Policy.
pub const SCRIPT_HASH: &str = "sha256-CWNo6x7dKepf9cPuk/IZwmCKNN19Ff5qhWNwgAgn8Dw=";

/// Escapes text for HTML content and double- or single-quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// What is wrong, in words, for the health summary and `/healthz`. Empty when all is well.
pub fn problems(s: &Snapshot) -> Vec<String> {
    if s.now_unix == 0 {
        return vec!["the daemon has not published its status yet".to_string()];
    }
    let mut out = super::faults(s);
    if s.led
        .as_ref()
        .is_some_and(|l| l.pattern == LedPattern::Error)
    {
        out.push("the status LED shows an error".to_string());
    }
    if !s.healthy && out.is_empty() {
        out.push("the daemon reports a problem (see its log)".to_string());
    }
    out
}

/// Renders the whole page.
pub fn render_html(s: &Snapshot) -> String {
    let problems = problems(s);
    let mut h = String::with_capacity(16 * 1024);
    let title = if problems.is_empty() { "OK" } else { "PROBLEM" };
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_SECS}\">\
         <meta name=\"color-scheme\" content=\"light dark\">\
         <title>knockgate: {title}</title><style>{STYLE}</style></head><body>\n"
    );
    let _ = write!(
        h,
        "<header><h1>knockgate</h1><span class=\"muted\">version {}</span>\
         <span class=\"muted\">up {}</span>\
         <span class=\"muted\" title=\"{}\">as of {}</span></header>\n<main>\n",
        escape(&s.version),
        duration(s.uptime_secs),
        utc(s.now_unix),
        utc_time(s.now_unix),
    );
    banner(&mut h, &problems);
    notices(&mut h, s);
    doors(&mut h, s);
    health(&mut h, s);
    h.push_str("<section id=\"chart\"><h2>Knocks per hour, last 24 hours</h2>");
    h.push_str(&render_chart_svg(&s.knocks_per_hour, s.now_unix));
    h.push_str("</section>\n");
    recent(&mut h, s);
    gpio(&mut h, s);
    mqtt(&mut h, s);
    counters(&mut h, s);
    let _ = write!(
        h,
        "</main>\n<footer class=\"muted\">Reloads every {REFRESH_SECS} s. \
         JSON: <a href=\"/api/status\">/api/status</a> · \
         Prometheus: <a href=\"/metrics\">/metrics</a></footer>\n\
         <script>{SCRIPT}</script>\n</body></html>\n"
    );
    h
}

fn banner(h: &mut String, problems: &[String]) {
    if problems.is_empty() {
        h.push_str(
            "<section id=\"summary\" class=\"banner ok wide\"><h2 class=\"ok\">\u{2714} All OK</h2>\
             <div class=\"muted\">Every capture is up; the firewall, if used, works.</div></section>\n",
        );
        return;
    }
    let _ = write!(
        h,
        "<section id=\"summary\" class=\"banner bad wide\"><h2 class=\"bad\">\u{26a0} Problem</h2><ul>"
    );
    for p in problems {
        let _ = write!(h, "<li>{}</li>", escape(p));
    }
    h.push_str("</ul></section>\n");
}

/// Boot-time setup problems (a malformed wifi.txt): shown, but not a health failure.
fn notices(h: &mut String, s: &Snapshot) {
    if s.notices.is_empty() {
        return;
    }
    h.push_str(
        "<section id=\"notices\" class=\"banner bad wide\"><h2 class=\"bad\">Setup at boot</h2><ul>",
    );
    for n in &s.notices {
        let _ = write!(h, "<li>{}</li>", escape(n));
    }
    h.push_str("</ul></section>\n");
}

fn doors(h: &mut String, s: &Snapshot) {
    h.push_str("<section id=\"doors\"><h2>Doors</h2>");
    if s.doors.is_empty() {
        h.push_str("<p class=\"muted\">No doors configured.</p>");
    }
    for d in &s.doors {
        door(h, s, d);
    }
    h.push_str("</section>\n");
}

fn door(h: &mut String, s: &Snapshot, d: &DoorStatus) {
    let _ = write!(
        h,
        "<div class=\"door\"><div><span class=\"door-name\">{}</span> ",
        escape(&d.name)
    );
    for a in &d.actions {
        let _ = write!(h, "<span class=\"badge\">{}</span>", escape(a));
    }
    let _ = write!(h, "</div><div class=\"muted\">{}-step sequence · ", d.steps);
    match d.last_opened_unix {
        Some(t) => {
            let _ = write!(
                h,
                "last opened <time title=\"{}\">{}</time>",
                utc(t),
                ago(s.now_unix, t)
            );
        }
        None => h.push_str("never opened"),
    }
    h.push_str("</div>");
    if d.open.is_empty() {
        h.push_str("<div class=\"muted\">closed</div>");
    } else {
        let _ = write!(
            h,
            "<div class=\"ok\">open for {} source{}</div><ul class=\"sessions\">",
            d.open.len(),
            if d.open.len() == 1 { "" } else { "s" }
        );
        for o in &d.open {
            let left = o.expires_unix.saturating_sub(s.now_unix);
            let _ = write!(
                h,
                "<li><code>{}</code> {} <span class=\"muted\">{} · opened \
                 <time title=\"{}\">{}</time> · time left</span> \
                 <span class=\"left\" data-left=\"{left}\" title=\"until {}\">{}</span></li>",
                escape(&o.src.to_string()),
                where_badge(super::is_lan(o.src)),
                o.kind.as_str(),
                utc(o.opened_unix),
                ago(s.now_unix, o.opened_unix),
                utc(o.expires_unix),
                time_left(left),
            );
        }
        h.push_str("</ul>");
    }
    h.push_str("</div>");
}

fn health(h: &mut String, s: &Snapshot) {
    h.push_str(
        "<section id=\"health\"><h2>Health</h2><div class=\"scroll\"><table>\
         <tr><th>Capture</th><th>State</th><th>Addresses</th></tr>",
    );
    if s.captures.is_empty() {
        h.push_str("<tr><td colspan=\"3\" class=\"muted\">no capture</td></tr>");
    }
    for c in &s.captures {
        let state = if c.up {
            "<span class=\"ok\">\u{25cf} up</span>".to_string()
        } else {
            format!(
                "<span class=\"bad\">\u{25cf} down</span>{}",
                c.error
                    .as_deref()
                    .map(|e| format!("<div class=\"muted\">{}</div>", escape(e)))
                    .unwrap_or_default()
            )
        };
        let addrs: Vec<String> = c
            .addresses
            .iter()
            .map(|a| format!("<code>{}</code>", escape(&a.to_string())))
            .collect();
        let _ = write!(
            h,
            "<tr><td><code>{}</code></td><td>{state}</td><td>{}</td></tr>",
            escape(&c.interface),
            addrs.join(" ")
        );
    }
    h.push_str("</table></div>");
    match &s.firewall {
        Some(f) => {
            let _ = write!(
                h,
                "<p>Firewall: {} chain <code>{}</code> {}",
                escape(&f.backend),
                escape(&f.chain),
                if f.healthy {
                    "<span class=\"ok\">\u{25cf} OK</span>"
                } else {
                    "<span class=\"bad\">\u{25cf} failing</span>"
                }
            );
            if let Some(t) = f.next_flush_unix {
                let _ = write!(
                    h,
                    "<br><span class=\"muted\">next daily flush <time title=\"{}\">{}</time></span>",
                    utc(t),
                    until(s.now_unix, t)
                );
            }
            h.push_str("</p>");
        }
        None => h.push_str("<p class=\"muted\">Firewall: not managed (command doors only)</p>"),
    }
    let _ = writeln!(
        h,
        "<p class=\"muted\">Up {} · version {}</p></section>",
        duration(s.uptime_secs),
        escape(&s.version)
    );
}

fn recent(h: &mut String, s: &Snapshot) {
    h.push_str("<section id=\"recent\" class=\"wide\"><h2>Recent knocks</h2>");
    if s.recent.is_empty() {
        h.push_str("<p class=\"muted\">No knocks yet.</p></section>\n");
        return;
    }
    h.push_str(
        "<div class=\"scroll\"><table><tr><th>When</th><th>Source</th><th>Door</th>\
         <th>What</th></tr>",
    );
    for a in &s.recent {
        let _ = write!(
            h,
            "<tr><td><time title=\"{}\">{}</time></td><td><code>{}</code> {}</td>\
             <td>{}</td><td>{}</td></tr>",
            utc(a.when_unix),
            ago(s.now_unix, a.when_unix),
            escape(&a.src.to_string()),
            where_badge(a.lan),
            escape(&a.door),
            event(a),
        );
    }
    h.push_str("</table></div></section>\n");
}

fn event(a: &Activity) -> String {
    let stage = format!("stage {}/{}", a.stage, a.of);
    match a.event {
        ActivityKind::Open => "<span class=\"ok\">opened</span>".to_string(),
        ActivityKind::Stage => stage,
        ActivityKind::Timeout => format!("<span class=\"bad\">timed out</span> at {stage}"),
        ActivityKind::Reset => format!("reset at {stage}"),
    }
}

/// The MQTT connection: said on the page, never part of the health verdict.
fn mqtt(h: &mut String, s: &Snapshot) {
    let Some(m) = &s.mqtt else {
        return;
    };
    h.push_str("<section id=\"mqtt\"><h2>Home Assistant (MQTT)</h2><p>");
    if m.connected {
        let _ = write!(
            h,
            "<span class=\"ok\">connected</span> to {}",
            escape(&m.broker)
        );
    } else {
        let _ = write!(
            h,
            "<span class=\"bad\">not connected</span> to {}: {}; the doors keep working",
            escape(&m.broker),
            escape(m.last_error.as_deref().unwrap_or("connecting"))
        );
    }
    let _ = writeln!(
        h,
        "</p><p class=\"muted\">{} message(s) dropped, {} command(s) ignored</p></section>",
        m.dropped, m.ignored
    );
}

fn gpio(h: &mut String, s: &Snapshot) {
    if s.relays.is_empty() && s.led.is_none() {
        return;
    }
    h.push_str("<section id=\"gpio\"><h2>Relays and LED</h2>");
    if let Some(g) = &s.gpio {
        if g.available {
            let _ = write!(
                h,
                "<p>GPIO: {} <span class=\"ok\">\u{25cf} OK</span></p>",
                escape(&g.backend)
            );
        } else {
            let _ = write!(
                h,
                "<p>GPIO: {} <span class=\"bad\">\u{25cf} unavailable</span><br>\
                 <span class=\"muted\">{}</span></p>",
                escape(&g.backend),
                escape(g.error.as_deref().unwrap_or(""))
            );
        }
    }
    if !s.relays.is_empty() {
        h.push_str("<table><tr><th>Relay</th><th>Pin</th><th>State</th></tr>");
        for r in &s.relays {
            let state = if !r.available {
                "<span class=\"bad\">\u{25cf} unavailable</span>".to_string()
            } else if r.on {
                let mut on = "<span class=\"ok\">\u{25cf} on</span>".to_string();
                if let Some(t) = r.off_at_unix {
                    let _ = write!(
                        on,
                        " <span class=\"muted\">off <time title=\"{}\">{}</time></span>",
                        utc(t),
                        until(s.now_unix, t)
                    );
                }
                on
            } else {
                "<span class=\"muted\">\u{25cb} off</span>".to_string()
            };
            let _ = write!(
                h,
                "<tr><td>{}</td><td>GPIO{}</td><td>{state}</td></tr>",
                escape(&r.name),
                r.pin
            );
        }
        h.push_str("</table>");
    }
    if let Some(led) = &s.led {
        let _ = write!(
            h,
            "<p>Status LED (GPIO{}): <span class=\"badge {}\">{}</span></p>",
            led.pin,
            if led.pattern == LedPattern::Error {
                "bad"
            } else {
                "ok"
            },
            led.pattern.as_str()
        );
    }
    h.push_str("</section>\n");
}

fn counters(h: &mut String, s: &Snapshot) {
    let c = &s.counters;
    h.push_str("<section id=\"counters\"><h2>Counters</h2><dl>");
    for (name, v) in [
        ("Packets seen", c.packets),
        ("Knocks", c.knocks),
        ("Stages reached", c.stages),
        ("Doors opened", c.opens),
        ("Timeouts", c.timeouts),
        ("Resets", c.resets),
        ("Evictions", c.evictions),
        ("Parse errors", c.parse_errors),
        ("Dropped (daemon behind)", c.dropped_queue),
        ("Sources knocking now", c.tracked_sources),
    ] {
        let _ = write!(h, "<dt>{name}</dt><dd>{v}</dd>");
    }
    h.push_str("</dl></section>\n");
}

fn where_badge(lan: bool) -> &'static str {
    if lan {
        "<span class=\"badge lan\" title=\"private, link-local or loopback address\">LAN</span>"
    } else {
        "<span class=\"badge out\" title=\"public address: from outside\">outside</span>"
    }
}

/// The knocks-per-hour chart: 24 labelled bars (oldest left, the current hour right), with an
/// accessible `<title>` and one `<title>` per bar. Fewer than 24 values are padded with zeros
/// on the left; more keep the last 24.
pub fn render_chart_svg(per_hour: &[u32], now_unix: u64) -> String {
    const W: u32 = 480;
    const H: u32 = 150;
    const TOP: u32 = 16;
    const BASE: u32 = 126;
    const LEFT: u32 = 28;
    let mut bars = [0u32; 24];
    let take = per_hour.len().min(24);
    bars[24 - take..].copy_from_slice(&per_hour[per_hour.len() - take..]);
    let max = bars.iter().copied().max().unwrap_or(0);
    let total: u64 = bars.iter().map(|&b| u64::from(b)).sum();
    let current_hour = now_unix - now_unix % 3600;
    let mut svg = String::with_capacity(6 * 1024);
    let _ = write!(
        svg,
        "<svg viewBox=\"0 0 {W} {H}\" role=\"img\" aria-labelledby=\"chart-title\" \
         xmlns=\"http://www.w3.org/2000/svg\"><title id=\"chart-title\">Knocks per hour over \
         the last 24 hours: {total} in total, at most {max} in one hour</title>"
    );
    let _ = write!(
        svg,
        "<line class=\"axis\" x1=\"{LEFT}\" y1=\"{BASE}\" x2=\"{W}\" y2=\"{BASE}\"/>\
         <text x=\"{}\" y=\"{}\" text-anchor=\"end\">{max}</text>\
         <text x=\"{}\" y=\"{BASE}\" text-anchor=\"end\">0</text>",
        LEFT - 4,
        TOP + 4,
        LEFT - 4
    );
    let slot = (W - LEFT) as f32 / 24.0;
    for (i, &b) in bars.iter().enumerate() {
        let height = if max == 0 {
            0.0
        } else {
            (BASE - TOP) as f32 * b as f32 / max as f32
        };
        // A non-zero hour is always visible, however small next to the peak.
        let height = if b > 0 { height.max(2.0) } else { height };
        let x = LEFT as f32 + slot * i as f32 + 2.0;
        let hours_ago = 23 - i as u64;
        let start = current_hour.saturating_sub(hours_ago * 3600);
        let _ = write!(
            svg,
            "<rect class=\"bar\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{height:.1}\">\
             <title>{b} knock{} {}, {}</title></rect>",
            BASE as f32 - height,
            slot - 4.0,
            if b == 1 { "" } else { "s" },
            if hours_ago == 0 {
                "this hour".to_string()
            } else {
                format!("{hours_ago} h ago")
            },
            hour_range(start),
        );
        if i % 6 == 0 || i == 23 {
            let label = if hours_ago == 0 {
                "now".to_string()
            } else {
                format!("-{hours_ago}h")
            };
            let _ = write!(
                svg,
                "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{label}</text>",
                x + (slot - 4.0) / 2.0,
                H - 8
            );
        }
    }
    if max == 0 {
        let _ = write!(
            svg,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">no knocks in 24 hours</text>",
            (W + LEFT) / 2,
            (TOP + BASE) / 2
        );
    }
    svg.push_str("</svg>");
    svg
}

fn hour_range(start: u64) -> String {
    let fmt = |t: u64| {
        jiff::Timestamp::from_second(t as i64)
            .map(|ts| ts.strftime("%H:%M").to_string())
            .unwrap_or_default()
    };
    format!("{}\u{2013}{} UTC", fmt(start), fmt(start + 3600))
}

/// `2026-11-21 12:14:53 UTC`.
pub fn utc(t: u64) -> String {
    i64::try_from(t)
        .ok()
        .and_then(|t| jiff::Timestamp::from_second(t).ok())
        .map(|ts| ts.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| "?".to_string())
}

fn utc_time(t: u64) -> String {
    i64::try_from(t)
        .ok()
        .and_then(|t| jiff::Timestamp::from_second(t).ok())
        .map(|ts| ts.strftime("%H:%M:%S UTC").to_string())
        .unwrap_or_else(|| "?".to_string())
}

/// "just now", "42 s ago", "2 min ago", "3 h ago", "5 d ago".
pub fn ago(now: u64, then: u64) -> String {
    if then > now {
        return "just now".to_string();
    }
    match now - then {
        0 => "just now".to_string(),
        d => format!("{} ago", short(d)),
    }
}

/// "in 2 min", "in 3 h", "now".
fn until(now: u64, then: u64) -> String {
    if then <= now {
        return "now".to_string();
    }
    format!("in {}", short(then - now))
}

fn short(d: u64) -> String {
    match d {
        0..=59 => format!("{d} s"),
        60..=3599 => format!("{} min", d / 60),
        3600..=86_399 => format!("{} h", d / 3600),
        _ => format!("{} d", d / 86_400),
    }
}

/// "29:41", "1:02:03", "closing" (the same format as the page's script).
pub fn time_left(secs: u64) -> String {
    if secs == 0 {
        return "closing".to_string();
    }
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

/// "5 min 3 s", "2 h 5 min", "3 d 4 h".
pub fn duration(secs: u64) -> String {
    let (d, h, m, s) = (
        secs / 86_400,
        secs % 86_400 / 3600,
        secs % 3600 / 60,
        secs % 60,
    );
    if d > 0 {
        format!("{d} d {h} h")
    } else if h > 0 {
        format!("{h} h {m} min")
    } else if m > 0 {
        format!("{m} min {s} s")
    } else {
        format!("{s} s")
    }
}

/// A snapshot with a bit of everything, for the status module's unit tests.
#[cfg(test)]
pub(crate) fn sample() -> Snapshot {
    use super::*;
    let now = 1_790_000_000;
    Snapshot {
        version: "0.1.0".into(),
        now_unix: now,
        uptime_secs: 3 * 3600 + 120,
        healthy: false,
        captures: vec![
            CaptureStatus {
                interface: "eth0".into(),
                up: true,
                error: None,
                addresses: vec!["192.168.1.1".parse().unwrap(), "fd00::1".parse().unwrap()],
            },
            CaptureStatus {
                interface: "wlan<0>".into(),
                up: false,
                error: Some("No such device".into()),
                addresses: vec![],
            },
        ],
        firewall: Some(FirewallStatus {
            backend: "iptables".into(),
            chain: "KNOCKD".into(),
            healthy: true,
            next_flush_unix: Some(now + 5 * 3600),
        }),
        doors: vec![
            DoorStatus {
                name: "ssh<script>alert(1)</script>".into(),
                actions: vec!["firewall".into()],
                steps: 3,
                open: vec![OpenSession {
                    src: "203.0.113.9".parse().unwrap(),
                    kind: super::SessionKind::Firewall,
                    opened_unix: now - 19,
                    expires_unix: now + 1781,
                }],
                last_opened_unix: Some(now - 19),
            },
            DoorStatus {
                name: "garage".into(),
                actions: vec!["gpio".into(), "command".into()],
                steps: 2,
                open: vec![],
                last_opened_unix: None,
            },
        ],
        recent: vec![
            Activity {
                when_unix: now - 19,
                src: "203.0.113.9".parse().unwrap(),
                lan: false,
                door: "ssh<script>alert(1)</script>".into(),
                event: ActivityKind::Open,
                stage: 3,
                of: 3,
            },
            Activity {
                when_unix: now - 300,
                src: "192.168.1.20".parse().unwrap(),
                lan: true,
                door: "garage".into(),
                event: ActivityKind::Timeout,
                stage: 1,
                of: 2,
            },
        ],
        knocks_per_hour: (0..24).map(|i| (i * 7 % 11) as u32).collect(),
        counters: Counters {
            packets: 1234,
            knocks: 99,
            stages: 40,
            opens: 7,
            timeouts: 3,
            resets: 2,
            evictions: 0,
            parse_errors: 1,
            dropped_queue: 0,
            tracked_sources: 1,
        },
        relays: vec![RelayStatus {
            name: "garage \"door\"".into(),
            pin: 17,
            available: true,
            on: true,
            off_at_unix: Some(now + 2),
        }],
        led: Some(LedStatus {
            pin: 27,
            pattern: LedPattern::Open,
            available: true,
        }),
        gpio: Some(GpioStatus {
            backend: "cdev".into(),
            available: true,
            error: None,
        }),
        notices: vec![],
        mqtt: None,
        state: Some(StateStatus {
            dir: "/var/lib/knockgate".into(),
            writable: true,
            error: None,
        }),
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use sha2::Digest as _;

    use super::*;

    /// `sha256-` and the base64 of the SHA-256 of `text`, as a browser computes a CSP hash.
    /// In-process (sha2, base64): the ARM tests run under qemu-user, where a fork of this
    /// many-threaded test binary to run sha256sum once hung in the child, before its exec,
    /// for hours.
    fn csp_hash(text: &str) -> String {
        let digest = sha2::Sha256::digest(text.as_bytes());
        format!(
            "sha256-{}",
            base64::engine::general_purpose::STANDARD.encode(digest)
        )
    }

    #[test]
    fn csp_hashes_match_the_inline_style_and_script() {
        assert_eq!(csp_hash(STYLE), STYLE_HASH, "update STYLE_HASH");
        assert_eq!(csp_hash(SCRIPT), SCRIPT_HASH, "update SCRIPT_HASH");
        // The page embeds them byte for byte.
        let page = render_html(&sample());
        assert!(page.contains(&format!("<style>{STYLE}</style>")));
        assert!(page.contains(&format!("<script>{SCRIPT}</script>")));
    }

    #[test]
    fn escapes_every_special_character() {
        assert_eq!(
            escape(r#"<a href="x" onclick='y'>&</a>"#),
            "&lt;a href=&quot;x&quot; onclick=&#39;y&#39;&gt;&amp;&lt;/a&gt;"
        );
    }

    #[test]
    fn page_escapes_user_controlled_names() {
        let page = render_html(&sample());
        assert!(!page.contains("<script>alert"), "door name not escaped");
        assert!(page.contains("ssh&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains("wlan&lt;0&gt;"));
        assert!(page.contains("garage &quot;door&quot;"));
        // Exactly one script and one stylesheet, both ours; nothing loads from elsewhere.
        assert_eq!(page.matches("<script").count(), 1);
        assert_eq!(page.matches("<style").count(), 1);
        assert!(
            !page.contains(" style="),
            "a style attribute defeats the CSP hash"
        );
        assert!(!page.contains(" src="));
        assert!(!page.contains("href=\"http"));
        assert!(!page.contains("<link"));
    }

    #[test]
    fn a_broker_down_is_said_on_the_page_and_in_the_metrics_but_is_no_fault() {
        let mut s = sample();
        s.healthy = true;
        s.mqtt = Some(super::super::MqttView {
            broker: "mqtt://ha.lan:1883".into(),
            connected: false,
            last_error: Some("I/O: Connection refused <x>".into()),
            dropped: 3,
            ignored: 1,
        });
        let page = render_html(&s);
        assert!(page.contains("<section id=\"mqtt\">"), "{page}");
        assert!(page.contains("not connected</span> to mqtt://ha.lan:1883: I/O: Connection refused &lt;x&gt;; the doors keep working"));
        assert!(page.contains("3 message(s) dropped, 1 command(s) ignored"));
        assert_eq!(
            super::super::faults(&s),
            super::super::faults(&sample()),
            "MQTT is not a fault"
        );
        let metrics = crate::status::render_metrics(&s);
        assert!(
            metrics.contains("knockgate_mqtt_connected{broker=\"mqtt://ha.lan:1883\"} 0"),
            "{metrics}"
        );
        assert!(metrics.contains("knockgate_mqtt_dropped_total 3"));
        let json = crate::status::render_json(&s);
        assert!(
            json.contains("\"mqtt\":{\"broker\":\"mqtt://ha.lan:1883\",\"connected\":false"),
            "{json}"
        );
        // Without [mqtt]: no section, no field.
        let plain = sample();
        assert!(!render_html(&plain).contains("id=\"mqtt\""));
        assert!(!crate::status::render_json(&plain).contains("\"mqtt\""));
    }

    #[test]
    fn page_shows_health_doors_activity_gpio_and_counters() {
        let page = render_html(&sample());
        assert!(page.starts_with("<!DOCTYPE html>"));
        assert!(page.contains("<meta name=\"viewport\""));
        assert!(page.contains("<meta http-equiv=\"refresh\" content=\"5\">"));
        assert!(page.contains("<title>knockgate: PROBLEM</title>"));
        assert!(page.contains("capture on wlan&lt;0&gt; is down: No such device"));
        assert!(page.contains("up 3 h 2 min"));
        // The open session: source, outside badge, time left (also as data for the script).
        assert!(page.contains("<code>203.0.113.9</code> <span class=\"badge out\""));
        assert!(page.contains("data-left=\"1781\""));
        assert!(page.contains(">29:41</span>"));
        assert!(page.contains("title=\"until 2026-09-21 14:43:01 UTC\""));
        assert!(
            page.contains("last opened <time title=\"2026-09-21 14:13:01 UTC\">19 s ago</time>")
        );
        assert!(page.contains("never opened"));
        // Recent activity: LAN and outside distinguished.
        assert!(page.contains("<code>192.168.1.20</code> <span class=\"badge lan\""));
        assert!(page.contains("timed out</span> at stage 1/2"));
        assert!(page.contains("5 min ago"));
        // GPIO, firewall, counters.
        assert!(page.contains("GPIO17"));
        assert!(page.contains("off <time title=\"2026-09-21 14:13:22 UTC\">in 2 s</time>"));
        assert!(page.contains("Status LED (GPIO27)"));
        assert!(page.contains("chain <code>KNOCKD</code> <span class=\"ok\">"));
        assert!(
            page.contains("next daily flush <time title=\"2026-09-21 19:13:20 UTC\">in 5 h</time>")
        );
        assert!(page.contains("<dt>Packets seen</dt><dd>1234</dd>"));
        assert!(page.contains("<dt>Parse errors</dt><dd>1</dd>"));
        assert!(page.contains("<svg"));
    }

    #[test]
    fn a_healthy_quiet_gateway() {
        let s = Snapshot {
            version: "1".into(),
            now_unix: 1_790_000_000,
            healthy: true,
            ..Snapshot::default()
        };
        assert!(problems(&s).is_empty());
        let page = render_html(&s);
        assert!(page.contains("<title>knockgate: OK</title>"));
        assert!(page.contains("All OK"));
        assert!(page.contains("No doors configured."));
        assert!(page.contains("No knocks yet."));
        assert!(
            !page.contains("id=\"gpio\""),
            "no relays, no LED: no section"
        );
        assert!(page.contains("no knocks in 24 hours"));
    }

    #[test]
    fn problems_say_what_is_wrong() {
        let mut s = sample();
        assert_eq!(problems(&s), ["capture on wlan<0> is down: No such device"]);
        s.captures[1].error = None;
        s.firewall.as_mut().unwrap().healthy = false;
        s.led.as_mut().unwrap().pattern = LedPattern::Error;
        assert_eq!(
            problems(&s),
            [
                "capture on wlan<0> is down",
                "the firewall (iptables chain KNOCKD) failed its last command",
                "the status LED shows an error"
            ]
        );
        let unexplained = Snapshot {
            now_unix: 1,
            ..Snapshot::default()
        };
        assert_eq!(
            problems(&unexplained),
            ["the daemon reports a problem (see its log)"]
        );
        assert_eq!(
            problems(&Snapshot::default()),
            ["the daemon has not published its status yet"]
        );
    }

    #[test]
    fn relative_and_left_times() {
        assert_eq!(time_left(1781), "29:41");
        assert_eq!(time_left(59), "0:59");
        assert_eq!(time_left(3723), "1:02:03");
        assert_eq!(time_left(0), "closing");
        assert_eq!(ago(100, 100), "just now");
        assert_eq!(ago(100, 200), "just now");
        assert_eq!(ago(100, 58), "42 s ago");
        assert_eq!(ago(1000, 880), "2 min ago");
        assert_eq!(ago(20_000, 9_000), "3 h ago");
        assert_eq!(ago(900_000, 400_000), "5 d ago");
        assert_eq!(duration(303), "5 min 3 s");
        assert_eq!(duration(7500), "2 h 5 min");
        assert_eq!(duration(4 * 86_400 + 3 * 3600), "4 d 3 h");
        assert_eq!(duration(9), "9 s");
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(u64::MAX), "?");
    }

    #[test]
    fn chart_has_24_labelled_bars() {
        let now = 1_790_000_000; // 14:13:20 UTC
        let svg = render_chart_svg(&[5, 0, 10], now);
        assert!(svg.starts_with("<svg viewBox=\"0 0 480 150\" role=\"img\""));
        assert!(svg.contains(
            "<title id=\"chart-title\">Knocks per hour over the last 24 hours: 15 in total, \
             at most 10 in one hour</title>"
        ));
        assert_eq!(svg.matches("<rect class=\"bar\"").count(), 24);
        // Padded on the left: the given hours are the last three.
        assert!(svg.contains("<title>10 knocks this hour, 14:00\u{2013}15:00 UTC</title>"));
        assert!(svg.contains("<title>0 knocks 1 h ago, 13:00\u{2013}14:00 UTC</title>"));
        assert!(svg.contains("<title>5 knocks 2 h ago, 12:00\u{2013}13:00 UTC</title>"));
        assert!(svg.contains("<title>0 knocks 23 h ago, 15:00\u{2013}16:00 UTC</title>"));
        for label in [">-23h<", ">-17h<", ">-11h<", ">-5h<", ">now<"] {
            assert!(svg.contains(label), "{label}");
        }
        // The peak is full height; a small non-zero hour stays visible.
        assert!(svg.contains("height=\"110.0\"><title>10 knocks"));
        let tiny = render_chart_svg(&[1, 1000], now);
        assert!(tiny.contains("height=\"2.0\"><title>1 knock 1 h ago"));
        // More than 24 hours keep the last 24.
        let long: Vec<u32> = (1..=30).collect();
        let svg = render_chart_svg(&long, now);
        assert!(svg.contains("at most 30 in one hour"));
        assert!(svg.contains("<title>7 knocks 23 h ago"));
        assert!(!svg.contains("<title>6 knocks"));
    }
}

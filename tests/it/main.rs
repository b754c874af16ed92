//! The integration tests, one binary (as ripgrep's `tests/tests.rs`): a module per area, run
//! side by side by one harness instead of one binary after another, with the shared helpers in
//! `tests/common`. The probes that measure the daemon's CPU, wake-ups and memory (`idle`,
//! `soak`, `engine_memory`) stay binaries of their own: nothing else runs beside them.
//!
//! Most tests here need root (network namespaces, iptables): outside CI they skip with a
//! message; in CI they must run (`scripts/test.sh` refuses a skip).

#[path = "../common/browser.rs"]
mod browser;
#[path = "../common/mod.rs"]
mod common;

mod cli;
mod faults;
mod firewall;
mod firewall_backend;
mod firstboot;
mod gpio_wol;
mod knock_page;
mod mqtt;
mod netns;
mod replay_daemon;
mod spa_daemon;
mod spa_fwknop;
mod spa_fwknopd;
mod status_daemon;
mod status_http;

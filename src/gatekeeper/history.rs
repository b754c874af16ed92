//! What the status page shows of the past: recent activity, knocks per hour, each door's last
//! opening. Recorded by the gatekeeper as it decides, read by the daemon's snapshot.

use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;

use crate::status::{self, Activity, ActivityKind};

#[derive(Debug, Default)]
pub struct History {
    recent: VecDeque<Activity>,
    /// (hour since the Unix epoch, accepted knock steps in it), oldest first, at most 24.
    hourly: VecDeque<(u64, u32)>,
    last_opened: BTreeMap<String, u64>,
}

impl History {
    /// Records what `src` did at `now` (Unix seconds) at `door`.
    pub fn record(
        &mut self,
        now: u64,
        src: IpAddr,
        door: &str,
        event: ActivityKind,
        stage: usize,
        of: usize,
    ) {
        if matches!(event, ActivityKind::Stage | ActivityKind::Open) {
            let hour = now / 3600;
            match self.hourly.back_mut() {
                Some((h, n)) if *h == hour => *n += 1,
                _ => self.hourly.push_back((hour, 1)),
            }
            while self.hourly.front().is_some_and(|(h, _)| *h + 24 <= hour) {
                self.hourly.pop_front();
            }
        }
        if event == ActivityKind::Open {
            self.last_opened.insert(door.to_string(), now);
        }
        self.recent.push_front(Activity {
            when_unix: now,
            src,
            lan: status::is_lan(src),
            door: door.to_string(),
            event,
            stage,
            of,
        });
        self.recent.truncate(status::RECENT);
    }

    /// The latest activity first.
    pub fn recent(&self) -> impl Iterator<Item = &Activity> {
        self.recent.iter()
    }

    /// When `door` last opened (Unix seconds).
    pub fn last_opened(&self, door: &str) -> Option<u64> {
        self.last_opened.get(door).copied()
    }

    /// Knocks per hour over the last 24 hours, oldest first.
    pub fn per_hour(&self, now_unix: u64) -> Vec<u32> {
        let hour = now_unix / 3600;
        (0..24u64)
            .rev()
            .map(|ago| {
                self.hourly
                    .iter()
                    .find(|(h, _)| *h + ago == hour)
                    .map_or(0, |(_, n)| *n)
            })
            .collect()
    }
}

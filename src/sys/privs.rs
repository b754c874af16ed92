//! Least privilege: the daemon does what needs root first (the state directory, the pid file,
//! the GPIO), then runs as an unprivileged user that keeps only the capabilities it needs:
//! CAP_NET_RAW (to capture, and to re-open a capture when an interface comes back),
//! CAP_NET_ADMIN (the firewall), and CAP_NET_BIND_SERVICE only if the status page listens on a
//! port below 1024. NoNewPrivs is set, so nothing it runs can gain more.
//!
//! Capabilities belong to threads, so the switch happens before the daemon starts any thread;
//! every thread after it (signals, status page, captures, commands) inherits it. The kept
//! capabilities are also made ambient, so the commands the daemon runs (iptables, door
//! commands) have them too, and nothing else. Supplementary groups come from the user's own
//! (put the user in `gpio` for the relays).

use std::ffi::CString;
use std::path::Path;

use caps::{CapSet, Capability, CapsHashSet};
use nix::unistd::{self, Gid, Uid, User};

/// Why the daemon could not switch users. Each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum PrivError {
    #[error("user `{0}` does not exist: create it with `useradd --system --no-create-home --shell /usr/sbin/nologin {0}`, or remove [daemon] user")]
    NoUser(String),
    #[error("switching to user `{user}` needs root: start knockgate as root (systemd does), or remove [daemon] user")]
    NotRoot { user: String },
    #[error("switching to user `{user}`: {what}: {detail}")]
    Failed {
        user: String,
        what: &'static str,
        detail: String,
    },
}

/// The user to become.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub uid: Uid,
    pub gid: Gid,
}

/// Looks `name` up in the user database.
pub fn lookup(name: &str) -> Result<Target, PrivError> {
    match User::from_name(name) {
        Ok(Some(u)) => Ok(Target {
            name: name.to_string(),
            uid: u.uid,
            gid: u.gid,
        }),
        _ => Err(PrivError::NoUser(name.to_string())),
    }
}

/// Gives `path` (a directory the daemon must keep writing: its state) to the target user.
pub fn hand_over(path: &Path, target: &Target) -> std::io::Result<()> {
    std::os::unix::fs::chown(path, Some(target.uid.as_raw()), Some(target.gid.as_raw()))?;
    for entry in std::fs::read_dir(path)? {
        let entry = entry?;
        std::os::unix::fs::lchown(
            entry.path(),
            Some(target.uid.as_raw()),
            Some(target.gid.as_raw()),
        )?;
    }
    Ok(())
}

/// The capabilities kept.
pub fn needed(bind_low_port: bool) -> CapsHashSet {
    let mut set = CapsHashSet::new();
    set.insert(Capability::CAP_NET_RAW);
    set.insert(Capability::CAP_NET_ADMIN);
    if bind_low_port {
        set.insert(Capability::CAP_NET_BIND_SERVICE);
    }
    set
}

/// Becomes `target`, keeping `keep`. Must run before any other thread exists.
pub fn drop_to(target: &Target, keep: &CapsHashSet) -> Result<(), PrivError> {
    let fail = |what: &'static str| {
        let user = target.name.clone();
        move |e: &dyn std::fmt::Display| PrivError::Failed {
            user: user.clone(),
            what,
            detail: e.to_string(),
        }
    };
    if !unistd::geteuid().is_root() {
        return Err(PrivError::NotRoot {
            user: target.name.clone(),
        });
    }
    let cname = CString::new(target.name.as_str()).map_err(|e| fail("user name")(&e))?;
    let groups = unistd::getgrouplist(&cname, target.gid).map_err(|e| fail("groups")(&e))?;
    unistd::setgroups(&groups).map_err(|e| fail("setgroups")(&e))?;
    // Keep the permitted capabilities across the change of uid.
    nix::sys::prctl::set_keepcaps(true).map_err(|e| fail("keepcaps")(&e))?;
    unistd::setresgid(target.gid, target.gid, target.gid).map_err(|e| fail("setresgid")(&e))?;
    unistd::setresuid(target.uid, target.uid, target.uid).map_err(|e| fail("setresuid")(&e))?;
    for set in [CapSet::Permitted, CapSet::Effective, CapSet::Inheritable] {
        caps::set(None, set, keep).map_err(|e| fail("capabilities")(&e))?;
    }
    caps::set(None, CapSet::Ambient, keep).map_err(|e| fail("ambient capabilities")(&e))?;
    nix::sys::prctl::set_keepcaps(false).map_err(|e| fail("keepcaps")(&e))?;
    nix::sys::prctl::set_no_new_privs().map_err(|e| fail("no_new_privs")(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_user_says_how_to_create_it() {
        let e = lookup("knockgate-no-such-user").unwrap_err();
        assert!(e.to_string().contains("useradd --system"), "{e}");
        assert_eq!(lookup("root").unwrap().uid, Uid::from_raw(0));
    }

    #[test]
    fn kept_capabilities() {
        assert_eq!(needed(false).len(), 2);
        assert!(needed(true).contains(&Capability::CAP_NET_BIND_SERVICE));
    }
}

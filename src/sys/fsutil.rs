//! Durable file writes for state that must survive a power cut on an SD card.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use super::busy::Steps;

/// Replaces `path` with `bytes` atomically and durably: a temporary file in the same directory
/// (keeping the old file's permissions), fsync, rename over the old file, fsync of the
/// directory. A power cut leaves the old content or the new, never a mix. The write and its
/// fsyncs are a slow step on an SD card: they run through `steps` (in the daemon, the capture
/// rings are emptied meanwhile).
pub fn write_atomic(path: &Path, bytes: &[u8], steps: &Steps) -> io::Result<()> {
    replace(path, bytes, false, steps)
}

/// [`write_atomic`] for a file that others own or read, such as the config rewritten by
/// `knockgate firstboot`: the new file also gets the old one's owner and group, and the
/// temporary file is private (mode 600) until it has the old file's mode.
pub fn write_atomic_keep_owner(path: &Path, bytes: &[u8]) -> io::Result<()> {
    replace(path, bytes, true, &Steps::here())
}

fn replace(path: &Path, bytes: &[u8], keep_owner: bool, steps: &Steps) -> io::Result<()> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.knockgate-tmp"));
    let result = steps.run(|| {
        let mut f = if keep_owner {
            fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?
        } else {
            fs::File::create(&tmp)?
        };
        if let Ok(meta) = fs::metadata(path) {
            if keep_owner {
                std::os::unix::fs::fchown(&f, Some(meta.uid()), Some(meta.gid()))?;
            }
            f.set_permissions(meta.permissions())?;
        }
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        fs::File::open(dir)?.sync_all()
    });
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn replaces_content_keeps_mode_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        fs::write(&path, b"old").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        write_atomic(&path, b"new", &Steps::here()).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        assert!(write_atomic(&dir.path().join("missing/state"), b"x", &Steps::here()).is_err());
    }

    #[test]
    fn keeping_the_owner_keeps_mode_owner_and_group() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("knockgate.toml");
        fs::write(&path, b"old").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        // As root, give the file to another owner and group, as a config owned by the
        // daemon's group would be; otherwise the owner is ours and must stay so.
        let root = nix::unistd::Uid::effective().is_root();
        if root {
            std::os::unix::fs::chown(&path, Some(65534), Some(65534)).unwrap();
        }
        let before = fs::metadata(&path).unwrap();
        write_atomic_keep_owner(&path, b"new").unwrap();
        let after = fs::metadata(&path).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert_eq!(after.permissions().mode() & 0o777, 0o640);
        assert_eq!((after.uid(), after.gid()), (before.uid(), before.gid()));
        if root {
            assert_eq!((after.uid(), after.gid()), (65534, 65534));
        }
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}

//! `knockgate spa keygen`: a key pair for fwknop's Single Packet Authorization
//! ([`crate::doors::spa`]), written as two private key files, and the `.fwknoprc` stanza that
//! lets fwknop's client use them.

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::doors::spa::{Keys, DEFAULT_PORT};

/// Bytes of each key, as `fwknop --key-gen` makes them.
pub const KEY_BYTES: usize = 32;
pub const HMAC_KEY_BYTES: usize = 64;

/// What `knockgate spa keygen` is asked for.
#[derive(Debug, Clone)]
pub struct KeygenOptions {
    pub key_file: PathBuf,
    pub hmac_key_file: PathBuf,
    /// Replace existing key files.
    pub force: bool,
    /// For the stanza: the gateway's name or address, what to open, the port.
    pub server: String,
    pub access: String,
    pub port: u16,
}

/// Draws a key pair from `random` (the kernel's CSPRNG in the command).
pub fn generate(random: &mut dyn Read) -> io::Result<Keys> {
    let mut key = vec![0u8; KEY_BYTES];
    let mut hmac = vec![0u8; HMAC_KEY_BYTES];
    random.read_exact(&mut key)?;
    random.read_exact(&mut hmac)?;
    Ok(Keys::new(key, hmac).expect("the sizes are within bounds"))
}

/// Writes the two key files (mode 600, never over an existing file unless `force`) and
/// returns the `.fwknoprc` stanza for the client.
pub fn keygen(opts: &KeygenOptions, random: &mut dyn Read) -> Result<String, String> {
    let keys = generate(random).map_err(|e| format!("cannot read random numbers: {e}"))?;
    let (key64, hmac64) = keys.to_base64();
    write_key(&opts.key_file, &key64, opts.force)?;
    write_key(&opts.hmac_key_file, &hmac64, opts.force)?;
    Ok(stanza(opts, &key64, &hmac64))
}

fn write_key(path: &Path, key: &str, force: bool) -> Result<(), String> {
    let mut options = fs::OpenOptions::new();
    options.write(true).mode(0o600);
    if force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let mut f = options.open(path).map_err(|e| {
        if e.kind() == io::ErrorKind::AlreadyExists {
            format!(
                "{} exists: keep it, or give --force to replace it (clients with the old keys stop working)",
                path.display()
            )
        } else {
            format!("cannot write {}: {e}", path.display())
        }
    })?;
    // An existing file replaced with --force keeps its mode: make it private too.
    use std::os::unix::fs::PermissionsExt;
    f.set_permissions(fs::Permissions::from_mode(0o600))
        .and_then(|()| writeln!(f, "{key}"))
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// fwknop's client configuration for this gateway (`~/.fwknoprc`, then `fwknop -n NAME`).
pub fn stanza(opts: &KeygenOptions, key64: &str, hmac64: &str) -> String {
    let port = if opts.port == DEFAULT_PORT {
        String::new()
    } else {
        format!("SPA_SERVER_PORT     {}\n", opts.port)
    };
    format!(
        "# For ~/.fwknoprc on the client (mode 600), then: fwknop -n knockgate\n\
         [knockgate]\n\
         SPA_SERVER          {server}\n\
         {port}\
         ACCESS              {access}\n\
         ALLOW_IP            source\n\
         KEY_BASE64          {key64}\n\
         HMAC_KEY_BASE64     {hmac64}\n\
         USE_HMAC            Y\n",
        server = opts.server,
        access = opts.access,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doors::spa::read_key_file;

    #[test]
    fn keygen_writes_private_files_that_load_and_refuses_to_overwrite() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let opts = KeygenOptions {
            key_file: dir.path().join("spa.key"),
            hmac_key_file: dir.path().join("spa.hmac"),
            force: false,
            server: "gw.example".into(),
            access: "tcp/22".into(),
            port: DEFAULT_PORT,
        };
        let mut random = io::repeat(7);
        let text = keygen(&opts, &mut random).unwrap();
        let keys = Keys::load(&opts.key_file, &opts.hmac_key_file).unwrap();
        assert_eq!(keys, Keys::new(vec![7; 32], vec![7; 64]).unwrap());
        for f in [&opts.key_file, &opts.hmac_key_file] {
            let mode = fs::metadata(f).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let (k, h) = keys.to_base64();
        assert!(
            text.contains(&format!("KEY_BASE64          {k}\n")),
            "{text}"
        );
        assert!(
            text.contains(&format!("HMAC_KEY_BASE64     {h}\n")),
            "{text}"
        );
        assert!(text.contains("SPA_SERVER          gw.example\n"));
        assert!(!text.contains("SPA_SERVER_PORT"));

        let e = keygen(&opts, &mut random).unwrap_err();
        assert!(e.contains("exists"), "{e}");
        let forced = KeygenOptions {
            force: true,
            port: 62000,
            ..opts.clone()
        };
        let text = keygen(&forced, &mut io::repeat(9)).unwrap();
        assert!(text.contains("SPA_SERVER_PORT     62000\n"));
        assert_eq!(read_key_file(&opts.key_file).unwrap(), vec![9; 32]);

        // A key file others can read is refused, naming the file and the fix.
        fs::set_permissions(&opts.key_file, fs::Permissions::from_mode(0o644)).unwrap();
        let e = read_key_file(&opts.key_file).unwrap_err();
        assert!(e.contains("chmod 600"), "{e}");
    }

    #[test]
    fn key_files_take_fwknop_key_gen_lines() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("k");
        fs::write(
            &f,
            "KEY_BASE64: eKHmC2Ow2JTqzXLy7sjYBRFfCmrQwbTAx2uiznipAug=\n",
        )
        .unwrap();
        fs::set_permissions(&f, fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_key_file(&f).unwrap().len(), 32);
        fs::write(&f, "not base64!\n").unwrap();
        assert!(read_key_file(&f).unwrap_err().contains("base64"));
    }
}

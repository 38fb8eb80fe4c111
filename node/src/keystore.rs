//! The identity on disk: one ed25519 secret key per node home, in `<home>/identity.key`.
//!
//! The file is created with mode 0600 in one step (`O_CREAT | O_EXCL`), so it is never readable by
//! others, not even for an instant, and an existing key is never overwritten: losing a key is losing
//! a person's name and reputation. On load, a key file that group or others can read is refused
//! (like ssh does), with the command that fixes it.
//!
//! Format (text, so it survives copy and paste into a backup): a first line `troc-identity-v1`, then
//! the 32-byte seed as 64 lowercase hex digits on the second line. The seed never appears in errors.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use thiserror::Error;
use troc_protocol::{EntropyError, Identity};
use zeroize::Zeroizing;

/// The key file's name inside a node home.
pub const KEY_FILE: &str = "identity.key";
const MAGIC: &str = "troc-identity-v1";

/// What can go wrong with the key file.
#[derive(Debug, Error)]
pub enum KeystoreError {
    #[error("no identity in {path}: run `troc init` first")]
    Missing { path: PathBuf },
    #[error("an identity already exists in {path}; troc never overwrites a key")]
    AlreadyExists { path: PathBuf },
    #[error("{path} is readable by other users (mode {mode:o}); fix it with: chmod 600 {path}")]
    TooOpen { path: PathBuf, mode: u32 },
    #[error("{path} is not a troc identity file ({reason})")]
    Corrupt { path: PathBuf, reason: &'static str },
    #[error("could not access {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Entropy(#[from] EntropyError),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> KeystoreError + '_ {
    move |source| KeystoreError::Io { path: path.to_owned(), source }
}

/// The key file path in `home`.
pub fn key_path(home: &Path) -> PathBuf {
    home.join(KEY_FILE)
}

/// Creates a new identity in `home` (created with mode 0700 if missing). Fails if one exists.
pub fn create(home: &Path) -> Result<Identity, KeystoreError> {
    let identity = Identity::generate()?;
    save(home, &identity)?;
    Ok(identity)
}

/// Saves `identity` as the key of `home`. Fails if `home` already has a key.
pub fn save(home: &Path, identity: &Identity) -> Result<(), KeystoreError> {
    create_home(home)?;
    let path = key_path(home);
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut file = opts.open(&path).map_err(|e| {
        if e.kind() == io::ErrorKind::AlreadyExists {
            KeystoreError::AlreadyExists { path: path.clone() }
        } else {
            KeystoreError::Io { path: path.clone(), source: e }
        }
    })?;
    let text = Zeroizing::new(format!("{MAGIC}\n{}\n", hex::encode(*identity.seed())));
    file.write_all(text.as_bytes()).map_err(io_err(&path))?;
    file.sync_all().map_err(io_err(&path))?;
    Ok(())
}

/// Restores an identity from its secret key (the 32-byte seed, as in a backup) into `home`, with the
/// same guarantees as [`create`]: mode 0600 from the start, and never over an existing key.
pub fn restore(home: &Path, secret: &[u8; 32]) -> Result<Identity, KeystoreError> {
    let identity = Identity::from_seed(secret);
    save(home, &identity)?;
    Ok(identity)
}

/// Loads the identity of `home`.
pub fn load(home: &Path) -> Result<Identity, KeystoreError> {
    let path = key_path(home);
    let meta = fs::metadata(&path).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            KeystoreError::Missing { path: path.clone() }
        } else {
            KeystoreError::Io { path: path.clone(), source: e }
        }
    })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeystoreError::TooOpen { path, mode });
        }
    }
    if meta.len() > 1024 {
        return Err(KeystoreError::Corrupt { path, reason: "too large" });
    }
    let text = Zeroizing::new(fs::read_to_string(&path).map_err(io_err(&path))?);
    let mut lines = text.lines();
    if lines.next() != Some(MAGIC) {
        return Err(KeystoreError::Corrupt { path, reason: "missing the troc-identity-v1 line" });
    }
    let mut seed = Zeroizing::new([0u8; 32]);
    let hex_line = lines.next().unwrap_or("").trim();
    if hex::decode_to_slice(hex_line, &mut seed[..]).is_err() {
        return Err(KeystoreError::Corrupt { path, reason: "the key line is not 64 hex digits" });
    }
    Ok(Identity::from_seed(&seed))
}

/// Loads the identity of `home`, creating one if there is none yet. Returns whether it was created.
pub fn load_or_create(home: &Path) -> Result<(Identity, bool), KeystoreError> {
    match load(home) {
        Ok(id) => Ok((id, false)),
        Err(KeystoreError::Missing { .. }) => match create(home) {
            Ok(id) => Ok((id, true)),
            // Another process created it between our load and create: use theirs.
            Err(KeystoreError::AlreadyExists { .. }) => Ok((load(home)?, false)),
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    }
}

/// Creates the node home with mode 0700 if it does not exist.
pub fn create_home(home: &Path) -> Result<(), KeystoreError> {
    if home.is_dir() {
        return Ok(());
    }
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(home).map_err(io_err(home))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_then_load_same_identity() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        let a = create(&home).unwrap();
        let b = load(&home).unwrap();
        assert_eq!(a.public(), b.public());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(key_path(&home)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
    }

    #[test]
    fn never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let a = create(dir.path()).unwrap();
        assert!(matches!(create(dir.path()), Err(KeystoreError::AlreadyExists { .. })));
        let (b, created) = load_or_create(dir.path()).unwrap();
        assert!(!created);
        assert_eq!(a.public(), b.public());
    }

    #[test]
    fn restore_writes_the_same_key_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let original = create(&dir.path().join("a")).unwrap();
        let home = dir.path().join("b");
        let restored = restore(&home, &original.seed()).unwrap();
        assert_eq!(restored.public(), original.public());
        assert_eq!(load(&home).unwrap().public(), original.public());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(key_path(&home)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let other = Identity::from_seed(&[9u8; 32]);
        assert!(matches!(restore(&home, &other.seed()), Err(KeystoreError::AlreadyExists { .. })));
        assert_eq!(load(&home).unwrap().public(), original.public(), "the key is unchanged");
    }

    #[test]
    fn missing_and_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(load(dir.path()), Err(KeystoreError::Missing { .. })));
        let path = key_path(dir.path());
        fs::write(&path, "hello\n").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        }
        assert!(matches!(load(dir.path()), Err(KeystoreError::Corrupt { .. })));
        fs::write(&path, format!("{MAGIC}\nzz\n")).unwrap();
        assert!(matches!(load(dir.path()), Err(KeystoreError::Corrupt { .. })));
    }

    #[cfg(unix)]
    #[test]
    fn refuses_a_readable_key_and_never_prints_it() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let id = create(dir.path()).unwrap();
        let path = key_path(dir.path());
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = load(dir.path()).unwrap_err();
        assert!(matches!(err, KeystoreError::TooOpen { mode: 0o644, .. }));
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains(&hex::encode(*id.seed())));
        assert!(shown.contains("chmod 600"));
    }
}

//! The API's own small state, kept in `<home>/local.json`: saved searches (alerts), and what
//! `troc join` remembered (peers to keep connected, communities to follow).
//!
//! It is not part of the replicated data (nothing here is signed or gossiped), so it does not
//! belong in the store. It is tiny and bounded, rewritten whole on every change, atomically
//! (write a temporary file, fsync, rename): a crash leaves the old file or the new one.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::search::Query;

/// The file, in the home.
pub const LOCAL_FILE: &str = "local.json";
/// Saved searches at most.
pub const MAX_ALERTS: usize = 100;
/// Remembered peers at most (the node keeps at most 64 bootstrap peers).
pub const MAX_PEERS: usize = 64;
/// Remembered communities at most.
pub const MAX_COMMUNITIES: usize = 32;
/// The longest alert name.
pub const MAX_ALERT_NAME: usize = 80;

/// A saved search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Alert {
    /// 8 hex characters, random.
    pub id: String,
    pub name: String,
    pub query: Query,
    pub created_at: u64,
}

/// Everything in `local.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LocalState {
    pub alerts: Vec<Alert>,
    /// Multiaddrs ending in `/p2p/<peer id>`.
    pub peers: Vec<String>,
    pub communities: Vec<String>,
}

#[derive(Debug, Error)]
pub enum LocalError {
    #[error("could not read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not valid: {reason} (fix or remove it)")]
    Invalid { path: PathBuf, reason: String },
    #[error("could not write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("at most {0} alerts")]
    TooManyAlerts(usize),
}

/// The state and its file. Changes are written before they are answered.
#[derive(Debug)]
pub struct LocalStore {
    path: PathBuf,
    state: Mutex<LocalState>,
}

impl LocalStore {
    pub fn open(home: &Path) -> Result<LocalStore, LocalError> {
        let path = home.join(LOCAL_FILE);
        let state = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| LocalError::Invalid { path: path.clone(), reason: e.to_string() })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => LocalState::default(),
            Err(source) => return Err(LocalError::Read { path, source }),
        };
        Ok(LocalStore { path, state: Mutex::new(state) })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LocalState> {
        // A panic while holding the lock cannot leave the state half-changed: every change is
        // computed on a copy and swapped in after the file is written.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn snapshot(&self) -> LocalState {
        self.lock().clone()
    }

    /// Applies `change` to a copy, writes it, then keeps it. Returns what `change` returned.
    pub fn update<R>(&self, change: impl FnOnce(&mut LocalState) -> Result<R, LocalError>) -> Result<R, LocalError> {
        let mut guard = self.lock();
        let mut next = guard.clone();
        let out = change(&mut next)?;
        if next != *guard {
            let bytes = serde_json::to_vec_pretty(&next)
                .map_err(|e| LocalError::Write { path: self.path.clone(), source: std::io::Error::other(e) })?;
            write_atomic(&self.path, &bytes, 0o600)
                .map_err(|source| LocalError::Write { path: self.path.clone(), source })?;
            *guard = next;
        }
        Ok(out)
    }
}

/// Writes `bytes` to `path` atomically with the given mode (temporary file, fsync, rename).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let result = (|| {
        let mut f = opts.open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_survive_reopen_and_failed_changes_change_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        store
            .update(|s| {
                s.communities.push("north-end".into());
                Ok(())
            })
            .unwrap();
        let err = store.update(|s| {
            s.communities.push("south".into());
            Err::<(), _>(LocalError::TooManyAlerts(1))
        });
        assert!(err.is_err());
        assert_eq!(store.snapshot().communities, vec!["north-end".to_string()]);
        let again = LocalStore::open(dir.path()).unwrap();
        assert_eq!(again.snapshot().communities, vec!["north-end".to_string()]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(LOCAL_FILE)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_damaged_file_is_a_clear_error_not_a_reset() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(LOCAL_FILE), b"{not json").unwrap();
        let err = LocalStore::open(dir.path()).unwrap_err();
        assert!(matches!(err, LocalError::Invalid { .. }), "{err}");
        // The file is left for the person to look at.
        assert_eq!(std::fs::read(dir.path().join(LOCAL_FILE)).unwrap(), b"{not json");
    }
}

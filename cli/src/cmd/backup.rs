//! Backups: `troc export [FILE]` and `troc import FILE`.
//!
//! A backup is the JSON of `GET /v1/export` (`"format": "troc-backup/1"`): one's own signed records
//! and, unless `--no-identity`, the secret key. It is written with mode 0600 from the start, and
//! never over an existing file unless `--force` (which replaces it atomically, still 0600).
//!
//! Import restores the identity into a home that has none (`keystore::restore`, the keystore's
//! guarantees), refuses a backup of another identity than the home's (exit 5), and sends the
//! records to the running node (`POST /v1/import`) in chunks of at most 1,000 records and
//! [`MAX_CHUNK_BYTES`].

use std::fs;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use reqwest::Method;
use serde_json::{Value, json};
use troc_node::keystore::{self, KeystoreError};
use zeroize::Zeroizing;

use super::Ctx;
use crate::args::{ExportArgs, ImportArgs};
use crate::client::Api;
use crate::exit::CliError;

/// The backup format this CLI reads.
pub const FORMAT: &str = "troc-backup/1";
/// Records per import request (the API's limit).
pub const MAX_CHUNK_RECORDS: usize = 1000;
/// Bytes of records per import request (the API accepts 8 MiB; this leaves room for the framing).
pub const MAX_CHUNK_BYTES: usize = 7 * 1024 * 1024;
/// The largest backup file read.
const MAX_BACKUP_BYTES: u64 = 1024 * 1024 * 1024;
const BACKUP_TIMEOUT: Duration = Duration::from_secs(300);

/// Writes `bytes` to `path` with mode 0600: a new file (`O_CREAT | O_EXCL`), or with `force` a
/// temporary file renamed over the old one.
pub fn write_private(path: &Path, bytes: &[u8], force: bool) -> anyhow::Result<()> {
    let open = |p: &Path| {
        let mut opts = fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        opts.open(p)
    };
    let write = |file: &mut fs::File, p: &Path| -> anyhow::Result<()> {
        file.write_all(bytes).with_context(|| format!("could not write {}", p.display()))?;
        file.sync_all().with_context(|| format!("could not write {}", p.display()))
    };
    if !force {
        let mut file = open(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                anyhow::Error::new(CliError::FileExists { path: path.to_owned() })
            } else {
                anyhow::Error::new(e).context(format!("could not create {}", path.display()))
            }
        })?;
        return write(&mut file, path);
    }
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "backup".into());
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let mut file = open(&tmp).with_context(|| format!("could not create {}", tmp.display()))?;
    let result = write(&mut file, &tmp)
        .and_then(|()| fs::rename(&tmp, path).with_context(|| format!("could not replace {}", path.display())));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

pub async fn export(ctx: &Ctx, args: &ExportArgs) -> anyhow::Result<()> {
    let with_identity = !args.no_identity;
    if args.file.is_none() && with_identity && std::io::stdout().is_terminal() {
        return Err(CliError::Usage(
            "refusing to print a secret key to the terminal: give a FILE, redirect stdout, or use --no-identity".into(),
        )
        .into());
    }
    if let Some(path) = args.file.as_ref().filter(|p| !args.force && p.exists()) {
        return Err(CliError::FileExists { path: path.clone() }.into());
    }
    let api = Api::open(&ctx.home)?;
    let query = vec![("identity", with_identity.to_string())];
    let backup = api
        .call(Method::GET, &["v1", "export"], &query, None, BACKUP_TIMEOUT)
        .await
        .context("could not export")?
        .unwrap_or(Value::Null);
    let mut bytes = Zeroizing::new(serde_json::to_vec_pretty(&backup).context("could not encode the backup")?);
    bytes.push(b'\n');
    let records = backup.get("records").and_then(Value::as_array).map_or(0, Vec::len);
    let Some(path) = &args.file else {
        let mut out = std::io::stdout().lock();
        out.write_all(&bytes).and_then(|()| out.flush()).context("could not write the backup to stdout")?;
        return Ok(());
    };
    write_private(path, &bytes, args.force)?;
    if ctx.json {
        ctx.print_json(&json!({
            "file": path,
            "peer_id": backup.get("peer_id"),
            "records": records,
            "identity": with_identity,
        }));
    } else if with_identity {
        outln!(
            "Wrote {records} records and your identity (secret key) to {}: keep it as safe as the key itself.",
            path.display()
        );
    } else {
        outln!("Wrote {records} records to {} (without the identity).", path.display());
    }
    Ok(())
}

/// A backup file, read and checked.
struct Backup {
    peer_id: Option<String>,
    secret: Option<Zeroizing<[u8; 32]>>,
    records: Vec<String>,
}

fn read_backup(path: &Path) -> anyhow::Result<Backup> {
    let bad = |reason: &str| CliError::BadBackup { path: path.to_owned(), reason: reason.to_owned() };
    let meta = fs::metadata(path).with_context(|| format!("could not read {}", path.display()))?;
    if meta.len() > MAX_BACKUP_BYTES {
        return Err(bad("larger than 1 GiB").into());
    }
    let text = Zeroizing::new(fs::read(path).with_context(|| format!("could not read {}", path.display()))?);
    let mut v: Value = serde_json::from_slice(&text).map_err(|e| bad(&format!("not JSON ({e})")))?;
    if v.get("format").and_then(Value::as_str) != Some(FORMAT) {
        return Err(bad(&format!("no \"format\": \"{FORMAT}\"")).into());
    }
    let peer_id = match v.get("peer_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(p)) => Some(p.clone()),
        Some(_) => return Err(bad("peer_id is not a string").into()),
    };
    let secret = match v.get_mut("secret_key").map(Value::take) {
        None | Some(Value::Null) => None,
        Some(Value::String(hex_key)) => {
            let hex_key = Zeroizing::new(hex_key);
            let mut seed = Zeroizing::new([0u8; 32]);
            hex::decode_to_slice(hex_key.as_bytes(), &mut seed[..])
                .map_err(|_| bad("secret_key is not 64 hex characters"))?;
            Some(seed)
        }
        Some(_) => return Err(bad("secret_key is not a string").into()),
    };
    let records = match v.get_mut("records").map(Value::take) {
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|r| match r {
                Value::String(s) => Ok(s),
                _ => Err(bad("a record is not a hex string")),
            })
            .collect::<Result<Vec<_>, _>>()?,
        None | Some(Value::Null) => Vec::new(),
        Some(_) => return Err(bad("records is not a list").into()),
    };
    Ok(Backup { peer_id, secret, records })
}

/// What happened to the identity during an import.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IdentityOutcome {
    /// The home had none; the backup's was restored.
    Restored,
    /// The home has the backup's identity already.
    Same,
    /// The backup holds no secret key.
    Absent,
}

impl IdentityOutcome {
    fn as_str(self) -> &'static str {
        match self {
            IdentityOutcome::Restored => "restored",
            IdentityOutcome::Same => "same",
            IdentityOutcome::Absent => "absent",
        }
    }
}

fn restore_identity(home: &Path, path: &Path, backup: &Backup) -> anyhow::Result<(IdentityOutcome, Option<String>)> {
    let Some(seed) = &backup.secret else {
        return Ok((IdentityOutcome::Absent, backup.peer_id.clone()));
    };
    let theirs = troc_protocol::Identity::from_seed(seed);
    let peer = theirs.peer_id().to_base58();
    if backup.peer_id.as_ref().is_some_and(|p| *p != peer) {
        return Err(CliError::BadBackup {
            path: path.to_owned(),
            reason: "its secret key does not belong to its peer_id".into(),
        }
        .into());
    }
    match keystore::load(home) {
        Ok(ours) if ours.public() == theirs.public() => Ok((IdentityOutcome::Same, Some(peer))),
        Ok(ours) => {
            Err(CliError::IdentityDiffers { home: home.to_owned(), backup: peer, ours: ours.peer_id().to_base58() }
                .into())
        }
        Err(KeystoreError::Missing { .. }) => {
            keystore::restore(home, seed).context("could not restore the identity")?;
            Ok((IdentityOutcome::Restored, Some(peer)))
        }
        Err(e) => Err(anyhow::Error::new(e).context("could not load this home's identity")),
    }
}

/// Splits records into chunks the API accepts: at most [`MAX_CHUNK_RECORDS`] records and about
/// [`MAX_CHUNK_BYTES`] bytes each.
pub fn chunks(records: &[String]) -> Vec<&[String]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, r) in records.iter().enumerate() {
        let size = r.len() + 4;
        if i > start && (i - start == MAX_CHUNK_RECORDS || bytes + size > MAX_CHUNK_BYTES) {
            out.push(&records[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += size;
    }
    if start < records.len() {
        out.push(&records[start..]);
    }
    out
}

pub async fn import(ctx: &Ctx, args: &ImportArgs) -> anyhow::Result<()> {
    let path: PathBuf = args.file.clone();
    let backup = read_backup(&path)?;
    let (identity, peer) = restore_identity(&ctx.home, &path, &backup)?;
    if identity == IdentityOutcome::Restored && !ctx.json {
        outln!("Restored identity {} into {}", peer.as_deref().unwrap_or("?"), keystore::key_path(&ctx.home).display());
    }
    let mut stored = 0u64;
    let mut duplicate = 0u64;
    let mut rejected: Vec<Value> = Vec::new();
    if !backup.records.is_empty() {
        let api = match Api::open(&ctx.home) {
            Ok(api) => api,
            Err(e) => {
                let n = backup.records.len();
                return Err(e.context(if identity == IdentityOutcome::Restored {
                    format!(
                        "the identity was restored, but the {n} records need the running node: start it with \
                         `troc up`, then run `troc import {}` again",
                        path.display()
                    )
                } else {
                    format!("could not import the {n} records")
                }));
            }
        };
        let mut offset = 0usize;
        for chunk in chunks(&backup.records) {
            let body = json!({ "records": chunk });
            let v = api
                .call(Method::POST, &["v1", "import"], &Vec::new(), Some(&body), BACKUP_TIMEOUT)
                .await
                .with_context(|| {
                    format!(
                        "could not import records {} to {} (the ones before were imported)",
                        offset + 1,
                        offset + chunk.len()
                    )
                })?
                .unwrap_or(Value::Null);
            stored += v.get("stored").and_then(Value::as_u64).unwrap_or(0);
            duplicate += v.get("duplicate").and_then(Value::as_u64).unwrap_or(0);
            for r in v.get("rejected").and_then(Value::as_array).into_iter().flatten() {
                let mut r = r.clone();
                if let Some(i) = r.get("index").and_then(Value::as_u64) {
                    r["index"] = json!(i + offset as u64);
                }
                rejected.push(r);
            }
            offset += chunk.len();
        }
    }
    if ctx.json {
        ctx.print_json(&json!({
            "identity": identity.as_str(),
            "peer_id": peer,
            "records": backup.records.len(),
            "stored": stored,
            "duplicate": duplicate,
            "rejected": rejected,
        }));
    } else {
        if identity == IdentityOutcome::Same {
            outln!("The identity in the backup is this home's ({}).", peer.as_deref().unwrap_or("?"));
        }
        outln!(
            "Imported {} records: {stored} stored, {duplicate} already known, {} refused",
            backup.records.len(),
            rejected.len()
        );
        for r in &rejected {
            outln!(
                "  record {}: {}",
                r.get("index").and_then(Value::as_u64).unwrap_or(0),
                crate::output::clean(r.get("code").and_then(Value::as_str).unwrap_or("refused"))
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_respect_both_limits() {
        let small: Vec<String> = (0..2500).map(|_| "ab".repeat(100)).collect();
        let c = chunks(&small);
        assert_eq!(c.iter().map(|c| c.len()).collect::<Vec<_>>(), vec![1000, 1000, 500]);
        let big: Vec<String> = (0..1000).map(|_| "ab".repeat(16 * 1024)).collect();
        let c = chunks(&big);
        assert!(c.len() > 1 && c.iter().all(|c| c.iter().map(|r| r.len()).sum::<usize>() <= MAX_CHUNK_BYTES));
        assert_eq!(c.iter().map(|c| c.len()).sum::<usize>(), 1000);
        assert!(chunks(&[]).is_empty());
    }

    #[test]
    fn private_files_are_0600_and_not_replaced_without_force() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.json");
        write_private(&path, b"one", false).unwrap();
        let err = write_private(&path, b"two", false).unwrap_err();
        assert!(matches!(err.downcast_ref::<CliError>(), Some(CliError::FileExists { .. })));
        write_private(&path, b"three", true).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"three");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file left");
    }

    #[test]
    fn backups_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.json");
        let id = troc_protocol::Identity::from_seed(&[7u8; 32]);
        let good = json!({"format": FORMAT, "peer_id": id.peer_id().to_base58(), "secret_key": hex::encode([7u8; 32]), "records": ["00"]});
        fs::write(&path, good.to_string()).unwrap();
        let b = read_backup(&path).unwrap();
        assert_eq!(b.records, vec!["00".to_owned()]);
        let home = dir.path().join("home");
        assert_eq!(restore_identity(&home, &path, &b).unwrap().0, IdentityOutcome::Restored);
        assert_eq!(restore_identity(&home, &path, &b).unwrap().0, IdentityOutcome::Same);
        let other = json!({"format": FORMAT, "secret_key": hex::encode([8u8; 32])});
        fs::write(&path, other.to_string()).unwrap();
        let err = restore_identity(&home, &path, &read_backup(&path).unwrap()).unwrap_err();
        assert_eq!(crate::exit::classify(&err).exit, crate::exit::CONFLICT);
        let lying =
            json!({"format": FORMAT, "peer_id": id.peer_id().to_base58(), "secret_key": hex::encode([8u8; 32])});
        fs::write(&path, lying.to_string()).unwrap();
        assert!(restore_identity(&dir.path().join("h2"), &path, &read_backup(&path).unwrap()).is_err());
        assert!(!keystore::key_path(&dir.path().join("h2")).exists());
        for bad in [
            json!({"format": "x"}),
            json!({"format": FORMAT, "records": "no"}),
            json!({"format": FORMAT, "secret_key": "zz"}),
        ] {
            fs::write(&path, bad.to_string()).unwrap();
            assert!(read_backup(&path).is_err(), "{bad}");
        }
    }
}

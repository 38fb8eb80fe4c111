//! Exit codes and error classification: every error the CLI can end with maps to one documented
//! exit code and one stable error code (`docs/cli.md`). Errors from the local API keep the API's own
//! `code` (`docs/api.md`), so a script sees the same code with `curl` and with `troc --json`.

use std::path::PathBuf;

use serde_json::{Value, json};
use troc_node::keystore::KeystoreError;

/// Success.
pub const OK: u8 = 0;
/// Any error not listed below.
pub const ERROR: u8 = 1;
/// Bad arguments (also what clap uses), or a value the node refused as a bad request.
pub const USAGE: u8 = 2;
/// The node is not running (commands that need it).
pub const NOT_RUNNING: u8 = 3;
/// A thing asked for does not exist (no identity yet, unknown listing or alert ...).
pub const NOT_FOUND: u8 = 4;
/// The command would overwrite something that must not be, or does not fit the state (an identity
/// that exists or differs, an ambiguous prefix, someone else's listing, an existing file).
pub const CONFLICT: u8 = 5;

/// Errors of the CLI's own making (the rest are library errors with context).
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// No `api.json` in the home, or nothing answers at its address.
    #[error("the node is not running (home {home}): start it with `troc up`")]
    NotRunning {
        home: PathBuf,
        #[source]
        cause: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// The API answered with an error.
    #[error("{message} ({code})")]
    Api { status: u16, code: String, message: String, detail: Option<Value> },
    /// Arguments that parse but do not fit together (or a setting of troc.toml that clap never saw).
    #[error("{0}")]
    Usage(String),
    /// A file that must not be overwritten without `--force`.
    #[error("{path} already exists; use --force to replace it")]
    FileExists { path: PathBuf },
    /// A backup holds another person's identity than the home.
    #[error(
        "the backup's identity ({backup}) differs from the one in {home} ({ours}); troc never overwrites a key: \
         import it into another home"
    )]
    IdentityDiffers { home: PathBuf, backup: String, ours: String },
    /// troc.toml exists and `troc init` was asked to set fields in it.
    #[error("{path} already exists; edit it to change the name, community or location")]
    ConfigExists { path: PathBuf },
    /// troc.toml does not parse or holds a bad value.
    #[error("{path} is not a valid troc.toml: {reason}")]
    BadConfig { path: PathBuf, reason: String },
    /// A backup file that is not a troc backup.
    #[error("{path} is not a troc backup: {reason}")]
    BadBackup { path: PathBuf, reason: String },
}

/// How an error is reported: its exit code, its stable code, and for API errors the HTTP status and
/// the API's `detail`.
#[derive(Debug)]
pub struct Classified {
    pub exit: u8,
    pub code: String,
    pub status: Option<u16>,
    pub detail: Option<Value>,
}

/// The exit code for an error code of the API (`docs/api.md`).
pub fn exit_for_api_code(status: u16, code: &str) -> u8 {
    match code {
        "bad_request" => USAGE,
        "not_found" => NOT_FOUND,
        "ambiguous" | "conflict" | "not_yours" | "not_revocable" | "already_built_on" => CONFLICT,
        "unavailable" => NOT_RUNNING,
        "timeout" => ERROR,
        _ => match status {
            404 => NOT_FOUND,
            409 => CONFLICT,
            503 => NOT_RUNNING,
            _ => ERROR,
        },
    }
}

/// Maps an error to its exit code and stable error code: the first cause in the chain that is known.
pub fn classify(err: &anyhow::Error) -> Classified {
    let simple = |exit: u8, code: &str| Classified { exit, code: code.to_owned(), status: None, detail: None };
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<CliError>() {
            return match e {
                CliError::NotRunning { .. } => simple(NOT_RUNNING, "not_running"),
                CliError::Api { status, code, detail, .. } => Classified {
                    exit: exit_for_api_code(*status, code),
                    code: code.clone(),
                    status: Some(*status),
                    detail: detail.clone(),
                },
                CliError::Usage(_) => simple(USAGE, "usage"),
                CliError::FileExists { .. } => simple(CONFLICT, "file_exists"),
                CliError::IdentityDiffers { .. } => simple(CONFLICT, "identity_differs"),
                CliError::ConfigExists { .. } => simple(CONFLICT, "config_exists"),
                CliError::BadConfig { .. } => simple(ERROR, "bad_config"),
                CliError::BadBackup { .. } => simple(ERROR, "bad_backup"),
            };
        }
        if let Some(k) = cause.downcast_ref::<KeystoreError>() {
            return match k {
                KeystoreError::Missing { .. } => simple(NOT_FOUND, "no_identity"),
                KeystoreError::AlreadyExists { .. } => simple(CONFLICT, "identity_exists"),
                KeystoreError::TooOpen { .. } => simple(ERROR, "key_file_too_open"),
                KeystoreError::Corrupt { .. } => simple(ERROR, "key_file_corrupt"),
                KeystoreError::Io { .. } | KeystoreError::Entropy(_) => simple(ERROR, "io"),
            };
        }
    }
    for cause in err.chain() {
        if cause.downcast_ref::<std::io::Error>().is_some() {
            return simple(ERROR, "io");
        }
    }
    simple(ERROR, "error")
}

/// Prints an error to stderr (a cause chain, or one JSON document with `--json`) and returns its exit
/// code.
pub fn report(err: &anyhow::Error, json: bool) -> u8 {
    let c = classify(err);
    if json {
        let chain: Vec<String> = err.chain().map(|c| c.to_string()).collect();
        let mut obj = json!({ "code": c.code, "message": chain.join(": "), "chain": chain });
        if let Some(status) = c.status {
            obj["status"] = json!(status);
        }
        if let Some(detail) = &c.detail {
            obj["detail"] = detail.clone();
        }
        eprintln!("{}", json!({ "error": obj }));
    } else {
        eprintln!("error: {err}");
        for cause in err.chain().skip(1) {
            eprintln!("  caused by: {cause}");
        }
        if let Some(detail) = c.detail.as_ref().filter(|d| !d.is_null()) {
            match detail {
                Value::String(s) => eprintln!("  detail: {s}"),
                other => eprintln!("  detail: {other}"),
            }
        }
    }
    c.exit
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn api_codes_map_to_exit_codes() {
        assert_eq!(exit_for_api_code(404, "not_found"), NOT_FOUND);
        assert_eq!(exit_for_api_code(409, "ambiguous"), CONFLICT);
        assert_eq!(exit_for_api_code(409, "conflict"), CONFLICT);
        assert_eq!(exit_for_api_code(403, "not_yours"), CONFLICT);
        assert_eq!(exit_for_api_code(409, "not_revocable"), CONFLICT);
        assert_eq!(exit_for_api_code(409, "already_built_on"), CONFLICT);
        assert_eq!(exit_for_api_code(400, "bad_request"), USAGE);
        assert_eq!(exit_for_api_code(503, "unavailable"), NOT_RUNNING);
        assert_eq!(exit_for_api_code(503, "timeout"), ERROR);
        assert_eq!(exit_for_api_code(422, "invalid_record"), ERROR);
        assert_eq!(exit_for_api_code(502, "dial_failed"), ERROR);
        assert_eq!(exit_for_api_code(404, "something_new"), NOT_FOUND);
    }

    #[test]
    fn classification_looks_through_context() {
        let err = Err::<(), _>(CliError::Api {
            status: 404,
            code: "not_found".into(),
            message: "no such listing".into(),
            detail: None,
        })
        .context("could not show the listing")
        .unwrap_err();
        let c = classify(&err);
        assert_eq!((c.exit, c.code.as_str(), c.status), (NOT_FOUND, "not_found", Some(404)));
        let err = Err::<(), _>(CliError::NotRunning { home: "/h".into(), cause: None }).context("x").unwrap_err();
        assert_eq!(classify(&err).exit, NOT_RUNNING);
        assert_eq!(classify(&anyhow::anyhow!("plain")).code, "error");
    }
}

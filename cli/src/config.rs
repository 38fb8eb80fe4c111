//! The node home and its `troc.toml`: the person's name, community and coarse location, and the
//! settings of `troc up` (flags override them). `troc init` writes the file; people may edit it.
//!
//! Unknown keys are refused, so a typo never passes silently. A location more precise than
//! [`STORED_GEOHASH_LEN`] characters is coarsened when read.

use std::fs;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::args::{self, STORED_GEOHASH_LEN};
use crate::exit::CliError;

/// The config file's name inside a node home.
pub const CONFIG_FILE: &str = "troc.toml";

/// The default API address.
pub const DEFAULT_API: &str = "127.0.0.1:7711";

/// The default home: the platform data directory (`$XDG_DATA_HOME/troc`, else
/// `~/.local/share/troc` on Linux; `~/Library/Application Support/troc` on macOS;
/// `%APPDATA%\troc` on Windows).
pub fn default_home() -> anyhow::Result<PathBuf> {
    dirs::data_dir()
        .map(|d| d.join("troc"))
        .context("no platform data directory (HOME is not set?): give --home or TROC_HOME")
}

/// The home from `--home` / `TROC_HOME`, else the default.
pub fn resolve_home(home: Option<&Path>) -> anyhow::Result<PathBuf> {
    match home {
        Some(h) => Ok(h.to_path_buf()),
        None => default_home(),
    }
}

/// The contents of `troc.toml`. Every field is optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The person's display name.
    pub name: Option<String>,
    /// The person's community: followed, and the default community of their listings.
    pub community: Option<String>,
    /// A coarse location: a geohash of at most 5 characters.
    pub location: Option<String>,
    /// More communities to follow.
    #[serde(default)]
    pub communities: Vec<String>,
    /// Listen addresses (multiaddrs).
    #[serde(default)]
    pub listen: Vec<String>,
    /// Peers to dial at start and keep connected.
    #[serde(default)]
    pub bootstrap: Vec<String>,
    /// The API address, e.g. "127.0.0.1:7711".
    pub api: Option<String>,
    /// Allow a non-loopback API address.
    pub api_public: Option<bool>,
    /// Look for neighbours on the local network.
    pub mdns: Option<bool>,
    /// Serve as a relay for peers behind NAT.
    pub relay_server: Option<bool>,
}

/// `troc.toml`, checked: the values `troc up` and the profile use.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub name: Option<String>,
    pub community: Option<String>,
    pub location: Option<String>,
    pub communities: Vec<String>,
    pub listen: Vec<libp2p::Multiaddr>,
    pub bootstrap: Vec<libp2p::Multiaddr>,
    pub api: Option<SocketAddr>,
    pub api_public: bool,
    pub mdns: Option<bool>,
    pub relay_server: bool,
}

pub fn config_path(home: &Path) -> PathBuf {
    home.join(CONFIG_FILE)
}

/// Reads and checks `<home>/troc.toml`; a missing file is the default (empty) settings.
pub fn load(home: &Path) -> anyhow::Result<Settings> {
    let path = config_path(home);
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Settings::default()),
        Err(e) => return Err(e).with_context(|| format!("could not read {}", path.display())),
    };
    let file: FileConfig = toml::from_str(&text)
        .map_err(|e| CliError::BadConfig { path: path.clone(), reason: e.message().to_owned() })?;
    check(&path, file)
}

fn check(path: &Path, file: FileConfig) -> anyhow::Result<Settings> {
    let bad = |reason: String| CliError::BadConfig { path: path.to_owned(), reason };
    let name = file.name.map(|n| args::parse_name(&n).map_err(|e| bad(format!("name: {e}")))).transpose()?;
    let community =
        file.community.map(|c| args::parse_community(&c).map_err(|e| bad(format!("community: {e}")))).transpose()?;
    let location =
        file.location.map(|l| args::parse_location(&l).map_err(|e| bad(format!("location: {e}")))).transpose()?;
    let communities = file
        .communities
        .iter()
        .map(|c| args::parse_community(c).map_err(|e| bad(format!("communities: {c:?}: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let multiaddrs = |field: &str, list: &[String]| {
        list.iter()
            .map(|a| a.parse::<libp2p::Multiaddr>().map_err(|e| bad(format!("{field}: {a:?}: {e}"))))
            .collect::<Result<Vec<_>, _>>()
    };
    let listen = multiaddrs("listen", &file.listen)?;
    let bootstrap = multiaddrs("bootstrap", &file.bootstrap)?;
    let api = file
        .api
        .map(|a| a.parse::<SocketAddr>().map_err(|e| bad(format!("api: {a:?}: {e} (expected e.g. {DEFAULT_API})"))))
        .transpose()?;
    Ok(Settings {
        name,
        community,
        location,
        communities,
        listen,
        bootstrap,
        api,
        api_public: file.api_public.unwrap_or(false),
        mdns: file.mdns,
        relay_server: file.relay_server.unwrap_or(false),
    })
}

/// A TOML string literal.
fn quoted(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

/// The text of a new `troc.toml`: the given fields, and every other setting as a comment.
pub fn render(name: Option<&str>, community: Option<&str>, location: Option<&str>) -> String {
    let field = |key: &str, value: Option<&str>, example: &str| match value {
        Some(v) => format!("{key} = {}\n", quoted(v)),
        None => format!("# {key} = {}\n", quoted(example)),
    };
    let mut out = String::from(
        "# troc node settings (docs/cli.md). Flags of `troc up` override them.\n\n\
         # Your display name, shown with your listings.\n",
    );
    out.push_str(&field("name", name, "Alice"));
    out.push_str("# Your community: followed by `troc up`, and the default community of your listings.\n");
    out.push_str(&field("community", community, "north-end"));
    out.push_str(&format!(
        "# Your coarse location, a geohash of at most {STORED_GEOHASH_LEN} characters (about 5 km).\n"
    ));
    out.push_str(&field("location", location, "gcpvj"));
    out.push_str(&format!(
        "\n# More communities to follow.\n# communities = [\"riverside\"]\n\
         # Listen addresses (default: TCP and QUIC on port 7710, every interface).\n\
         # listen = [\"/ip4/0.0.0.0/tcp/7710\", \"/ip4/0.0.0.0/udp/7710/quic-v1\"]\n\
         # Peers to dial at start and keep connected.\n\
         # bootstrap = [\"/ip4/203.0.113.5/tcp/7710/p2p/12D3KooW...\"]\n\
         # The local API (loopback only unless api_public = true).\n\
         # api = \"{DEFAULT_API}\"\n# api_public = false\n\
         # Look for neighbours on the local network.\n# mdns = true\n\
         # Serve as a relay for peers behind NAT (a node with a public address).\n# relay_server = false\n"
    ));
    out
}

/// Writes a new `troc.toml` (mode 0600, never replacing one). Fails with `ConfigExists` if there is
/// one.
pub fn create(home: &Path, text: &str) -> anyhow::Result<PathBuf> {
    let path = config_path(home);
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut file = opts.open(&path).map_err(|e| {
        if e.kind() == io::ErrorKind::AlreadyExists {
            anyhow::Error::new(CliError::ConfigExists { path: path.clone() })
        } else {
            anyhow::Error::new(e).context(format!("could not create {}", path.display()))
        }
    })?;
    file.write_all(text.as_bytes()).with_context(|| format!("could not write {}", path.display()))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rendered_file_reads_back() {
        let text = render(Some("Zoë \"Z\""), Some("north-end"), Some("u09tv"));
        let file: FileConfig = toml::from_str(&text).unwrap();
        assert_eq!(file.name.as_deref(), Some("Zoë \"Z\""));
        let s = check(Path::new("troc.toml"), file).unwrap();
        assert_eq!(s.community.as_deref(), Some("north-end"));
        assert_eq!(s.location.as_deref(), Some("u09tv"));
        assert!(s.api.is_none() && s.listen.is_empty() && s.mdns.is_none());
        let empty: FileConfig = toml::from_str(&render(None, None, None)).unwrap();
        assert_eq!(empty, FileConfig::default());
    }

    #[test]
    fn bad_files_are_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        for (text, needle) in [
            ("nmae = \"x\"\n", "unknown field"),
            ("community = \"Not A Slug\"\n", "community"),
            ("listen = [\"nonsense\"]\n", "listen"),
            ("api = \"localhost\"\n", "api"),
            ("location = \"u09a\"\n", "location"),
        ] {
            std::fs::write(config_path(dir.path()), text).unwrap();
            let err = load(dir.path()).unwrap_err();
            assert!(format!("{err:#}").contains(needle), "{text}: {err:#}");
        }
        std::fs::write(config_path(dir.path()), "location = \"u09tvwqr\"\nmdns = false\n").unwrap();
        let s = load(dir.path()).unwrap();
        assert_eq!((s.location.as_deref(), s.mdns), (Some("u09tv"), Some(false)));
    }

    #[test]
    fn create_never_replaces() {
        let dir = tempfile::tempdir().unwrap();
        create(dir.path(), "name = \"A\"\n").unwrap();
        let err = create(dir.path(), "name = \"B\"\n").unwrap_err();
        assert!(matches!(err.downcast_ref::<CliError>(), Some(CliError::ConfigExists { .. })));
        assert_eq!(load(dir.path()).unwrap().name.as_deref(), Some("A"));
    }
}

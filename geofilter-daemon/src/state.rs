//! The desired state on disk: written atomically after every change, read at start-up so a
//! reboot restores the filter before the network comes up. `--config FILE` (TOML, same fields)
//! gives an initial state instead.

use std::{
    fs::{self, File},
    io::Write as _,
    path::{Path, PathBuf},
};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use crate::{
    datapath::{XdpAttach, XdpModeChoice, dispatcher::DEFAULT_PRIORITY},
    geoip::Format,
    policy::DesiredPolicy,
};

pub const STATE_VERSION: u32 = 1;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedState {
    #[serde(default = "version")]
    pub version: u32,
    #[serde(default)]
    pub interfaces: Vec<String>,
    #[serde(default)]
    pub xdp_mode: XdpModeChoice,
    /// How to share the interfaces with other XDP programs (`--xdp-attach`): kept, so a restart
    /// under systemd joins the dispatcher the way the first start did.
    #[serde(default)]
    pub xdp_attach: XdpAttach,
    /// The run priority in a libxdp dispatcher (`--xdp-priority`).
    #[serde(default = "default_priority")]
    pub xdp_priority: u32,
    /// Database files, in `--db` order.
    #[serde(default)]
    pub dbs: Vec<PathBuf>,
    /// Written as `--db-format` names it, and read the same way (any case; never `embedded`).
    #[serde(default, deserialize_with = "format_name")]
    pub db_format: Option<Format>,
    #[serde(default)]
    pub policy: DesiredPolicy,
    /// The XDP mode each interface actually got (an adopted link does not say).
    #[serde(default)]
    pub attached: std::collections::BTreeMap<String, XdpModeChoice>,
    /// ASN database files, in `--asn-db` order (none: the embedded one).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub asn_dbs: Vec<PathBuf>,
    /// The listed index of each ASN the policy names, as the kernel's tables and policy have
    /// it: a restart keeps them, so the policy in force stays right while tables are rebuilt.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub asn_listed: std::collections::BTreeMap<u32, u16>,
    /// The blocklists (their addresses are in copies under the lists folder beside this file).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lists: Vec<crate::lists::ListEntry>,
    /// The slot of each list: its bit in the tables and the policy.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub list_slots: std::collections::BTreeMap<String, u32>,
}

fn version() -> u32 {
    STATE_VERSION
}

fn default_priority() -> u32 {
    DEFAULT_PRIORITY
}

fn format_name<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Format>, D::Error> {
    Option::<String>::deserialize(d)?
        .map(|name| name.parse().map_err(serde::de::Error::custom))
        .transpose()
}

impl Default for SavedState {
    fn default() -> Self {
        Self {
            version: STATE_VERSION,
            interfaces: Vec::new(),
            xdp_mode: XdpModeChoice::default(),
            xdp_attach: XdpAttach::default(),
            xdp_priority: DEFAULT_PRIORITY,
            dbs: Vec::new(),
            db_format: None,
            policy: DesiredPolicy::default(),
            attached: Default::default(),
            asn_dbs: Vec::new(),
            asn_listed: Default::default(),
            lists: Vec::new(),
            list_slots: Default::default(),
        }
    }
}

impl SavedState {
    /// Checks the interfaces (see [`crate::iface`]) and forgets the attach modes of interfaces no
    /// longer configured: without it, `attached` kept every interface of every earlier daemon
    /// that shared the state file.
    pub fn settle_interfaces(&mut self) -> Result<(), crate::iface::IfaceError> {
        crate::iface::check_names(&self.interfaces)?;
        let interfaces = &self.interfaces;
        self.attached.retain(|iface, _| interfaces.contains(iface));
        Ok(())
    }
}

/// Reads the state file; `None` when there is none.
pub fn load(path: &Path) -> anyhow::Result<Option<SavedState>> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading state file {}", path.display())),
    };
    let state: SavedState = serde_json::from_str(&text)
        .with_context(|| format!("state file {} is corrupt", path.display()))?;
    anyhow::ensure!(
        state.version == STATE_VERSION,
        "state file {} has version {}, this geofilter reads version {STATE_VERSION}",
        path.display(),
        state.version
    );
    Ok(Some(state))
}

/// Reads a TOML configuration file.
pub fn load_config(path: &Path) -> anyhow::Result<SavedState> {
    let text =
        fs::read_to_string(path).with_context(|| format!("reading config {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("config {}", path.display()))
}

/// Writes the state file atomically (see [`write_atomic`]).
pub fn save(path: &Path, state: &SavedState) -> anyhow::Result<()> {
    let mut text = serde_json::to_string_pretty(state)?;
    text.push('\n');
    write_atomic(path, text.as_bytes())
}

/// Writes `bytes` to `path` atomically: a temporary file in the same folder, fsync, rename,
/// fsync of the folder. A crash leaves the old file or the new one, never a torn one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().context("the file has no folder")?;
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = path.with_extension("tmp");
    let mut file = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    file.write_all(bytes)
        .with_context(|| format!("writing {}", tmp.display()))?;
    file.sync_all()
        .with_context(|| format!("syncing {}", tmp.display()))?;
    drop(file);
    fs::rename(&tmp, path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    File::open(dir)?
        .sync_all()
        .with_context(|| format!("syncing {}", dir.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_atomically_and_reads_back_and_reads_toml() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        assert_eq!(load(&path).unwrap(), None);
        let mut state = SavedState {
            version: STATE_VERSION,
            interfaces: vec!["eth0".into()],
            ..Default::default()
        };
        state
            .policy
            .countries
            .insert(geofilter_common::country::country_id(*b"RU").unwrap());
        save(&path, &state).unwrap();
        assert_eq!(load(&path).unwrap(), Some(state.clone()));
        assert!(!path.with_extension("tmp").exists());

        fs::write(&path, "{not json").unwrap();
        assert!(load(&path).unwrap_err().to_string().contains("corrupt"));

        let toml_path = dir.path().join("geofilter.toml");
        fs::write(
            &toml_path,
            r#"
interfaces = ["eth0"]
dbs = ["/var/lib/geofilter/v4.csv"]
xdp_attach = "dispatcher"
xdp_priority = 7
[policy]
mode = "allow-only"
countries = ["de", "FR"]
unknown = "drop"
exceptions = { "203.0.113.0/24" = "pass" }
[policy.ports]
exempt = ["tcp:80"]
"#,
        )
        .unwrap();
        let config = load_config(&toml_path).unwrap();
        assert_eq!(
            (config.xdp_attach, config.xdp_priority),
            (XdpAttach::Dispatcher, 7)
        );
        assert_eq!(config.policy.countries.len(), 2);
        assert_eq!(config.policy.exceptions.len(), 1);
        assert_eq!(config.policy.ports.exempt.len(), 1);
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist/geofilter.toml");
        let example = load_config(&example).expect("dist/geofilter.toml parses");
        assert_eq!(example.interfaces, ["eth0"]);
        assert_eq!(
            (example.xdp_attach, example.xdp_priority),
            (XdpAttach::Auto, DEFAULT_PRIORITY)
        );
        fs::write(&toml_path, "[policy]\ncountries = [\"XX\"]\n").unwrap();
        assert!(format!("{:#}", load_config(&toml_path).unwrap_err()).contains("XX"));
    }

    #[test]
    fn the_database_format_is_stored_by_its_name() {
        let state = SavedState {
            db_format: Some(Format::MaxmindCsv),
            ..Default::default()
        };
        let text = serde_json::to_string(&state).unwrap();
        assert!(text.contains(r#""db_format":"maxmind-csv""#), "{text}");
        assert_eq!(serde_json::from_str::<SavedState>(&text).unwrap(), state);
        // Read as `--db-format` reads it: any case, and never the embedded database.
        let read = |name: &str| {
            serde_json::from_str::<SavedState>(&format!(r#"{{"db_format":"{name}"}}"#))
                .map(|s| s.db_format)
                .map_err(|e| e.to_string())
        };
        assert_eq!(read("MMDB"), Ok(Some(Format::Mmdb)));
        assert!(
            read("embedded")
                .unwrap_err()
                .contains("unknown database format")
        );
    }

    #[test]
    fn attach_modes_of_interfaces_no_longer_configured_are_forgotten() {
        let mut state = SavedState {
            interfaces: vec!["eth1".into()],
            ..Default::default()
        };
        state.attached.insert("eth0".into(), XdpModeChoice::Native);
        state.attached.insert("eth1".into(), XdpModeChoice::Skb);
        state.settle_interfaces().unwrap();
        assert_eq!(
            state.attached.into_iter().collect::<Vec<_>>(),
            [("eth1".to_owned(), XdpModeChoice::Skb)]
        );
        let mut bad = SavedState {
            interfaces: vec!["../x".into()],
            ..Default::default()
        };
        assert!(bad.settle_interfaces().is_err());
    }
}

//! The Kubernetes manifests of deploy/kubernetes/, checked as CI can without a cluster:
//!
//! - every manifest kustomization.yaml names validates, strictly (no unknown field), against
//!   the Kubernetes schemas of the oldest and the newest version we claim, with
//!   `kubernetes-validate` (PyPI; it bundles the schemas, so it runs offline once installed);
//! - kustomization.yaml names every manifest of the folder (one left out would never be applied);
//! - the DaemonSet and the ConfigMap agree (the mounted folder, the file the daemon follows, the
//!   image of this version), and the ConfigMap's policy.toml is a policy document the daemon
//!   accepts (`geofilter run --check --policy`);
//! - the DaemonSet adds the systemd unit's capabilities and no other, as the container tier
//!   (`container.rs`) runs the image.
//!
//! The validator is installed on first use into a virtual environment under target/ (python3 -m
//! venv + pip), as a fresh CI machine has none: a missing tool fails the test, never skips it.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
};

use geofilter_tests::{
    apt_install, daemon::binary, ensure_command, netns::checked, podman, scenario::TempDir,
};
use serde_json::Value;

/// The validator, pinned: its release decides which schemas are bundled.
const VALIDATOR: &str = "kubernetes-validate==1.37.0";
/// The Kubernetes versions the manifests are validated against: the oldest we support (1.30:
/// `securityContext.appArmorProfile` is a field from 1.30 on) and the newest the validator knows.
const KUBERNETES_VERSIONS: [&str; 2] = ["1.30.0", "1.37.0"];

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes")
}

/// The virtual environment holding the validator (and PyYAML, its dependency, which reads the
/// manifests here), created once per run of this binary.
fn venv() -> &'static Path {
    static VENV: OnceLock<PathBuf> = OnceLock::new();
    VENV.get_or_init(|| {
        let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/kubernetes-validate");
        let validator = venv.join("bin/kubernetes-validate");
        let wanted = VALIDATOR.rsplit("==").next().expect("a pinned version");
        let installed = Command::new(&validator)
            .arg("--version")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(wanted));
        if installed {
            return venv;
        }
        ensure_command("python3", "python3");
        let create = || {
            Command::new("python3")
                .args(["-m", "venv", "--clear"])
                .arg(&venv)
                .status()
                .is_ok_and(|s| s.success())
        };
        // Debian's python3 has no venv module without python3-venv.
        if !create() {
            apt_install("python3-venv");
            assert!(create(), "python3 -m venv {} failed", venv.display());
        }
        checked(Command::new(venv.join("bin/pip")).args([
            "install",
            "--quiet",
            "--disable-pip-version-check",
            VALIDATOR,
        ]));
        venv
    })
}

/// Every YAML document of `file`, as JSON values (read by the venv's PyYAML).
fn documents(file: &Path) -> Vec<Value> {
    let out = checked(
        Command::new(venv().join("bin/python"))
            .args([
                "-c",
                "import json, sys, yaml; print(json.dumps(list(yaml.safe_load_all(open(sys.argv[1])))))",
            ])
            .arg(file),
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{}: not YAML as JSON ({e})", file.display()))
}

/// The one document of a manifest file.
fn document(name: &str) -> Value {
    let mut docs = documents(&deploy_dir().join(name));
    assert_eq!(docs.len(), 1, "{name}: one document expected");
    docs.remove(0)
}

/// The files kustomization.yaml lists under `resources`.
fn resources() -> Vec<String> {
    let kustomization = document("kustomization.yaml");
    kustomization["resources"]
        .as_array()
        .expect("kustomization.yaml has a resources list")
        .iter()
        .map(|r| r.as_str().expect("a resource is a file name").to_owned())
        .collect()
}

/// The manifest of `kind` among the resources.
fn manifest(kind: &str) -> Value {
    resources()
        .iter()
        .map(|r| document(r))
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} among the resources of kustomization.yaml"))
}

#[test]
fn every_manifest_validates_against_the_kubernetes_schemas() {
    let resources = resources();
    assert!(
        !resources.is_empty(),
        "kustomization.yaml lists no resource"
    );
    for version in KUBERNETES_VERSIONS {
        let out = Command::new(venv().join("bin/kubernetes-validate"))
            .args(["--strict", "--kubernetes-version", version])
            .args(&resources)
            .current_dir(deploy_dir())
            .output()
            .expect("running kubernetes-validate");
        let report = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "the manifests are not valid Kubernetes {version} resources:\n{report}"
        );
        // A file the validator has no schema for would pass with a warning only.
        assert!(
            !report.contains("WARN"),
            "kubernetes-validate warned against {version}:\n{report}"
        );
        for resource in &resources {
            assert!(
                report.contains(&format!("{resource} passed")),
                "{resource} was not validated against {version}:\n{report}"
            );
        }
    }
}

#[test]
fn kustomization_lists_every_manifest() {
    let listed: BTreeSet<String> = resources().into_iter().collect();
    let present: BTreeSet<String> = std::fs::read_dir(deploy_dir())
        .expect("reading deploy/kubernetes")
        .map(|e| {
            e.expect("a folder entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| name != "kustomization.yaml")
        .collect();
    assert_eq!(
        listed, present,
        "kustomization.yaml's resources and the files of deploy/kubernetes differ"
    );
}

#[test]
fn the_daemonset_follows_the_configmaps_policy_document() {
    let daemonset = manifest("DaemonSet");
    let configmap = manifest("ConfigMap");
    let pod = &daemonset["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(
        container["image"],
        format!("localhost/geofilter:{}", env!("CARGO_PKG_VERSION")),
        "the DaemonSet names another image than `cargo xtask image` builds"
    );
    // The folder the ConfigMap is mounted on, as a whole (a subPath mount is never updated).
    let volume = pod["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .find(|v| v["configMap"]["name"] == configmap["metadata"]["name"])
        .expect("a volume of the policy ConfigMap");
    let mount = container["volumeMounts"]
        .as_array()
        .expect("volumeMounts")
        .iter()
        .find(|m| m["name"] == volume["name"])
        .expect("the policy volume is mounted");
    assert!(
        mount.get("subPath").is_none(),
        "the policy is mounted with subPath"
    );
    let args: Vec<&str> = container["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("a string argument"))
        .collect();
    let policy = args
        .windows(2)
        .find(|w| w[0] == "--policy")
        .map(|w| w[1])
        .expect("the daemon runs with --policy");
    let key = Path::new(policy)
        .strip_prefix(mount["mountPath"].as_str().expect("mountPath"))
        .unwrap_or_else(|_| panic!("--policy {policy} is not in the ConfigMap's folder"));
    let key = key.to_str().expect("a UTF-8 key");
    let document = configmap["data"][key]
        .as_str()
        .unwrap_or_else(|| panic!("the ConfigMap has no {key}"));
    assert!(
        args.contains(&"--keep"),
        "without --keep an update detaches the filter"
    );

    // The document as the daemon reads it: `run --check` validates it (and its databases)
    // without touching the kernel.
    let dir = TempDir::new();
    let file = dir.0.join(key);
    std::fs::write(&file, document).expect("writing the policy document");
    let out = Command::new(binary())
        .args(["run", "--check", "--iface", "lo", "--policy"])
        .arg(&file)
        .output()
        .expect("running geofilter run --check");
    assert!(
        out.status.success(),
        "the ConfigMap's {key} is not a policy document geofilter accepts: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One set of capabilities in three places: the systemd unit grants them, the DaemonSet adds
/// them (dropping every other), and the container tier runs the image with them
/// ([`podman::DAEMONSET`]), so that tier tests what the DaemonSet asks for.
#[test]
fn the_daemonset_has_the_capabilities_of_the_systemd_unit() {
    let names = |list: &str, separator: char| -> BTreeSet<String> {
        list.split(separator)
            .map(|c| c.trim().trim_start_matches("CAP_").to_owned())
            .filter(|c| !c.is_empty())
            .collect()
    };
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist/geofilter.service"),
    )
    .expect("reading dist/geofilter.service");
    let granted = unit
        .lines()
        .find_map(|l| l.strip_prefix("AmbientCapabilities="))
        .map(|l| names(l, ' '))
        .expect("the unit has AmbientCapabilities=");

    let daemonset = manifest("DaemonSet");
    let capabilities =
        &daemonset["spec"]["template"]["spec"]["containers"][0]["securityContext"]["capabilities"];
    let list = |key: &str| -> BTreeSet<String> {
        capabilities[key]
            .as_array()
            .unwrap_or_else(|| panic!("securityContext.capabilities.{key}"))
            .iter()
            .map(|c| c.as_str().expect("a capability name").to_owned())
            .collect()
    };
    assert_eq!(list("add"), granted, "DaemonSet capabilities vs the unit's");
    assert_eq!(list("drop"), BTreeSet::from(["ALL".to_owned()]));

    let tested = podman::DAEMONSET
        .iter()
        .find_map(|flag| flag.strip_prefix("--cap-add="))
        .map(|l| names(l, ','))
        .expect("the container tier adds capabilities");
    assert_eq!(
        tested, granted,
        "the container tier's capabilities vs the unit's"
    );
}

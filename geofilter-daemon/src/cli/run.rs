//! `geofilter run`: load, fill, attach, serve until a signal or `unload`, then clean up.

use std::{fs, path::Path, sync::Arc};

use anyhow::{Context as _, bail};
use tokio::signal::unix::{SignalKind, signal};
use tracing::{info, warn};

use super::args::RunArgs;
use crate::{
    control::server::ControlSocket,
    daemon::{Daemon, State, parse_countries},
    datapath::{Datapath, bpffs},
    geoip,
    paths::{self, PinLayout},
    policy::DesiredPolicy,
};

pub fn run(args: RunArgs) -> anyhow::Result<()> {
    // Everything that can be checked before touching the kernel is checked first, so bad input
    // never leaves a half-configured filter behind.
    let countries = parse_countries(&args.block).map_err(anyhow::Error::msg)?;
    if args.dbs.is_empty() {
        bail!("no --db given: name at least one country database file");
    }
    let db = geoip::load(&args.dbs, args.db_format).context("loading the country database")?;
    info!(
        prefixes_v4 = db.v4.len(),
        prefixes_v6 = db.v6.len(),
        "database compiled"
    );
    let policy = DesiredPolicy {
        countries,
        ..Default::default()
    };

    let layout = PinLayout::new(paths::pin_root());
    prepare_pin_root(&layout.root)?;
    let mut guard = PinRootGuard(Some(layout.root.clone()));

    let mut datapath = Datapath::load_pinned(&layout)?;
    let tables = datapath.install_tables(&db.v4, &db.v6)?;
    info!(
        elapsed_ms = tables.elapsed.as_millis() as u64,
        "country tables loaded"
    );
    datapath.set_policy(&policy.compile())?;

    let mut attachments = Vec::new();
    for iface in &args.ifaces {
        match datapath.attach(iface, args.xdp_mode, &layout) {
            Ok(a) => {
                info!(iface = %a.iface, mode = ?a.mode, "attached");
                attachments.push(a);
            }
            Err(e) => {
                for a in attachments {
                    let _ = Datapath::detach(a);
                }
                return Err(e.into());
            }
        }
    }
    let state = State {
        datapath,
        db,
        db_paths: args.dbs.clone(),
        policy,
        attachments,
        layout,
    };

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let daemon = Arc::new(Daemon::new(state));
    let served = runtime.block_on(serve(&args.socket, daemon.clone()));
    drop(runtime);

    let state = Arc::try_unwrap(daemon)
        .map_err(|_| anyhow::anyhow!("control tasks still hold the daemon"))?
        .into_state();
    for a in state.attachments {
        let iface = a.iface.clone();
        if let Err(e) = Datapath::detach(a) {
            warn!(%iface, error = %e, "detaching failed");
        }
    }
    drop(state.datapath);
    guard.remove()?;
    info!("detached and unpinned; bye");
    served
}

async fn serve(socket: &Path, daemon: Arc<Daemon>) -> anyhow::Result<()> {
    let socket = ControlSocket::bind(socket)?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    info!(socket = %socket.path().display(), "serving; SIGINT/SIGTERM or `geofilter unload` stops");
    // Tests and supervisors wait for this line on stdout before sending traffic.
    println!("geofilter: ready");
    tokio::select! {
        () = socket.serve(daemon.clone()) => {}
        _ = sigint.recv() => info!("SIGINT"),
        _ = sigterm.recv() => info!("SIGTERM"),
        () = daemon.shutdown.notified() => info!("unload requested"),
    }
    Ok(())
}

/// Mounts bpffs if needed and makes sure no other instance's state is in the way.
fn prepare_pin_root(root: &Path) -> anyhow::Result<()> {
    let mount_point = Path::new(paths::BPFFS_MOUNT);
    if root.starts_with(mount_point)
        && bpffs::ensure_mounted(mount_point)
            .with_context(|| format!("mounting bpffs on {}", mount_point.display()))?
    {
        info!(mount_point = %mount_point.display(), "mounted bpffs");
    }
    if root.exists() {
        bail!(
            "{} holds pinned geofilter state (another daemon, or one that was killed); \
             run `geofilter unload` to remove it first",
            root.display()
        );
    }
    let parent = root.parent().context("pin root has no parent")?;
    fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    if !bpffs::is_bpffs(parent).unwrap_or(false) {
        bail!("{} is not on a BPF filesystem", parent.display());
    }
    Ok(())
}

/// Removes the pin root on drop unless removed explicitly: a start-up that fails half-way must
/// not leave pins behind.
struct PinRootGuard(Option<std::path::PathBuf>);

impl PinRootGuard {
    fn remove(&mut self) -> anyhow::Result<()> {
        if let Some(root) = self.0.take()
            && root.exists()
        {
            fs::remove_dir_all(&root).with_context(|| format!("removing {}", root.display()))?;
        }
        Ok(())
    }
}

impl Drop for PinRootGuard {
    fn drop(&mut self) {
        if let Err(e) = self.remove() {
            warn!(error = %e, "cleaning up pins failed");
        }
    }
}

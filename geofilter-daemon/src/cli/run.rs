//! `geofilter run`: load (or adopt), fill, attach, serve until a signal or `unload`, then clean up.

use std::{fs, sync::Arc, time::Duration};

use anyhow::{Context as _, bail};
use geofilter_common::maps as names;
use tokio::signal::unix::{SignalKind, signal};
use tracing::{info, warn};

use super::args::RunArgs;
use crate::{
    control::server::ControlSocket,
    daemon::{Daemon, State},
    datapath::{
        AttachOptions, Attachment, Datapath, XdpModeChoice,
        bpffs::{self, Persistence, PinRoot},
        events::{self, EventHub},
        owner::PinRootLock,
    },
    fleet::{Follower, Store},
    geoip::{self, CompiledDb, DatabaseSource},
    keys::parse_user_keys,
    notify::{self, Notifier},
    paths::{self, PinLayout},
    state::{self, SavedState},
};

/// The state to start from: the state file (the last state, with every CLI change), else
/// `--config` (the initial state of a first start), else nothing; flags given on the command line
/// replace the corresponding fields.
fn initial_state(args: &RunArgs) -> anyhow::Result<SavedState> {
    let mut saved = match (state::load(&args.state_file)?, &args.config) {
        (Some(saved), config) => {
            if let Some(config) = config {
                info!(
                    state_file = %args.state_file.display(), config = %config.display(),
                    "restoring the saved state; the config file only sets the first start's state \
                     (remove the state file to start from the config again)"
                );
            }
            saved
        }
        (None, Some(config)) => state::load_config(config)?,
        (None, None) => SavedState::default(),
    };
    if !args.ifaces.is_empty() {
        saved.interfaces = args.ifaces.clone();
    }
    if !args.asn_dbs.is_empty() {
        saved.asn_dbs = args.asn_dbs.clone();
    }
    if !args.dbs.is_empty() {
        saved.dbs = args.dbs.clone();
        saved.db_format = None;
    }
    if let Some(format) = args.db_format {
        saved.db_format = Some(format);
    }
    if !args.block.is_empty() {
        let keys = parse_user_keys(&args.block)?;
        saved.policy.countries = keys.countries;
        saved.policy.asns = keys.asns;
    }
    if let Some(mode) = args.xdp_mode {
        saved.xdp_mode = mode;
    }
    if let Some(attach) = args.xdp_attach {
        saved.xdp_attach = attach;
    }
    if let Some(priority) = args.xdp_priority {
        saved.xdp_priority = priority;
    }
    if saved.interfaces.is_empty() {
        bail!("no --iface given, and none in the config or state file");
    }
    saved.settle_interfaces()?;
    Ok(saved)
}

pub fn run(args: RunArgs) -> anyhow::Result<()> {
    if args.check {
        return check(&args);
    }
    // A SIGHUP (a supervisor's reload, a closed terminal) must not kill a daemon that is still
    // starting: ignored until `serve` installs its handler, which then re-reads the databases.
    // SAFETY: setting a signal disposition has no memory-safety preconditions.
    unsafe { libc::signal(libc::SIGHUP, libc::SIG_IGN) };
    let follower = follower(&args);
    let (saved, db) = prepare(&args, follower.as_deref())?;
    let notifier = Arc::new(Notifier::from_env());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    // Bound before the kernel is touched: a socket another daemon serves refuses this start
    // while nothing has changed yet. Clients that connect before `serve` wait in the backlog.
    let socket = runtime.block_on(async { ControlSocket::bind(&args.socket) })?;
    let Started {
        state,
        owner,
        mut guard,
    } = start(&args, saved, db)?;
    // From here on the filter is running: a crash (even a panic) must leave it in place.
    guard.0 = None;
    if let Some(f) = &follower {
        f.started(&state.saved);
    }
    let (state, served) = serve_until_stopped(&args, runtime, socket, state, notifier, follower)?;
    let stopped = teardown(&args, state, guard);
    drop(owner);
    served.and(stopped)
}

/// `run --check`: everything [`prepare`] checks, then a summary of what `run` would do.
fn check(args: &RunArgs) -> anyhow::Result<()> {
    let (saved, db) = prepare(args, follower(args).as_deref())?;
    let interfaces = saved
        .interfaces
        .iter()
        .map(|i| (i.as_str(), saved.xdp_mode));
    let summary = notify::summary(interfaces, &saved.policy, &db);
    println!("geofilter: configuration OK: {summary}");
    Ok(())
}

/// The follower of `--policy`, if given; its revisions are kept beside the state file.
fn follower(args: &RunArgs) -> Option<Arc<Follower>> {
    let source = args.policy.clone()?;
    let interval = Duration::from_secs(args.policy_interval);
    Some(Arc::new(Follower::new(
        source,
        interval,
        Store::beside(&args.state_file),
    )))
}

/// Everything that can be checked before touching the kernel, so bad input never leaves a
/// half-configured filter behind: the desired state and its compiled database.
///
/// With `--policy`, the source is read first, so the first attach enforces the published
/// revision. If it cannot be (a dead source, a bad revision), the daemon starts from the last
/// good revision, which the state file holds; `--check` fails instead.
fn prepare(
    args: &RunArgs,
    follower: Option<&Follower>,
) -> anyhow::Result<(SavedState, CompiledDb)> {
    let mut saved = initial_state(args)?;
    let limits = geoip::Limits::for_table_mib(args.max_table_mib);
    if let Some(follower) = follower {
        match follower.first_revision(&saved, &limits) {
            Ok(first) => {
                info!(source = %follower.source, "policy read from the source");
                return Ok((first.saved, first.db));
            }
            Err(e) if args.check => return Err(e),
            Err(e) => {
                warn!(error = %e, "the policy source gave no good revision; starting from the last good one (the state file)");
                crate::fleet::pass_addresses(&mut saved.policy, &follower.source.addresses());
            }
        }
    }
    let format = saved.db_format;
    // No database anywhere (flags, config, state file) means the one compiled into the binary.
    let db = geoip::load_source(&DatabaseSource::from_paths(&saved.dbs, format), &limits)
        .context("loading the country database")?;
    if saved.dbs.is_empty() {
        let database = geoip::embedded::meta().label();
        info!(%database, "no --db given: using the embedded database");
    }
    info!(
        prefixes_v4 = db.v4.len(),
        prefixes_v6 = db.v6.len(),
        "database compiled"
    );
    Ok((saved, db))
}

/// Where the blocklists' copies are kept: beside the state file.
fn lists_folder(state_file: &std::path::Path) -> std::path::PathBuf {
    state_file
        .parent()
        .unwrap_or(std::path::Path::new("."))
        .join("lists")
}

/// A filter that is running, with what its owner must hold until exit.
struct Started {
    state: State,
    /// The pin root's lock, held until the daemon is done with the root.
    owner: PinRootLock,
    /// Armed while start-up may still fail: it then removes what this daemon pinned.
    guard: PinRootGuard,
}

/// Finds or mounts the bpffs, takes the pin root, loads (or adopts) the program, fills tables
/// and policy, and attaches to every interface.
fn start(args: &RunArgs, mut saved: SavedState, db: CompiledDb) -> anyhow::Result<Started> {
    let pin_root = bpffs::prepare(&paths::pin_root()).context("preparing the BPF filesystem")?;
    report_pin_root(&pin_root);
    // `pin_root` stays alive until exit (in `State`): its path may go through a file
    // descriptor it holds.
    let layout = PinLayout::new(pin_root.path.clone());
    // Taken before anything under the root is read or changed.
    let owner = PinRootLock::acquire(&layout.root)?;
    // Decided under the lock. A start-up that fails half-way removes what it pinned, but never
    // an earlier daemon's pins: those are a working filter.
    let fresh = Datapath::pinned_links(&layout).is_empty() && !layout.map(names::POLICY).exists();
    let guard = PinRootGuard(fresh.then(|| layout.root.clone()));

    let mut datapath = Datapath::load_pinned(&layout)?;
    datapath.set_table_limit_mib(args.max_table_mib);
    if datapath.adopted {
        info!(pin_root = %layout.root.display(), "adopting the pinned filter of an earlier daemon");
    }
    // The listed ASN indices the earlier daemon's policy (adopted, still in force) uses, then
    // indices for ASNs it did not have: the new tables carry them from their first packet.
    datapath.restore_listed(saved.asn_listed.clone());
    datapath.list_asns(&saved.policy.asns)?;
    let asn = (!saved.asn_dbs.is_empty() || !saved.policy.asns.is_empty())
        .then(|| crate::commit::load_asn(&saved.asn_dbs))
        .transpose()
        .context("reading the ASN database")?
        .map(Arc::new);
    // The blocklists, from their copies beside the state file (no network at start: `list
    // update` fetches), each on the slot it had.
    let (lists, list_errors) =
        crate::lists::Lists::restore(lists_folder(&args.state_file), saved.lists.clone());
    for e in list_errors {
        warn!(error = %e, "a blocklist could not be restored");
    }
    let mut list_slots = saved.list_slots.clone();
    list_slots.retain(|name, _| lists.get(name).is_some());
    for entry in lists.entries() {
        if !list_slots.contains_key(&entry.name) {
            let free = (0..geofilter_common::table::LIST_SLOTS)
                .find(|s| !list_slots.values().any(|v| v == s))
                .expect("at most as many lists as slots");
            list_slots.insert(entry.name.clone(), free);
        }
    }
    let tables = crate::commit::install(
        &mut datapath,
        &db,
        asn.as_deref(),
        &crate::daemon::list_ranges(&lists, &list_slots),
    )
    .map_err(anyhow::Error::msg)?;
    info!(
        elapsed_ms = tables.elapsed.as_millis() as u64,
        "country tables loaded"
    );
    datapath.set_list_masks(crate::daemon::list_masks(&lists, &list_slots));
    datapath.sync_exceptions(&saved.policy.exceptions)?;
    datapath.set_policy(&datapath.compile_policy(&saved.policy))?;
    datapath.unlist_asns(&saved.policy.asns)?;
    let opts = AttachOptions {
        mode: saved.xdp_mode,
        attach: saved.xdp_attach,
        priority: saved.xdp_priority,
        force: args.force,
    };
    let attachments = attach_all(&mut datapath, &mut saved, &layout, opts, fresh)?;
    if let Err(e) = state::save(&args.state_file, &saved) {
        warn!(error = %e, "saving the state file failed");
    }
    saved.list_slots = list_slots.clone();
    let state = State {
        datapath,
        db: Arc::new(db),
        asn,
        lists,
        list_slots,
        saved,
        attachments,
        layout,
        pin_root,
        state_file: Some(args.state_file.clone()),
        pending: None,
        reloads: 0,
        reload_failures: 0,
        unload_requested: false,
    };
    Ok(Started {
        state,
        owner,
        guard,
    })
}

/// Attaches to every configured interface (swapping into an earlier daemon's links where there
/// are some), and lets go of interfaces no longer configured. A fresh start that fails half-way
/// detaches what it attached.
fn attach_all(
    datapath: &mut Datapath,
    saved: &mut SavedState,
    layout: &PinLayout,
    opts: AttachOptions,
    fresh: bool,
) -> anyhow::Result<Vec<Attachment>> {
    let mut attachments = Vec::new();
    for iface in &saved.interfaces {
        let mut attachment = datapath.attach(iface, opts, layout).inspect_err(|_| {
            if fresh {
                for a in attachments.drain(..) {
                    let _ = Datapath::detach(a);
                }
            }
        })?;
        match attachment.mode {
            // Adopted: the link does not say in which mode it was attached; the state does.
            XdpModeChoice::Auto => {
                attachment.mode = saved
                    .attached
                    .get(iface)
                    .copied()
                    .unwrap_or(XdpModeChoice::Auto);
            }
            mode => {
                saved.attached.insert(iface.clone(), mode);
            }
        }
        info!(iface = %attachment.iface, mode = ?attachment.mode, "attached");
        attachments.push(attachment);
    }
    // Interfaces an earlier daemon filtered that are no longer wanted.
    for iface in Datapath::pinned_links(layout) {
        if !saved.interfaces.contains(&iface) {
            info!(%iface, "detaching from an interface no longer configured");
            let _ = fs::remove_file(layout.link(&iface));
        }
    }
    Ok(attachments)
}

/// Serves the control socket (and metrics) until a signal or `unload`; returns the state for
/// teardown with how serving ended.
fn serve_until_stopped(
    args: &RunArgs,
    runtime: tokio::runtime::Runtime,
    socket: ControlSocket,
    mut state: State,
    notifier: Arc<Notifier>,
    follower: Option<Arc<Follower>>,
) -> anyhow::Result<(State, anyhow::Result<()>)> {
    let events = state.datapath.take_events().filter(|_| args.event_rate > 0);
    let mut daemon = Daemon::new(state);
    if let Some(f) = &follower {
        daemon = daemon.with_follower(f.clone());
    }
    if let Some(maps) = events {
        let (hub, ring) = EventHub::new(maps, args.event_settings())?;
        runtime.spawn(events::pump(ring, hub.clone()));
        daemon = daemon.with_events(hub);
    }
    let daemon = Arc::new(daemon);
    let following = match follower {
        // A thread of its own: reads and database loads block, and must never hold up the
        // control socket.
        Some(f) => {
            let (follower, daemon) = (f.clone(), daemon.clone());
            let thread = std::thread::Builder::new()
                .name("policy".into())
                .spawn(move || follower.follow(daemon))
                .context("starting the policy follower")?;
            Some((f, thread))
        }
        None => None,
    };
    let served = runtime.block_on(serve(args, socket, daemon.clone(), notifier));
    if let Some((f, thread)) = following {
        // A check in flight ends within the request timeout; then the daemon is ours again.
        f.stop();
        let _ = thread.join();
    }
    drop(runtime);
    let state = Arc::try_unwrap(daemon)
        .map_err(|_| anyhow::anyhow!("control tasks still hold the daemon"))?
        .into_state();
    Ok((state, served))
}

/// With `--keep` (and no `unload` request), leaves the filter attached; otherwise detaches every
/// interface and removes the pin root.
fn teardown(args: &RunArgs, state: State, mut guard: PinRootGuard) -> anyhow::Result<()> {
    if args.keep && !state.unload_requested {
        info!(pin_root = %state.pin_root.configured.display(), "exiting; the filter stays attached (--keep)");
        return Ok(());
    }
    for a in state.attachments {
        let iface = a.iface.clone();
        if let Err(e) = Datapath::detach(a) {
            warn!(%iface, error = %e, "detaching failed");
        }
    }
    drop(state.datapath);
    guard.0 = Some(state.layout.root.clone());
    guard.remove()?;
    info!("detached and unpinned; bye");
    Ok(())
}

/// One line on what the running filter does, for systemd's `STATUS=`.
fn status(daemon: &Daemon) -> String {
    let state = daemon.lock();
    let interfaces = state.attachments.iter().map(|a| (a.iface.as_str(), a.mode));
    notify::summary(interfaces, &state.saved.policy, &state.db)
}

async fn serve(
    args: &RunArgs,
    socket: ControlSocket,
    daemon: Arc<Daemon>,
    notifier: Arc<Notifier>,
) -> anyhow::Result<()> {
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let shown = status(&daemon);
    let watchdog = {
        let daemon = daemon.clone();
        let notifier = notifier.clone();
        let mut shown = shown.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            loop {
                tick.tick().await;
                daemon.expire_pending();
                // Every way the policy or tables change (a CLI change, a rollback, a reload,
                // SIGHUP) shows in `systemctl status` within one tick, with no hook in each.
                let now = status(&daemon);
                if now != shown {
                    notifier.status(&now);
                    shown = now;
                }
            }
        })
    };
    // Daemons reload on SIGHUP by convention; without a handler it would kill this one (exit 129).
    let mut sighup = signal(SignalKind::hangup())?;
    let reloader = {
        let daemon = daemon.clone();
        tokio::spawn(async move {
            while sighup.recv().await.is_some() {
                daemon.reload_on_sighup().await;
            }
        })
    };
    let metrics = match args.metrics {
        Some(addr) => Some(crate::metrics::spawn(addr, daemon.clone()).await?),
        None => None,
    };
    info!(socket = %socket.path().display(), "serving; SIGINT/SIGTERM or `geofilter unload` stops, SIGHUP reloads the databases");
    // Tests and supervisors wait for this line on stdout before sending traffic; systemd
    // (Type=notify) for READY=1. Both come only now: every interface is attached (`start`), the
    // control socket is bound and the metrics endpoint listens.
    println!("geofilter: ready");
    notifier.ready(&shown);
    tokio::select! {
        () = socket.serve(daemon.clone()) => {}
        _ = sigint.recv() => info!("SIGINT"),
        _ = sigterm.recv() => info!("SIGTERM"),
        () = daemon.shutdown.notified() => info!("unload requested"),
    }
    watchdog.abort();
    notifier.stopping(if args.keep {
        "stopping; the filter stays attached (--keep)"
    } else {
        "stopping: detaching and unpinning"
    });
    reloader.abort();
    if let Some(m) = metrics {
        m.abort();
    }
    Ok(())
}

/// Says where the pins went and, loudly, when they will not outlive the daemon.
fn report_pin_root(pin_root: &PinRoot) {
    let path = pin_root.path.display();
    if pin_root.mounted {
        info!(pin_root = %path, "mounted bpffs");
    }
    match pin_root.persistence {
        Persistence::Host => {}
        Persistence::Outer { pid } => info!(
            pin_root = %path, outer_pid = pid,
            "this daemon has a mount namespace of its own (ip netns exec, unshare -m): pinning \
             into the bpffs of the outer mount namespace, so the filter outlives the daemon"
        ),
        Persistence::PrivateNamespace => warn!(
            pin_root = %path,
            "THE FILTER WILL NOT OUTLIVE THIS DAEMON: the bpffs at {} exists only in this \
             daemon's mount namespace, and the outer namespace's cannot be reached. \
             Fix: mount bpffs on the host (`mount -t bpf bpf {}`) and give the daemon the host's \
             {} (container: `-v {}:{}`; systemd: ExecStartPre=+ as in dist/geofilter.service)",
            paths::BPFFS_MOUNT, paths::BPFFS_MOUNT, paths::BPFFS_MOUNT, paths::BPFFS_MOUNT,
            paths::BPFFS_MOUNT
        ),
    }
}

/// Removes the pin root on drop while armed (`Some`).
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

//! The one gate every change passes: a policy change, a database reload (by request or SIGHUP)
//! and the rollback of an unconfirmed change all become a [`Next`] and go through [`commit`],
//! which checks lockout, applies to the kernel, and only then records and saves. The [`State`]
//! it changes is defined here with it.

use std::{net::IpAddr, path::PathBuf, sync::Arc, time::Instant};

use geofilter_common::UNKNOWN_COUNTRY;
use tracing::warn;

use crate::{
    asn::AsnDb,
    changes::Undo,
    datapath::{Attachment, Datapath, TableStats, bpffs::PinRoot},
    geoip::CompiledDb,
    paths::PinLayout,
    policy::{self, DesiredPolicy},
    state::{self, SavedState},
};

/// Everything a request may read or change.
pub struct State {
    pub datapath: Datapath,
    /// Shared with the event hub, which names the prefix each logged address fell in.
    pub db: Arc<CompiledDb>,
    /// The ASN database in the tables: loaded when the policy first names an ASN (or at start
    /// with `--asn-db` or an ASN in the policy), kept from then on.
    pub asn: Option<Arc<AsnDb>>,
    /// The blocklists and the slot (bit of a net's list mask) each has.
    pub lists: crate::lists::Lists,
    pub list_slots: std::collections::BTreeMap<String, u32>,
    pub saved: SavedState,
    pub attachments: Vec<Attachment>,
    pub layout: PinLayout,
    /// Where the pins really are; it holds the descriptor `layout`'s paths may go through.
    pub pin_root: PinRoot,
    /// Where `saved` is written after every change (`None`: nowhere).
    pub state_file: Option<PathBuf>,
    /// A change applied with `--confirm` that rolls back at `deadline` unless confirmed.
    pub pending: Option<Pending>,
    pub reloads: u64,
    pub reload_failures: u64,
    /// An `unload` request stopped the daemon: it detaches even if run with `--keep` (a slot in
    /// a libxdp dispatcher can only be left by the daemon's own netns view; the CLI may be
    /// elsewhere).
    pub unload_requested: bool,
}

/// A change made with `--confirm` that rolls back at `deadline` unless confirmed.
#[derive(Clone, Debug)]
pub struct Pending {
    pub undo: Undo,
    pub deadline: Instant,
}

/// What the kernel is to enforce after a change.
pub struct Next {
    pub policy: DesiredPolicy,
    /// New tables and the files they came from (a reload), or `None` to keep the current ones.
    pub db: Option<(CompiledDb, Vec<PathBuf>)>,
    /// A new ASN database and its files (a reload with ASN files), or `None` to keep the
    /// current one.
    pub asn: Option<(AsnDb, Vec<PathBuf>)>,
    /// The change waiting for confirmation after this one, if any.
    pub pending: Option<Pending>,
}

impl Next {
    /// The current policy, tables and pending change, to modify one part of.
    pub fn unchanged(state: &State) -> Self {
        Self {
            policy: state.saved.policy.clone(),
            db: None,
            asn: None,
            pending: state.pending.clone(),
        }
    }
}

/// Checks `next` against lockout for every address in `protect`, applies it to the kernel, and
/// records it. On error nothing changed: the kernel, the state and the state file keep the last
/// good state.
///
/// The check covers the state right after the change and, while a change waits for
/// confirmation, the state its rollback would leave: a rollback runs unattended, so a later
/// change that is only safe while the pending one stays is refused now, not discovered when the
/// rollback drops the operator. That is also why the rollback itself needs no check.
pub fn commit(
    state: &mut State,
    mut next: Next,
    protect: &[IpAddr],
) -> Result<Option<TableStats>, String> {
    let db = next.db.as_ref().map_or(&*state.db, |(db, _)| db);
    let asn_of = |a| state.datapath.asn_of(a);
    for &addr in protect {
        check_lockout(db, asn_of, &next.policy, addr, "")?;
        if let Some(pending) = &next.pending {
            let rolled_back = pending.undo.revert(&next.policy);
            // Returning to exactly what is enforced now can drop no one new.
            if next.db.is_some() || rolled_back != state.saved.policy {
                check_lockout(
                    db,
                    asn_of,
                    &rolled_back,
                    addr,
                    " once the change waiting for `geofilter confirm` rolls back (confirm it \
                     first)",
                )?;
            }
        }
    }
    // The first ASN in the policy brings the ASN database into the tables (once: a rebuild like
    // a reload, lossless); after that an ASN change is a policy change.
    let (new_asn, asn_paths) = match next.asn.take() {
        Some((db, paths)) => (Some(Arc::new(db)), Some(paths)),
        None => match (&state.asn, next.policy.asns.is_empty()) {
            (None, false) => (
                Some(Arc::new(
                    load_asn(&state.saved.asn_dbs)
                        .map_err(|e| format!("change not applied: {e}"))?,
                )),
                None,
            ),
            _ => (None, None),
        },
    };
    let stats = if next.db.is_some() || new_asn.is_some() {
        // New tables first, carrying the listed index of every ASN the new policy names (which
        // no live policy gives an action yet), then the policy that names them.
        let db = next.db.as_ref().map_or(&*state.db, |(db, _)| db);
        let asn = new_asn.as_deref().or(state.asn.as_deref());
        let lists = crate::daemon::list_ranges(&state.lists, &state.list_slots);
        let installed = state
            .datapath
            .list_asns(&next.policy.asns)
            .map_err(|e| e.to_string())
            .and_then(|()| install(&mut state.datapath, db, asn, &lists));
        let stats = installed.map_err(|e| format!("tables not installed: {e}"))?;
        apply_policy(state, &next.policy)?;
        Some(stats)
    } else {
        apply_policy(state, &next.policy)?;
        None
    };
    if new_asn.is_some() {
        state.asn = new_asn;
    }
    if let Some(paths) = asn_paths {
        state.saved.asn_dbs = paths;
    }
    state.saved.policy = next.policy;
    state.pending = next.pending;
    if let Some((db, paths)) = next.db {
        state.db = Arc::new(db);
        state.saved.dbs = paths;
    }
    persist(state);
    Ok(stats)
}

fn apply_policy(state: &mut State, new: &DesiredPolicy) -> Result<(), String> {
    let old = state.saved.policy.clone();
    apply_policy_between(state, &old, new)
}

/// Makes the kernel enforce `new` where it enforced `old`; on failure, puts `old` back.
fn apply_policy_between(
    state: &mut State,
    old: &DesiredPolicy,
    new: &DesiredPolicy,
) -> Result<(), String> {
    if old == new {
        return Ok(());
    }
    let Err(e) = policy::apply(&mut state.datapath, old, new) else {
        return Ok(());
    };
    // Part of the change may have reached the kernel (an exception inserted before the policy
    // swap failed): put back what was there, so the kernel keeps the state we report.
    Err(match policy::apply(&mut state.datapath, new, old) {
        Ok(()) => format!("change not applied: {e}"),
        Err(undo) => {
            format!("change not applied: {e}; restoring the previous state also failed: {undo}")
        }
    })
}

/// Refuses `policy` with `db` when it would drop `addr` (`asn_of` gives an address's ASN, as
/// the live table has it).
fn check_lockout(
    db: &CompiledDb,
    asn_of: impl Fn(IpAddr) -> Option<u32>,
    desired: &DesiredPolicy,
    addr: IpAddr,
    when: &str,
) -> Result<(), String> {
    // `::ffff:a.b.c.d` (sshd on a dual-stack socket) is filtered as a.b.c.d, and so checked.
    let (filtered, embedding) = policy::filtered_as(addr);
    let country = db
        .lookup(filtered)
        .map_or(UNKNOWN_COUNTRY, |p| p.info.country);
    let asn = asn_of(filtered);
    if desired.would_drop(filtered, country, asn) {
        let shown = match embedding {
            Some(kind) => format!("{addr} ({} address of {filtered})", kind.name()),
            None => addr.to_string(),
        };
        return Err(format!(
            "refused: this change would drop your own session's address {shown} ({}){when}. Add \
             it as an exception first (`geofilter except add {filtered}`), or pass --force",
            match asn {
                Some(asn) if desired.asns.contains(&asn) =>
                    format!("{}, AS{asn}", crate::country::code_or_unknown(country)),
                _ => crate::country::code_or_unknown(country).to_string(),
            }
        ));
    }
    Ok(())
}

/// Reads the ASN database: the `--asn-db` files, or the embedded one.
pub fn load_asn(paths: &[PathBuf]) -> Result<AsnDb, crate::asn::AsnError> {
    if paths.is_empty() {
        crate::asn::embedded::load()
    } else {
        crate::asn::load(paths, None)
    }
}

/// Builds both families' tables from `db`, the ASN database `asn` and the lists in force, and
/// swaps them in (on error the live tables stay).
pub fn install(
    datapath: &mut Datapath,
    db: &CompiledDb,
    asn: Option<&AsnDb>,
    lists: &[crate::nets::ListRanges<'_>],
) -> Result<TableStats, String> {
    if asn.is_none() && lists.is_empty() {
        // Countries only: the tables as they always were (one net per database file).
        return datapath
            .install_tables(&db.v4, &db.v6)
            .map_err(|e| e.to_string());
    }
    let (v4, v6) = crate::nets::inputs(db, asn, lists).map_err(|e| e.to_string())?;
    datapath.install_inputs(&v4, &v6).map_err(|e| e.to_string())
}

/// Saves the desired state; a failure is logged, not fatal: the kernel state is already right.
pub fn persist(state: &State) {
    let mut saved = state.saved.clone();
    saved.asn_listed = state.datapath.listed_asns().clone();
    // A pending change is not yet the state to restore after a crash.
    if let Some(p) = &state.pending {
        saved.policy = p.undo.revert(&saved.policy);
    }
    if let Some(path) = &state.state_file
        && let Err(e) = state::save(path, &saved)
    {
        warn!(error = %e, path = %path.display(), "saving the state file failed");
    }
}

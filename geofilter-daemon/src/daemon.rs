//! The running daemon: the loaded datapath, the database it was filled from, the operator's
//! policy, and the request handlers the control socket calls.
//!
//! Requests apply one at a time (one lock). A change is validated whole, then goes through
//! [`commit`]: checked against lockout, applied to the kernel, and only then recorded here and in
//! the state file.

mod lists;
mod reload;

use std::{
    net::IpAddr,
    path::PathBuf,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::sync::Notify;
use tracing::{info, warn};

pub use self::lists::{masks as list_masks, ranges as list_ranges};
// `State` lives with the gate that changes it; it is named here too because the daemon owns it.
pub use crate::commit::State;
use crate::{
    changes::{self, Undo},
    commit::{Next, Pending, commit, persist},
    control::{
        protocol::{
            Change, ChangeOptions, ConfirmReply, ControlError, DatabaseStatus, Exceptions,
            InterfaceStatus, LogRequest, LogStarted, MAX_CONFIRM_S, MAX_WHY_ADDRESSES,
            PolicySourceStatus, ProgramStatus, Reply, Request, Response, StatsReply, StatusReply,
            TopEntry, TopReply, UnloadReply, WhyAnswer,
        },
        server::{Handler, LogFeed},
    },
    datapath::events::EventHub,
    fleet::Follower,
    geoip::{self, CompiledDb, Format},
    policy::DesiredPolicy,
    report, why,
};

/// Session addresses remembered for changes that come without one (see [`Daemon::remember`]).
const MAX_SESSIONS: usize = 8;

/// Rows of each `top` table.
const TOP_ROWS: usize = 10;

pub struct Daemon {
    state: Mutex<State>,
    /// The session addresses that made changes, oldest first.
    sessions: Mutex<Vec<IpAddr>>,
    started: Instant,
    /// Signalled by an `unload` request.
    pub shutdown: Notify,
    /// Policy changes applied and refused over the control socket (`geofilter_policy_*` metrics).
    pub policy_changes: AtomicU64,
    pub policy_refusals: AtomicU64,
    /// Held while a reload reads and compiles databases. Reloads run one at a time: four
    /// concurrent ones held four databases in memory at once (4.2 GB).
    reloading: Arc<tokio::sync::Mutex<()>>,
    /// Sampled packet events for `log` and `top`; `None` without a reader (`--event-rate 0`).
    events: Option<Arc<EventHub>>,
    /// The policy source this daemon follows (`run --policy`): it alone changes the policy.
    follower: Option<Arc<Follower>>,
}

impl Daemon {
    pub fn new(state: State) -> Self {
        Self {
            state: Mutex::new(state),
            sessions: Mutex::default(),
            started: Instant::now(),
            shutdown: Notify::new(),
            policy_changes: AtomicU64::new(0),
            policy_refusals: AtomicU64::new(0),
            reloading: Arc::default(),
            events: None,
            follower: None,
        }
    }

    /// Follows `follower`'s source: local policy changes are refused from now on.
    pub fn with_follower(mut self, follower: Arc<Follower>) -> Self {
        self.follower = Some(follower);
        self
    }

    pub fn follower(&self) -> Option<&Arc<Follower>> {
        self.follower.as_ref()
    }

    /// Refuses a local policy change while a policy source is followed.
    fn local_change_allowed(&self) -> Result<(), ControlError> {
        match &self.follower {
            Some(f) => Err(ControlError::Following {
                policy: f.source.to_string(),
            }),
            None => Ok(()),
        }
    }

    /// The bounds a database load must stay within (`--max-table-mib`).
    pub fn db_limits(&self) -> geoip::Limits {
        geoip::Limits::for_table_mib(self.lock().datapath.table_limit_mib())
    }

    /// Applies one revision of a followed policy as one change: its policy and, when its
    /// databases changed, their tables (`format` is their `db_format`). Checked against
    /// lockout for `protect`; on error nothing changed.
    pub fn apply_revision(
        &self,
        policy: DesiredPolicy,
        tables: Option<(CompiledDb, Vec<PathBuf>, Option<Format>)>,
        protect: &[IpAddr],
    ) -> Result<(), String> {
        let mut state = self.lock();
        let mut next = Next::unchanged(&state);
        next.policy = policy;
        let format_before = state.saved.db_format;
        let reload = tables.is_some();
        if let Some((db, paths, format)) = tables {
            // Saved by `commit` with the rest of the state on success.
            state.saved.db_format = format;
            next.db = Some((db, paths));
        }
        if let Err(e) = commit(&mut state, next, protect) {
            state.saved.db_format = format_before;
            return Err(e);
        }
        if reload {
            state.reloads += 1;
            if let Some(hub) = &self.events {
                hub.use_db(state.db.clone());
            }
        }
        Ok(())
    }

    /// Serves `log` and `top` from `hub`.
    pub fn with_events(mut self, hub: Arc<EventHub>) -> Self {
        hub.use_db(self.lock().db.clone());
        self.events = Some(hub);
        self
    }

    fn event_hub(&self) -> Result<&Arc<EventHub>, ControlError> {
        self.events.as_ref().ok_or(ControlError::EventsOff)
    }

    fn log_started(hub: &EventHub, follow: bool) -> LogStarted {
        let settings = hub.settings();
        LogStarted {
            follow,
            rate_per_cpu: settings.rate,
            burst: settings.burst,
            history_always: settings.always,
        }
    }

    fn top(&self, window_s: u64) -> Result<TopReply, ControlError> {
        let hub = self.event_hub()?;
        if window_s == 0 {
            return Err(ControlError::Window);
        }
        let top = hub.top(window_s, TOP_ROWS);
        let entries = |rows: Vec<(String, String, u64)>| {
            rows.into_iter()
                .map(|(key, country, events)| TopEntry {
                    key,
                    country,
                    events,
                })
                .collect()
        };
        let started = Self::log_started(hub, false);
        Ok(TopReply {
            window_s,
            events: top.events,
            rate_per_cpu: started.rate_per_cpu,
            history_always: started.history_always,
            prefixes: entries(top.prefixes),
            countries: entries(top.countries),
        })
    }

    /// Gives the state back for shutdown.
    pub fn into_state(self) -> State {
        self.state.into_inner().unwrap_or_else(|e| e.into_inner())
    }

    pub fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves the last applied state, which is still coherent:
        // every change reaches the kernel before it is recorded here.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn status(&self) -> StatusReply {
        let state = self.lock();
        StatusReply {
            interfaces: state
                .attachments
                .iter()
                .map(|a| InterfaceStatus {
                    name: a.iface.clone(),
                    xdp_mode: a.mode,
                    programs: programs_on(&a.iface),
                })
                .collect(),
            database: DatabaseStatus {
                paths: state.saved.dbs.clone(),
                sources: state.db.sources.clone(),
                prefixes_v4: state.db.v4.len(),
                prefixes_v6: state.db.v6.len(),
                countries: state.db.countries().len(),
                table_bytes_v4: state.datapath.table_bytes().0,
                table_bytes_v6: state.datapath.table_bytes().1,
                reloads: state.reloads,
                reload_failures: state.reload_failures,
            },
            policy: state.saved.policy.clone(),
            pending_confirm_s: state.pending.as_ref().map(|p| {
                p.deadline
                    .saturating_duration_since(Instant::now())
                    .as_secs()
            }),
            pin_root: state.pin_root.configured.clone(),
            pins: state.pin_root.persistence.describe(),
            state_file: state.state_file.clone(),
            uptime_s: self.started.elapsed().as_secs(),
            policy_source: self.follower.as_ref().map(|f| {
                let s = f.status();
                PolicySourceStatus {
                    source: f.source.to_string(),
                    revision: s.applied.as_ref().map(|r| r.sha256.clone()),
                    etag: s.applied.as_ref().and_then(|r| r.etag.clone()),
                    applied_at: s.applied.as_ref().map(|r| r.applied_at),
                    last_check: s.last_check,
                    last_success: s.last_success,
                    last_error: s.last_error.clone(),
                    errors: s.error_count(),
                    ready: s.ready(),
                    exempt: s.exempt.clone(),
                }
            }),
        }
    }

    fn change(&self, change: &Change, opts: &ChangeOptions) -> Result<Reply, ControlError> {
        // Checked before anything is applied: a bad value must change nothing.
        let deadline = opts.confirm_s.map(confirm_deadline).transpose()?;
        let caller = opts.caller;
        let mut state = self.lock();
        if opts.confirm_s.is_some() && state.pending.is_some() {
            return Err(ControlError::AlreadyPending);
        }
        let applied = changes::apply(&state.saved.policy, change).map_err(ControlError::Refused)?;
        let mut next = Next::unchanged(&state);
        match (&mut next.pending, deadline) {
            (_, Some(deadline)) => {
                next.pending = Some(Pending {
                    undo: Undo::new(&state.saved.policy, &applied.policy),
                    deadline,
                });
            }
            // The pending change gives up what this one sets (see `Undo`).
            (Some(pending), None) => pending.undo.later_change(&applied.touched),
            (None, None) => {}
        }
        next.policy = applied.policy;
        let protect = protected(caller, opts.force);
        commit(&mut state, next, &protect).map_err(ControlError::Refused)?;
        self.remember(caller, opts.force);
        if deadline.is_some() {
            info!(
                secs = opts.confirm_s,
                "change applied; rolls back unless confirmed"
            );
        }
        Ok(Reply::Policy(state.saved.policy.clone()))
    }

    fn confirm(&self) -> Result<ConfirmReply, ControlError> {
        let mut state = self.lock();
        match state.pending.take() {
            Some(_) => {
                // Until now the state file held the state the change would roll back to (see
                // `persist`); the confirmed change is the one to restore after a restart.
                persist(&state);
                Ok(ConfirmReply { confirmed: true })
            }
            None => Err(ControlError::NothingPending),
        }
    }

    /// Rolls back a change whose confirmation did not arrive in time. Called periodically.
    pub fn expire_pending(&self) {
        let mut state = self.lock();
        let Some(pending) = state
            .pending
            .as_ref()
            .filter(|p| p.deadline <= Instant::now())
        else {
            return;
        };
        let mut next = Next::unchanged(&state);
        next.policy = pending.undo.revert(&state.saved.policy);
        next.pending = None;
        // No lockout check: every change since the pending one was checked against this very
        // state (see `commit`).
        match commit(&mut state, next, &[]) {
            Ok(_) => warn!("change not confirmed in time: rolled back"),
            // Keep trying: the pending change stays until its rollback is applied.
            Err(e) => warn!(error = %e, "rolling back an unconfirmed change failed; retrying"),
        }
    }

    /// Remembers the session addresses that made changes, for changes that come with none
    /// (SIGHUP). A session that forced a change has said it may be dropped, so it is forgotten.
    fn remember(&self, caller: Option<IpAddr>, force: bool) {
        let Some(addr) = caller else { return };
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions.retain(|&a| a != addr);
        if !force {
            sessions.push(addr);
            if sessions.len() > MAX_SESSIONS {
                sessions.remove(0);
            }
        }
    }

    fn why(&self, addresses: &[IpAddr]) -> Result<Vec<WhyAnswer>, ControlError> {
        if addresses.len() > MAX_WHY_ADDRESSES {
            return Err(ControlError::TooManyAddresses);
        }
        let state = self.lock();
        addresses
            .iter()
            .map(|&addr| {
                let found = state
                    .datapath
                    .classify(addr)
                    .map_err(|e| ControlError::Datapath(e.to_string()))?;
                let names = net_names(&state, addr, &found);
                Ok(why::explain(
                    addr,
                    &found,
                    &state.db,
                    &state.saved.policy,
                    &names,
                ))
            })
            .collect()
    }

    fn exceptions(&self) -> Exceptions {
        self.lock().saved.policy.exceptions.clone()
    }

    fn stats(&self) -> Result<StatsReply, ControlError> {
        let counters = self
            .lock()
            .datapath
            .counters()
            .map_err(|e| ControlError::Datapath(e.to_string()))?;
        let state = self.lock();
        Ok(report::stats(&counters, |slot| {
            self.list_name(&state, slot)
        }))
    }
}

/// What runs on `iface`, for `status` (empty if it cannot be read).
fn programs_on(iface: &str) -> Vec<ProgramStatus> {
    use crate::datapath::dispatcher::{self, OnInterface};
    match dispatcher::inspect(iface) {
        Ok(OnInterface::Dispatcher(current)) => current
            .components
            .iter()
            .map(|c| ProgramStatus {
                slot: c.slot,
                name: c.name.clone(),
                id: c.prog_id,
                priority: Some(c.priority),
                owner: if c.is_geofilter() {
                    "geofilter"
                } else {
                    "libxdp"
                }
                .into(),
            })
            .collect(),
        Ok(OnInterface::Other { name, id }) => vec![ProgramStatus {
            slot: 0,
            owner: if name == geofilter_common::maps::PROGRAM {
                "geofilter"
            } else {
                "other"
            }
            .into(),
            name,
            id,
            priority: None,
        }],
        Ok(OnInterface::Nothing) | Err(_) => Vec::new(),
    }
}

/// The addresses a change must not drop: the caller's, unless forced.
fn protected(caller: Option<IpAddr>, force: bool) -> Vec<IpAddr> {
    caller.filter(|_| !force).into_iter().collect()
}

/// When a change made with `--confirm secs` rolls back, or why `secs` is refused.
fn confirm_deadline(secs: u64) -> Result<Instant, ControlError> {
    if !(1..=MAX_CONFIRM_S).contains(&secs) {
        return Err(ControlError::ConfirmWindow { secs });
    }
    Instant::now()
        .checked_add(Duration::from_secs(secs))
        .ok_or(ControlError::ConfirmClock { secs })
}

impl Handler for Daemon {
    async fn handle(&self, request: Request) -> Response<Reply> {
        let result = match request {
            Request::Status {} => Ok(Reply::Status(Box::new(self.status()))),
            Request::Stats {} => self.stats().map(Reply::Stats),
            Request::Change { change, opts } => {
                let applied = self
                    .local_change_allowed()
                    .and_then(|()| self.change(&change, &opts));
                let counter = match applied {
                    Ok(_) => &self.policy_changes,
                    Err(_) => &self.policy_refusals,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                applied
            }
            Request::Confirm {} => self
                .local_change_allowed()
                .and_then(|()| self.confirm())
                .map(Reply::Confirmed),
            Request::ExceptList {} => Ok(Reply::Exceptions(self.exceptions())),
            Request::Why { addresses } => self.why(&addresses).map(Reply::Why),
            Request::Reload {
                dbs,
                embedded,
                asn_dbs,
                caller,
                force,
            } => match self.local_change_allowed() {
                Ok(()) => self
                    .reload_request(dbs, embedded, asn_dbs, caller, force)
                    .await
                    .map(Reply::Reloaded),
                Err(e) => Err(e),
            },
            Request::Top { window_s } => self.top(window_s).map(Reply::Top),
            Request::ListShow {} => Ok(self.list_show()),
            Request::ListAdd {
                spec,
                caller,
                force,
            } => self
                .local_change_allowed()
                .and_then(|()| self.list_add(spec, caller, force)),
            Request::ListDel { name } => self
                .local_change_allowed()
                .and_then(|()| self.list_del(&name)),
            Request::ListUpdate { name } => self
                .local_change_allowed()
                .and_then(|()| self.list_update(name.as_deref())),
            Request::ListEnable {
                name,
                on,
                caller,
                force,
            } => self
                .local_change_allowed()
                .and_then(|()| self.list_enable(&name, on, caller, force)),
            // Streamed by the server through `Handler::log`; never reaches here.
            Request::Log(_) => Err(ControlError::Refused("log is a streaming request".into())),
            Request::Unload {} => {
                self.lock().unload_requested = true;
                self.shutdown.notify_one();
                Ok(Reply::Unloading(UnloadReply { unloading: true }))
            }
        };
        match result {
            Ok(v) => Response::ok(v),
            Err(e) => Response::error(e),
        }
    }

    fn log(&self, request: &LogRequest) -> Result<LogFeed, ControlError> {
        let hub = self.event_hub()?;
        Ok(LogFeed {
            started: Self::log_started(hub, request.follow),
            // A follower sees what comes from now on, like `tail -f` with no backlog, so what it
            // prints is what happened while it watched.
            recent: if request.follow {
                Vec::new()
            } else {
                hub.recent(&request.countries)
            },
            follow: request.follow.then(|| hub.follow(request.passed)),
            countries: request.countries.clone(),
        })
    }
}

/// What the kernel's net for `addr` means: the ASN its slot is in the live table, with the
/// organisation the ASN database names.
fn net_names(
    state: &State,
    addr: IpAddr,
    found: &crate::datapath::Classification,
) -> why::NetNames {
    let (filtered, _) = crate::policy::filtered_as(addr);
    let asn = state.datapath.net_asn(filtered, found.net);
    why::NetNames {
        asn,
        organisation: asn.and_then(|a| state.asn.as_ref()?.name(a).map(str::to_owned)),
        lists: lists::names_in(&state.list_slots, found.lists),
        deciding_list: (found.decided_by == geofilter_common::Decider::List)
            .then(|| lists::names_in(&state.list_slots, 1 << found.list).pop())
            .flatten(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confirm_windows_are_bounded() {
        for secs in [0, MAX_CONFIRM_S + 1, u64::MAX] {
            let err = confirm_deadline(secs).unwrap_err().to_string();
            assert!(
                err.contains(&secs.to_string()) && err.contains("1 to 86400"),
                "{err}"
            );
        }
        for secs in [1, MAX_CONFIRM_S] {
            let deadline = confirm_deadline(secs).unwrap();
            assert!(deadline > Instant::now());
        }
    }
}

//! The running daemon: the loaded datapath, the database it was filled from, the operator's
//! policy, and the request handlers the control socket calls.
//!
//! Requests apply one at a time (one lock). A change is validated whole, then goes through
//! [`commit`]: checked against lockout, applied to the kernel, and only then recorded here and in
//! the state file.

use std::{
    net::IpAddr,
    path::PathBuf,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use tokio::sync::Notify;
use tracing::{info, warn};

use crate::{
    changes::{self, Undo},
    commit::{Next, Pending, commit, persist},
    control::{
        protocol::{Change, ChangeOptions, MAX_CONFIRM_S, MAX_WHY_ADDRESSES, Request, Response},
        server::Handler,
    },
    datapath::{Attachment, Datapath, bpffs::PinRoot},
    geoip::{self, CompiledDb, DatabaseSource, Format},
    paths::PinLayout,
    report,
    state::SavedState,
    why,
};

/// Everything a request may read or change.
pub struct State {
    pub datapath: Datapath,
    pub db: CompiledDb,
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
}

/// Session addresses remembered for changes that come without one (see [`Daemon::remember`]).
const MAX_SESSIONS: usize = 8;

pub struct Daemon {
    state: Mutex<State>,
    /// The session addresses that made changes, oldest first.
    sessions: Mutex<Vec<IpAddr>>,
    started: Instant,
    /// Signalled by an `unload` request.
    pub shutdown: Notify,
    /// Held while a reload reads and compiles databases. Reloads run one at a time: four
    /// concurrent ones held four databases in memory at once (4.2 GB).
    reloading: Arc<tokio::sync::Mutex<()>>,
}

impl Daemon {
    pub fn new(state: State) -> Self {
        Self {
            state: Mutex::new(state),
            sessions: Mutex::default(),
            started: Instant::now(),
            shutdown: Notify::new(),
            reloading: Arc::default(),
        }
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

    fn status(&self) -> Value {
        let state = self.lock();
        json!({
            "interfaces": state.attachments.iter().map(|a| json!({"name": a.iface, "xdp_mode": a.mode})).collect::<Vec<_>>(),
            "database": {
                "paths": state.saved.dbs,
                "sources": state.db.sources,
                "prefixes_v4": state.db.v4.len(),
                "prefixes_v6": state.db.v6.len(),
                "countries": state.db.countries().len(),
                "reloads": state.reloads,
                "reload_failures": state.reload_failures,
            },
            "policy": report::policy_json(&state.saved.policy),
            "pending_confirm_s": state.pending.as_ref().map(|p| p.deadline.saturating_duration_since(Instant::now()).as_secs()),
            "pin_root": state.pin_root.configured,
            "pins": state.pin_root.persistence.describe(),
            "state_file": state.state_file,
            "uptime_s": self.started.elapsed().as_secs(),
        })
    }

    fn change(&self, change: &Change, opts: &ChangeOptions) -> Result<Value, String> {
        // Checked before anything is applied: a bad value must change nothing.
        let deadline = opts.confirm_s.map(confirm_deadline).transpose()?;
        let caller = parse_caller(opts.caller.as_deref())?;
        let mut state = self.lock();
        if opts.confirm_s.is_some() && state.pending.is_some() {
            return Err("another change is waiting for `geofilter confirm`; confirm it or let it roll back first".into());
        }
        let applied = changes::apply(&state.saved.policy, change)?;
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
        commit(&mut state, next, &protect)?;
        self.remember(caller, opts.force);
        if deadline.is_some() {
            info!(
                secs = opts.confirm_s,
                "change applied; rolls back unless confirmed"
            );
        }
        Ok(report::policy_json(&state.saved.policy))
    }

    fn confirm(&self) -> Result<Value, String> {
        let mut state = self.lock();
        match state.pending.take() {
            Some(_) => {
                // Until now the state file held the state the change would roll back to (see
                // `persist`); the confirmed change is the one to restore after a restart.
                persist(&state);
                Ok(json!({"confirmed": true}))
            }
            None => Err("no change is waiting for confirmation".into()),
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

    fn why(&self, addresses: &[String]) -> Result<Value, String> {
        if addresses.len() > MAX_WHY_ADDRESSES {
            return Err(format!("at most {MAX_WHY_ADDRESSES} addresses per request"));
        }
        let state = self.lock();
        let answers = addresses
            .iter()
            .map(|text| match text.trim().parse::<IpAddr>() {
                Err(_) => {
                    Ok(json!({"address": text, "error": format!("not an IP address: {text:?}")}))
                }
                Ok(addr) => {
                    let found = state.datapath.classify(addr).map_err(|e| e.to_string())?;
                    Ok(why::explain(addr, &found, &state.db, &state.saved.policy))
                }
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Value::Array(answers))
    }

    fn exceptions(&self) -> Value {
        let state = self.lock();
        json!(state.saved.policy.exceptions)
    }

    fn stats(&self) -> Result<Value, String> {
        let counters = self.lock().datapath.counters().map_err(|e| e.to_string())?;
        Ok(report::counters_json(&counters))
    }

    /// Reads and compiles the databases off the lock, then swaps the tables in one step each.
    /// A database that fails to load, or would drop a protected session, changes nothing.
    async fn reload(
        &self,
        dbs: Vec<PathBuf>,
        embedded: bool,
        protect: &[IpAddr],
    ) -> Result<Value, String> {
        if embedded && !dbs.is_empty() {
            return Err("reload either the embedded database or files, not both".into());
        }
        // A second reload is refused rather than queued: a queue would hold each caller waiting
        // without saying why, and the operator can retry once the first has finished.
        let Ok(one_at_a_time) = self.reloading.clone().try_lock_owned() else {
            return Err(
                "a reload is in progress; the current tables stay. Try again when it has \
                 finished"
                    .into(),
            );
        };
        let (paths, format, limits) = {
            let state = self.lock();
            let paths = if embedded || !dbs.is_empty() {
                dbs
            } else {
                state.saved.dbs.clone()
            };
            let limits = geoip::Limits::for_table_mib(state.datapath.table_limit_mib());
            (paths, state.saved.db_format.clone(), limits)
        };
        let format = format
            .map(|f| f.parse::<Format>())
            .transpose()
            .map_err(|e| e.to_string())?;
        let load_paths = paths.clone();
        // No files (given or current) means the embedded database.
        // The guard travels with the work: if this request is dropped mid-load, the load still
        // holds it until it ends; here it is held until the new tables are committed.
        let joined = tokio::task::spawn_blocking(move || {
            (
                one_at_a_time,
                geoip::load_source(&DatabaseSource::from_paths(&load_paths, format), &limits),
            )
        })
        .await;
        let (_one_at_a_time, loaded) = match joined {
            Ok((guard, db)) => (Some(guard), Ok(db)),
            Err(e) => (None, Err(e.to_string())),
        };
        let mut state = self.lock();
        let committed = loaded
            .and_then(|db| db.map_err(|e| e.to_string()))
            .and_then(|db| {
                let mut next = Next::unchanged(&state);
                next.db = Some((db, paths));
                commit(&mut state, next, protect)
            });
        let stats = match committed {
            Ok(stats) => stats.expect("a reload installs tables"),
            Err(e) => {
                state.reload_failures += 1;
                return Err(format!(
                    "database not reloaded, the current tables stay: {e}"
                ));
            }
        };
        state.reloads += 1;
        info!(
            prefixes_v4 = stats.prefixes_v4,
            prefixes_v6 = stats.prefixes_v6,
            "database reloaded"
        );
        Ok(
            json!({"prefixes_v4": stats.prefixes_v4, "prefixes_v6": stats.prefixes_v6, "elapsed_ms": stats.elapsed.as_millis() as u64}),
        )
    }

    /// SIGHUP: re-reads the current databases like `db reload` does, with the same validation
    /// and lockout check (for the sessions that made changes: a signal carries no caller). A bad
    /// file is logged and the current tables stay.
    pub async fn reload_on_sighup(&self) {
        info!("SIGHUP: re-reading the databases");
        let protect = self
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Err(e) = self.reload(Vec::new(), false, &protect).await {
            warn!(error = %e, "SIGHUP reload failed");
        }
    }

    /// A reload requested over the socket, protecting the caller's session.
    async fn reload_request(
        &self,
        dbs: Vec<PathBuf>,
        embedded: bool,
        caller: Option<&str>,
        force: bool,
    ) -> Result<Value, String> {
        let caller = parse_caller(caller)?;
        let result = self
            .reload(dbs, embedded, &protected(caller, force))
            .await?;
        self.remember(caller, force);
        Ok(result)
    }
}

/// The addresses a change must not drop: the caller's, unless forced.
fn protected(caller: Option<IpAddr>, force: bool) -> Vec<IpAddr> {
    caller.filter(|_| !force).into_iter().collect()
}

/// The caller's session address, or why it is not one.
fn parse_caller(caller: Option<&str>) -> Result<Option<IpAddr>, String> {
    caller
        .map(|c| {
            c.parse()
                .map_err(|_| format!("caller address {c:?} is not an IP address"))
        })
        .transpose()
}

/// When a change made with `--confirm secs` rolls back, or why `secs` is refused.
fn confirm_deadline(secs: u64) -> Result<Instant, String> {
    if !(1..=MAX_CONFIRM_S).contains(&secs) {
        return Err(format!(
            "--confirm {secs} refused: the confirmation window is 1 to {MAX_CONFIRM_S} seconds \
             (24 hours)"
        ));
    }
    Instant::now()
        .checked_add(Duration::from_secs(secs))
        .ok_or_else(|| format!("--confirm {secs} refused: the deadline is past this clock's range"))
}

impl Handler for Daemon {
    async fn handle(&self, request: Request) -> Response {
        let result = match request {
            Request::Status {} => Ok(self.status()),
            Request::Stats {} => self.stats(),
            Request::Change { change, opts } => self.change(&change, &opts),
            Request::Confirm {} => self.confirm(),
            Request::ExceptList {} => Ok(self.exceptions()),
            Request::Why { addresses } => self.why(&addresses),
            Request::Reload {
                dbs,
                embedded,
                caller,
                force,
            } => {
                self.reload_request(dbs, embedded, caller.as_deref(), force)
                    .await
            }
            Request::Unload {} => {
                self.shutdown.notify_one();
                Ok(json!({"unloading": true}))
            }
        };
        match result {
            Ok(v) => Response::ok(v),
            Err(e) => Response::error(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confirm_windows_are_bounded() {
        for secs in [0, MAX_CONFIRM_S + 1, u64::MAX] {
            let err = confirm_deadline(secs).unwrap_err();
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

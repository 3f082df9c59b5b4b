//! The running daemon: the loaded datapath, the database it was filled from, the operator's
//! policy, and the request handlers the control socket calls.
//!
//! Requests apply one at a time (one lock). A change is validated whole, checked against lockout,
//! applied to the kernel, and only then recorded here and in the state file.

use std::{
    collections::BTreeSet,
    net::IpAddr,
    path::PathBuf,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use geofilter_common::{CountryId, UNKNOWN_COUNTRY};
use serde_json::{Value, json};
use tokio::sync::Notify;
use tracing::{info, warn};

use crate::{
    changes,
    control::{
        protocol::{Change, ChangeOptions, MAX_WHY_ADDRESSES, Request, Response},
        server::Handler,
    },
    datapath::{Attachment, Datapath},
    geoip::{self, CompiledDb, Format, country::parse_country},
    paths::PinLayout,
    policy::{self, DesiredPolicy},
    report, state,
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
    /// Where `saved` is written after every change (`None`: nowhere).
    pub state_file: Option<PathBuf>,
    /// A change applied with `--confirm` that rolls back at `deadline` unless confirmed.
    pub pending: Option<Pending>,
    pub reloads: u64,
    pub reload_failures: u64,
}

pub struct Pending {
    pub previous: DesiredPolicy,
    pub deadline: Instant,
}

pub struct Daemon {
    state: Mutex<State>,
    started: Instant,
    /// Signalled by an `unload` request.
    pub shutdown: Notify,
    /// Held while a reload reads and compiles databases. Reloads run one at a time: four
    /// concurrent ones held four databases in memory at once (4.2 GB).
    reloading: Arc<tokio::sync::Mutex<()>>,
}

/// Parses user-given country codes; all must be valid or nothing is applied.
pub fn parse_countries(codes: &[String]) -> Result<BTreeSet<CountryId>, String> {
    codes
        .iter()
        .map(|c| parse_country(c).map_err(|e| e.to_string()))
        .collect()
}

impl Daemon {
    pub fn new(state: State) -> Self {
        Self {
            state: Mutex::new(state),
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
            "pin_root": state.layout.root,
            "state_file": state.state_file,
            "uptime_s": self.started.elapsed().as_secs(),
        })
    }

    fn change(&self, change: &Change, opts: &ChangeOptions) -> Result<Value, String> {
        let mut state = self.lock();
        if opts.confirm_s.is_some() && state.pending.is_some() {
            return Err("another change is waiting for `geofilter confirm`; confirm it or let it roll back first".into());
        }
        let next = changes::apply(&state.saved.policy, change)?;
        if let Some(caller) = &opts.caller
            && !opts.force
        {
            check_lockout(&state, &next, caller)?;
        }
        let State {
            datapath, saved, ..
        } = &mut *state;
        if let Err(e) = policy::apply(datapath, &saved.policy, &next) {
            // Part of the change may have reached the kernel (an exception inserted before the
            // policy swap failed): put back what was there, so the kernel keeps the state we
            // report.
            let undo = policy::apply(datapath, &next, &saved.policy);
            return Err(match undo {
                Ok(()) => format!("change not applied: {e}"),
                Err(undo) => format!(
                    "change not applied: {e}; restoring the previous state also failed: {undo}"
                ),
            });
        }
        let previous = std::mem::replace(&mut state.saved.policy, next);
        if let Some(secs) = opts.confirm_s {
            state.pending = Some(Pending {
                previous,
                deadline: Instant::now() + Duration::from_secs(secs),
            });
            info!(secs, "change applied; rolls back unless confirmed");
        }
        persist(&state);
        Ok(report::policy_json(&state.saved.policy))
    }

    fn confirm(&self) -> Result<Value, String> {
        let mut state = self.lock();
        match state.pending.take() {
            Some(_) => Ok(json!({"confirmed": true})),
            None => Err("no change is waiting for confirmation".into()),
        }
    }

    /// Rolls back a change whose confirmation did not arrive in time. Called periodically.
    pub fn expire_pending(&self) {
        let mut state = self.lock();
        if state
            .pending
            .as_ref()
            .is_none_or(|p| p.deadline > Instant::now())
        {
            return;
        }
        let pending = state.pending.take().expect("checked above");
        let State {
            datapath, saved, ..
        } = &mut *state;
        match policy::apply(datapath, &saved.policy, &pending.previous) {
            Ok(()) => {
                warn!("change not confirmed in time: rolled back");
                state.saved.policy = pending.previous;
                persist(&state);
            }
            // Keep trying: the previous state is still the one to return to.
            Err(e) => {
                warn!(error = %e, "rolling back an unconfirmed change failed; retrying");
                state.pending = Some(pending);
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
    /// A database that fails to load changes nothing.
    async fn reload(&self, dbs: Vec<PathBuf>, embedded: bool) -> Result<Value, String> {
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
        // holds it until it ends.
        let (_one_at_a_time, loaded) = tokio::task::spawn_blocking(move || {
            (
                one_at_a_time,
                geoip::load_or_embedded(&load_paths, format, &limits),
            )
        })
        .await
        .map_err(|e| e.to_string())?;
        let mut state = self.lock();
        let db = match loaded {
            Ok(db) => db,
            Err(e) => {
                state.reload_failures += 1;
                return Err(format!(
                    "database not reloaded, the current tables stay: {e}"
                ));
            }
        };
        let stats = match state.datapath.install_tables(&db.v4, &db.v6) {
            Ok(stats) => stats,
            Err(e) => {
                state.reload_failures += 1;
                return Err(format!(
                    "database not reloaded, the current tables stay: {e}"
                ));
            }
        };
        state.db = db;
        state.saved.dbs = paths;
        state.reloads += 1;
        persist(&state);
        info!(
            prefixes_v4 = stats.prefixes_v4,
            prefixes_v6 = stats.prefixes_v6,
            "database reloaded"
        );
        Ok(
            json!({"prefixes_v4": stats.prefixes_v4, "prefixes_v6": stats.prefixes_v6, "elapsed_ms": stats.elapsed.as_millis() as u64}),
        )
    }
}

/// Refuses `next` when it would drop the operator's own connection.
fn check_lockout(state: &State, next: &DesiredPolicy, caller: &str) -> Result<(), String> {
    let addr: IpAddr = caller
        .parse()
        .map_err(|_| format!("caller address {caller:?} is not an IP address"))?;
    let country = state
        .db
        .lookup(addr)
        .map_or(UNKNOWN_COUNTRY, |p| p.info.country);
    if next.would_drop(addr, country) {
        return Err(format!(
            "refused: this change would drop your own session's address {addr} ({}). Add it as an \
             exception first (`geofilter except add {addr}`), or pass --force",
            report::country_name(country)
        ));
    }
    Ok(())
}

/// Saves the desired state; a failure is logged, not fatal: the kernel state is already right.
fn persist(state: &State) {
    let mut saved = state.saved.clone();
    // A pending change is not yet the state to restore after a crash.
    if let Some(p) = &state.pending {
        saved.policy = p.previous.clone();
    }
    if let Some(path) = &state.state_file
        && let Err(e) = state::save(path, &saved)
    {
        warn!(error = %e, path = %path.display(), "saving the state file failed");
    }
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
            Request::Reload { dbs, embedded } => self.reload(dbs, embedded).await,
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

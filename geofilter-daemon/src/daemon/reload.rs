//! Database reloads (`db reload`, `db update`, SIGHUP): the files are read and compiled off the
//! daemon's lock, then committed through the one gate like any change.

use std::{net::IpAddr, path::PathBuf};

use tracing::{info, warn};

use super::{Daemon, protected};
use crate::{
    commit::{Next, commit},
    control::protocol::{ControlError, ReloadReply},
    geoip::{self, DatabaseSource},
};

impl Daemon {
    /// Reads and compiles the databases off the lock, then swaps the tables in one step each.
    /// A database that fails to load, or would drop a protected session, changes nothing.
    async fn reload(
        &self,
        dbs: Vec<PathBuf>,
        embedded: bool,
        asn_dbs: Vec<PathBuf>,
        protect: &[IpAddr],
    ) -> Result<ReloadReply, ControlError> {
        if embedded && !dbs.is_empty() {
            return Err(ControlError::ReloadBoth);
        }
        // A second reload is refused rather than queued: a queue would hold each caller waiting
        // without saying why, and the operator can retry once the first has finished.
        let Ok(one_at_a_time) = self.reloading.clone().try_lock_owned() else {
            return Err(ControlError::ReloadBusy);
        };
        let (paths, format, limits, asn_paths) = {
            let state = self.lock();
            let paths = if embedded || !dbs.is_empty() {
                dbs
            } else {
                state.saved.dbs.clone()
            };
            let limits = geoip::Limits::for_table_mib(state.datapath.table_limit_mib());
            // The ASN files given, or the current ones re-read when ASN data is in the tables
            // (so an updated file is picked up); none when no ASN data is loaded.
            let asn_paths = if !asn_dbs.is_empty() {
                Some(asn_dbs)
            } else {
                state.asn.as_ref().map(|_| state.saved.asn_dbs.clone())
            };
            (paths, state.saved.db_format, limits, asn_paths)
        };
        let load_paths = paths.clone();
        let asn_load_paths = asn_paths.clone();
        // No files (given or current) means the embedded database.
        // The guard travels with the work: if this request is dropped mid-load, the load still
        // holds it until it ends; here it is held until the new tables are committed.
        let joined = tokio::task::spawn_blocking(move || {
            let db = geoip::load_source(&DatabaseSource::from_paths(&load_paths, format), &limits)
                .map_err(|e| e.to_string());
            let asn = asn_load_paths
                .map(|p| crate::commit::load_asn(&p).map_err(|e| e.to_string()))
                .transpose();
            (one_at_a_time, db.and_then(|db| Ok((db, asn?))))
        })
        .await;
        let (_one_at_a_time, loaded) = match joined {
            Ok((guard, db)) => (Some(guard), Ok(db)),
            Err(e) => (None, Err(e.to_string())),
        };
        let mut state = self.lock();
        let committed = loaded.and_then(|db| db).and_then(|(db, asn)| {
            let mut next = Next::unchanged(&state);
            next.db = Some((db, paths));
            next.asn = asn.zip(asn_paths);
            commit(&mut state, next, protect)
        });
        let stats = match committed {
            Ok(stats) => stats.expect("a reload installs tables"),
            Err(e) => {
                state.reload_failures += 1;
                return Err(ControlError::ReloadFailed(e));
            }
        };
        state.reloads += 1;
        if let Some(hub) = &self.events {
            hub.use_db(state.db.clone());
        }
        info!(
            prefixes_v4 = stats.prefixes_v4,
            prefixes_v6 = stats.prefixes_v6,
            "database reloaded"
        );
        Ok(ReloadReply {
            prefixes_v4: stats.prefixes_v4,
            prefixes_v6: stats.prefixes_v6,
            elapsed_ms: stats.elapsed.as_millis() as u64,
        })
    }

    /// SIGHUP: re-reads the current databases like `db reload` does, with the same validation
    /// and lockout check (for the sessions that made changes: a signal carries no caller). A bad
    /// file is logged and the current tables stay.
    pub async fn reload_on_sighup(&self) {
        if let Some(follower) = &self.follower {
            info!(source = %follower.source, "SIGHUP: checking the policy source now");
            follower.recheck();
            return;
        }
        info!("SIGHUP: re-reading the databases");
        let protect = self
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Err(e) = self.reload(Vec::new(), false, Vec::new(), &protect).await {
            warn!(error = %e, "SIGHUP reload failed");
        }
    }

    /// A reload requested over the socket, protecting the caller's session.
    pub(super) async fn reload_request(
        &self,
        dbs: Vec<PathBuf>,
        embedded: bool,
        asn_dbs: Vec<PathBuf>,
        caller: Option<IpAddr>,
        force: bool,
    ) -> Result<ReloadReply, ControlError> {
        let result = self
            .reload(dbs, embedded, asn_dbs, &protected(caller, force))
            .await?;
        self.remember(caller, force);
        Ok(result)
    }
}

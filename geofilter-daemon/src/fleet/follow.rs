//! One check of the source, and the loop that repeats it: read, validate whole, apply as one
//! change, record. See the parent module for the guarantees.

use std::{
    collections::hash_map::RandomState,
    hash::{BuildHasher as _, Hasher as _},
    net::IpAddr,
    path::Path,
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use tracing::{info, warn};

use super::{
    FirstRead, Follower, Reason, Refused,
    databases::{DbKey, db_key},
    document::{DbRef, PolicyDocument},
    source::{PolicySource, Read, Validators},
    store::{Revision, sha256_hex},
    unix_now,
    watch::FolderWatch,
};
use crate::{
    daemon::Daemon,
    geoip::{self, CompiledDb, DatabaseSource, Limits},
    policy::DesiredPolicy,
    rules::{Cidr, ExceptionAction},
    state::SavedState,
};

/// A revision that passed every check but lockout: its document, its database inputs (paths
/// with content hashes, computed once per revision), and the tables compiled from them
/// (`None`: the ones in force).
type Validated = (PolicyDocument, DbKey, Option<CompiledDb>);

/// The state to start from, when the source answered with a good revision before the filter
/// was attached.
pub struct FirstRevision {
    pub saved: SavedState,
    pub db: CompiledDb,
}

impl Follower {
    /// Reads and resolves the source once, before anything is attached, so the first attach
    /// already enforces the published revision. An error leaves the caller to start from the
    /// last good revision (the state file) — or, for `run --check`, to fail.
    pub fn first_revision(
        &self,
        saved: &SavedState,
        limits: &Limits,
    ) -> anyhow::Result<FirstRevision> {
        let now = unix_now();
        self.status().last_check = Some(now);
        let (bytes, validators) = match self.source.read(&Validators::default()) {
            Ok(Read::Document(bytes, validators)) => (bytes, validators),
            Ok(Read::NotModified) => {
                anyhow::bail!("{}: HTTP 304 to an unconditional GET", self.source)
            }
            Err(e) => {
                self.fail(Reason::Fetch, e.to_string());
                return Err(e.into());
            }
        };
        let sha = sha256_hex(&bytes);
        {
            let mut status = self.status();
            status.latest = Some(sha.clone());
            status.last_success = Some(now);
        }
        let (document, key, db) = self.validate(&bytes, limits).map_err(|(reason, e)| {
            self.fail(reason, e.clone());
            anyhow::anyhow!("the policy from {}: {e}", self.source)
        })?;
        let exempt = self.exempt(&document);
        let mut saved = saved.clone();
        saved.policy = compose(&document.policy, &exempt);
        saved.dbs = key.0.iter().map(|(path, _)| path.clone()).collect();
        saved.db_format = document.db_format;
        self.status().exempt = exempt;
        let revision = self.revision(&sha, validators, now);
        *self.first.lock().unwrap_or_else(|e| e.into_inner()) = Some(FirstRead {
            bytes,
            revision,
            document,
            key,
        });
        Ok(FirstRevision { saved, db })
    }

    /// Called once the filter runs with `saved`: records the first revision read, or takes the
    /// one restored from disk as the revision in force.
    pub fn started(&self, saved: &SavedState) {
        let first = self.first.lock().unwrap_or_else(|e| e.into_inner()).take();
        match first {
            Some(FirstRead {
                bytes,
                revision,
                document,
                key,
            }) => {
                self.record(&bytes, revision, document, key);
            }
            None => {
                let restored = self.store.load(&self.source.to_string());
                let document = restored.as_ref().and_then(|_| self.store.document());
                match &restored {
                    Some(r) => warn!(source = %self.source, revision = %r.sha256,
                        "enforcing the last good revision saved on disk until the source answers"),
                    None => warn!(source = %self.source,
                        "no revision of this policy was ever applied here: enforcing the saved \
                         state until the source answers"),
                }
                self.status().applied = restored;
                let key = db_key(&saved.dbs, saved.db_format);
                *self.applied.lock().unwrap_or_else(|e| e.into_inner()) =
                    document.map(|d| (d, key));
            }
        }
    }

    /// Checks the source over and over, until the process ends.
    pub fn follow(self: Arc<Self>, daemon: Arc<Daemon>) {
        let mut watch = None;
        let mut failures = 0u32;
        loop {
            if let PolicySource::File(path) = &self.source {
                watch = self.rewatch(path, watch);
            }
            self.wait(delay(self.interval, failures), watch.as_ref());
            if self.stopping.load(Ordering::Relaxed) {
                return;
            }
            match self.check(&daemon) {
                // A source that fails is not asked again at once. A refused revision does not
                // slow the polls (its fix must apply at the next one): `check` backs off its
                // retries on its own.
                Err(Reason::Fetch) => failures = failures.saturating_add(1),
                _ => failures = 0,
            }
        }
    }

    /// The watch on the policy file's folder, made again when the folder was replaced or could
    /// not be watched before (it did not exist yet). Without one, the file is re-read every
    /// interval.
    fn rewatch(&self, path: &Path, watch: Option<FolderWatch>) -> Option<FolderWatch> {
        if let Some(w) = watch.filter(FolderWatch::is_current) {
            return Some(w);
        }
        match FolderWatch::new(path) {
            Ok(w) => {
                // What changed before the watch existed is seen by reading now.
                self.recheck();
                Some(w)
            }
            Err(e) => {
                if !self.unwatched.swap(true, Ordering::Relaxed) {
                    warn!(error = %e, "cannot watch the policy file's folder; re-reading it \
                        every --policy-interval until it can be");
                }
                None
            }
        }
    }

    /// Sleeps `delay`, waking early for a change of the watched file or a SIGHUP.
    fn wait(&self, delay: Duration, watch: Option<&FolderWatch>) {
        let end = Instant::now() + delay;
        loop {
            if self.recheck.swap(false, Ordering::Relaxed) || self.stopping.load(Ordering::Relaxed)
            {
                return;
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            // In slices, so a SIGHUP is seen within 200 ms.
            let slice = left.min(Duration::from_millis(200));
            match watch {
                Some(w) if w.wait(slice) => return,
                Some(_) => {}
                None => std::thread::sleep(slice),
            }
        }
    }

    /// One check: read the source; apply a new revision. Returns why it failed.
    ///
    /// A refused revision is kept (with its validators, so polls of it cost 304s too) and not
    /// validated again on every poll: a bad document never (it cannot get better), one whose
    /// databases failed after a back-off. A different document is validated at once, so the
    /// fix of a bad revision applies at the next poll.
    fn check(&self, daemon: &Daemon) -> Result<(), Reason> {
        let now = unix_now();
        let refused = self
            .refused
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let known = {
            let mut status = self.status();
            status.last_check = Some(now);
            match &refused {
                Some(r) => r.validators.clone(),
                None => status
                    .applied
                    .as_ref()
                    .map(Revision::validators)
                    .unwrap_or_default(),
            }
        };
        let read = self.source.read(&known).map_err(|e| {
            self.fail(Reason::Fetch, e.to_string());
            Reason::Fetch
        })?;
        let (bytes, validators) = match (read, &refused) {
            (Read::Document(bytes, validators), _) => (bytes, validators),
            // Still the refused revision.
            (Read::NotModified, Some(r)) => (r.bytes.clone(), r.validators.clone()),
            (Read::NotModified, None) => {
                let mut status = self.status();
                status.last_success = Some(now);
                status.latest = status.applied.as_ref().map(|r| r.sha256.clone());
                status.last_error = None;
                drop(status);
                return self.follow_addresses(daemon);
            }
        };
        let sha = sha256_hex(&bytes);
        let unchanged = {
            let mut status = self.status();
            status.last_success = Some(now);
            status.latest = Some(sha.clone());
            status.applied.as_ref().is_some_and(|r| r.sha256 == sha)
        };
        if unchanged {
            *self.refused.lock().unwrap_or_else(|e| e.into_inner()) = None;
            self.status().last_error = None;
            return self.follow_addresses(daemon);
        }
        let attempts = match &refused {
            Some(r) if r.sha == sha => {
                if r.retry_at.is_none_or(|t| Instant::now() < t) {
                    return Err(r.reason);
                }
                r.attempts
            }
            _ => 0,
        };
        match self.apply(daemon, &bytes, &sha, validators.clone(), now) {
            Ok(()) => {
                *self.refused.lock().unwrap_or_else(|e| e.into_inner()) = None;
                Ok(())
            }
            Err(reason) => {
                let attempts = attempts + 1;
                let retry_at = (reason != Reason::Document)
                    .then(|| Instant::now() + delay(self.interval, attempts));
                *self.refused.lock().unwrap_or_else(|e| e.into_inner()) = Some(Refused {
                    bytes,
                    sha,
                    validators,
                    reason,
                    attempts,
                    retry_at,
                });
                Err(reason)
            }
        }
    }

    /// Validates the revision in `bytes` whole and applies it as one change.
    fn apply(
        &self,
        daemon: &Daemon,
        bytes: &[u8],
        sha: &str,
        validators: Validators,
        now: u64,
    ) -> Result<(), Reason> {
        let limits = daemon.db_limits();
        let applied_key = self.applied().map(|(_, key)| key);
        let (document, key, db) = match self.validate_against(bytes, &limits, applied_key.as_ref())
        {
            Ok(v) => v,
            Err((reason, e)) => {
                self.fail(reason, e);
                return Err(reason);
            }
        };
        let exempt = self.exempt(&document);
        let policy = compose(&document.policy, &exempt);
        let tables = db.map(|db| {
            let paths = key.0.iter().map(|(path, _)| path.clone()).collect();
            (db, paths, document.db_format)
        });
        if let Err(e) = daemon.apply_revision(policy, tables, &exempt) {
            self.fail(Reason::Apply, e);
            return Err(Reason::Apply);
        }
        self.status().exempt = exempt;
        info!(source = %self.source, revision = %sha, "policy revision applied");
        self.record(bytes, self.revision(sha, validators, now), document, key);
        Ok(())
    }

    /// Re-applies the revision in force when the source's addresses moved, so the new ones are
    /// passed too.
    fn follow_addresses(&self, daemon: &Daemon) -> Result<(), Reason> {
        let Some((document, _)) = self.applied() else {
            return Ok(());
        };
        let exempt = self.exempt(&document);
        if self.status().exempt == exempt {
            return Ok(());
        }
        if let Err(e) = daemon.apply_revision(compose(&document.policy, &exempt), None, &exempt) {
            self.fail(Reason::Apply, e);
            return Err(Reason::Apply);
        }
        info!(source = %self.source, addresses = ?exempt, "the policy source moved; passing its new addresses");
        self.status().exempt = exempt;
        Ok(())
    }

    /// The addresses the policy comes from — the source and every database URL's host — which
    /// the policy must never drop: a host must not cut itself off from its next revision.
    fn exempt(&self, document: &PolicyDocument) -> Vec<IpAddr> {
        let mut addrs = self.source.addresses();
        for db in &document.dbs {
            if let DbRef::Url { url, .. } = db {
                addrs.extend(super::source::url_addresses(url));
            }
        }
        addrs.sort();
        addrs.dedup();
        addrs
    }

    fn revision(&self, sha: &str, validators: Validators, now: u64) -> Revision {
        Revision {
            source: self.source.to_string(),
            sha256: sha.to_owned(),
            etag: validators.etag,
            last_modified: validators.last_modified,
            applied_at: now,
        }
    }

    /// Marks `revision` as in force and saves it with its document.
    fn record(&self, bytes: &[u8], revision: Revision, document: PolicyDocument, key: DbKey) {
        if let Err(e) = self.store.save(bytes, &revision) {
            warn!(error = %e, "saving the policy revision failed; it is enforced, but a restart \
                while the source is down restores the one before");
        }
        self.store.prune(key.0.iter().map(|(p, _)| p.as_path()));
        let mut status = self.status();
        status.last_change = Some(revision.applied_at);
        status.latest = Some(revision.sha256.clone());
        status.applied = Some(revision);
        status.last_error = None;
        drop(status);
        *self.applied.lock().unwrap_or_else(|e| e.into_inner()) = Some((document, key));
    }

    /// The document in force and its database inputs.
    fn applied(&self) -> Option<(PolicyDocument, DbKey)> {
        self.applied
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Parses `bytes` and compiles its databases (for the first start: always).
    fn validate(
        &self,
        bytes: &[u8],
        limits: &Limits,
    ) -> Result<(PolicyDocument, DbKey, CompiledDb), (Reason, String)> {
        let (document, key, db) = self.validate_against(bytes, limits, None)?;
        Ok((document, key, db.expect("no tables in force: compiled")))
    }

    /// Parses `bytes`, fetches its databases, and compiles them unless they are the ones in
    /// force (`applied`): then `None`, a policy-only change.
    fn validate_against(
        &self,
        bytes: &[u8],
        limits: &Limits,
        applied: Option<&DbKey>,
    ) -> Result<Validated, (Reason, String)> {
        let document = PolicyDocument::parse(bytes)
            .map_err(|e| (Reason::Document, format!("{}: {e}", self.source)))?;
        let database = |e: String| (Reason::Database, e);
        let paths = document
            .dbs
            .iter()
            .map(|db| match db {
                DbRef::Path(path) => Ok(path.clone()),
                DbRef::Url { url, sha256 } => {
                    self.cached(url, sha256.as_deref(), document.db_format)
                }
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(database)?;
        let key = db_key(&paths, document.db_format);
        if applied == Some(&key) {
            return Ok((document, key, None));
        }
        let db = geoip::load_source(
            &DatabaseSource::from_paths(&paths, document.db_format),
            limits,
        )
        .map_err(|e| database(e.to_string()))?;
        Ok((document, key, Some(db)))
    }
}

/// The document's policy with the source's addresses passed (a pass exception overrides any
/// the document sets for them).
fn compose(policy: &DesiredPolicy, exempt: &[IpAddr]) -> DesiredPolicy {
    let mut policy = policy.clone();
    pass_addresses(&mut policy, exempt);
    policy
}

/// Adds a pass exception for each of `addresses` to `policy`.
pub fn pass_addresses(policy: &mut DesiredPolicy, addresses: &[IpAddr]) {
    for &addr in addresses {
        let len = if addr.is_ipv4() { 32 } else { 128 };
        policy
            .exceptions
            .insert(Cidr { addr, len }, ExceptionAction::Pass);
    }
}

/// How long to wait before the next check: the interval ±10 % (a fleet started together must
/// not poll in lockstep); after `failures` failed reads in a row, the interval doubled per
/// failure up to 8 times it.
fn delay(interval: Duration, failures: u32) -> Duration {
    let base = match failures {
        0 => interval,
        n => interval.saturating_mul(1 << (n - 1).min(3)),
    };
    let random = RandomState::new().build_hasher().finish();
    // A factor in [0.9, 1.1).
    let factor = 0.9 + (random % 1000) as f64 / 5000.0;
    base.mul_f64(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_are_jittered_and_back_off_up_to_eight_intervals() {
        let i = Duration::from_secs(10);
        for _ in 0..100 {
            let d = delay(i, 0);
            assert!(
                d >= Duration::from_secs(9) && d < Duration::from_secs(11),
                "{d:?}"
            );
        }
        let spread: std::collections::BTreeSet<_> = (0..50).map(|_| delay(i, 0)).collect();
        assert!(spread.len() > 10, "no jitter: {spread:?}");
        assert!(delay(i, 2) >= Duration::from_secs(18));
        for failures in [4, 10, u32::MAX] {
            let d = delay(i, failures);
            assert!(
                d >= Duration::from_secs(72) && d < Duration::from_secs(88),
                "{d:?}"
            );
        }
    }

    #[test]
    fn the_source_is_passed_whatever_the_document_says() {
        let mut policy = DesiredPolicy::default();
        let addr: IpAddr = "192.0.2.1".parse().unwrap();
        policy
            .exceptions
            .insert(Cidr { addr, len: 32 }, ExceptionAction::Drop);
        let composed = compose(&policy, &[addr]);
        assert_eq!(
            composed.exceptions[&Cidr { addr, len: 32 }],
            ExceptionAction::Pass
        );
    }
}

//! Fleet mode (`geofilter run --policy SOURCE`): the desired state comes from one published
//! policy document that many hosts follow, through engines operators already run (a Kubernetes
//! ConfigMap, any static HTTP server or object store, a file that config management writes),
//! not a control plane of our own.
//!
//! A [`Follower`] reads the source (a watched file, or a URL polled conditionally), validates
//! every new revision whole (document, databases, lockout) and applies it as one change through
//! the daemon's single gate ([`crate::commit`]). Whatever goes wrong — a bad document, a bad
//! database, a dead source — changes nothing: the last good revision stays enforced, the error
//! is counted and shown, and the revision is kept on disk ([`store`]) so a restart while the
//! source is down enforces it too.

mod databases;
mod document;
mod follow;
mod source;
mod store;
mod watch;

use std::{
    collections::BTreeMap,
    net::IpAddr,
    sync::{Mutex, MutexGuard, atomic::AtomicBool},
    time::{Duration, SystemTime},
};

pub use self::{
    document::{DbRef, DocumentError, PolicyDocument},
    follow::{FirstRevision, pass_addresses},
    source::{PolicySource, Validators},
    store::{Revision, Store, sha256_hex},
};

/// `--policy-interval`'s default, in seconds.
pub const DEFAULT_INTERVAL_S: u64 = 30;

/// Why a check failed, for the `geofilter_policy_errors_total{reason}` counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reason {
    /// The source could not be read (unreachable, timeout, HTTP error, missing file).
    Fetch,
    /// The document is not a valid policy.
    Document,
    /// A database it names could not be fetched, failed its SHA-256 or did not load.
    Database,
    /// The revision was refused when applied (lockout) or the kernel refused it.
    Apply,
}

impl Reason {
    pub const fn name(self) -> &'static str {
        match self {
            Reason::Fetch => "fetch",
            Reason::Document => "document",
            Reason::Database => "database",
            Reason::Apply => "apply",
        }
    }
}

/// What the follower knows, for `status`, metrics and `/ready`.
#[derive(Clone, Debug, Default)]
pub struct FollowStatus {
    /// The revision in force (restored from disk until the source answers).
    pub applied: Option<Revision>,
    /// SHA-256 of the last document this process read from the source, good or bad.
    pub latest: Option<String>,
    /// Unix seconds of the last check, the last successful read, and the last applied change.
    pub last_check: Option<u64>,
    pub last_success: Option<u64>,
    pub last_change: Option<u64>,
    pub last_error: Option<String>,
    pub errors: BTreeMap<Reason, u64>,
    /// The source's addresses, passed whatever the policy says.
    pub exempt: Vec<IpAddr>,
}

impl FollowStatus {
    /// The desired revision is the one enforced: the last document read from the source is the
    /// one applied. False before the first read (a restart that restored the last good revision
    /// while the source is down) and while the latest document is refused.
    pub fn ready(&self) -> bool {
        match (&self.applied, &self.latest) {
            (Some(applied), Some(latest)) => &applied.sha256 == latest,
            _ => false,
        }
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// The first revision, read and validated before the filter was attached.
struct FirstRead {
    bytes: Vec<u8>,
    revision: Revision,
    document: PolicyDocument,
    key: databases::DbKey,
}

/// A revision read from the source and refused, kept so polls of it cost a 304 and its
/// databases are not fetched again on every poll.
#[derive(Clone, Debug)]
struct Refused {
    bytes: Vec<u8>,
    sha: String,
    validators: Validators,
    reason: Reason,
    /// Validations of it so far.
    attempts: u32,
    /// When to validate it again (`None`: never; a bad document cannot get better).
    retry_at: Option<std::time::Instant>,
}

/// Follows one policy source for the daemon.
pub struct Follower {
    pub source: PolicySource,
    interval: Duration,
    store: Store,
    status: Mutex<FollowStatus>,
    /// Set by SIGHUP: check now instead of at the next interval.
    recheck: AtomicBool,
    /// Set when the daemon stops: the follower returns after the check in flight.
    stopping: AtomicBool,
    /// The file's folder could not be watched (said once).
    unwatched: AtomicBool,
    /// The first revision, read before the filter was attached; recorded once it is in force.
    first: Mutex<Option<FirstRead>>,
    /// The latest revision read, while it is refused.
    refused: Mutex<Option<Refused>>,
    /// The document in force and the database inputs its tables came from: to recompose when
    /// the source's addresses change, and to tell a policy-only revision from one with new
    /// databases.
    applied: Mutex<Option<(PolicyDocument, databases::DbKey)>>,
}

impl Follower {
    pub fn new(source: PolicySource, interval: Duration, store: Store) -> Self {
        Self {
            source,
            interval,
            store,
            status: Mutex::default(),
            recheck: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            unwatched: AtomicBool::new(false),
            first: Mutex::default(),
            applied: Mutex::default(),
            refused: Mutex::default(),
        }
    }

    pub fn status(&self) -> MutexGuard<'_, FollowStatus> {
        self.status.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// SIGHUP: check the source now.
    pub fn recheck(&self) {
        self.recheck
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Ends [`Follower::follow`] after the check in flight.
    pub fn stop(&self) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    fn fail(&self, reason: Reason, error: String) {
        tracing::warn!(source = %self.source, reason = reason.name(), %error,
            "policy revision not applied; the last good revision stays enforced");
        let mut status = self.status();
        *status.errors.entry(reason).or_default() += 1;
        status.last_error = Some(format!("{}: {error}", reason.name()));
    }
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

//! systemd readiness: the `sd_notify(3)` datagram protocol, so a `Type=notify` unit is reported
//! started only once every interface is filtering, shows the policy in `systemctl status`, and
//! knows a stop is under way.
//!
//! The protocol is one Unix datagram per notification to the socket named by `NOTIFY_SOCKET` (a
//! path, or `@name` for the abstract namespace), holding newline-separated `VAR=value`
//! assignments (`READY=1`, `STATUS=...`, `STOPPING=1`). Without `NOTIFY_SOCKET` (not under
//! systemd) every call does nothing, as `sd_notify` does. A few lines over std rather than a
//! crate: the protocol is the whole of it.

use std::{
    collections::BTreeSet,
    io,
    os::{
        linux::net::SocketAddrExt as _,
        unix::net::{SocketAddr, UnixDatagram},
    },
    path::Path,
};

use tracing::warn;

use crate::{
    country::code_str,
    datapath::XdpModeChoice,
    geoip::CompiledDb,
    policy::{DesiredPolicy, Mode, UnknownAction},
    rules::PortRange,
};

/// The environment variable systemd sets for a `Type=notify` service.
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// Where notifications go; [`Notifier::disabled`] when not run by a service manager.
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
}

impl Notifier {
    /// A notifier that sends nothing.
    pub fn disabled() -> Self {
        Self { target: None }
    }

    /// The notifier `NOTIFY_SOCKET` names. A value that is no socket address is logged and
    /// ignored: a malformed environment must not stop the filter from starting (systemd would
    /// then time the start out, and say why).
    pub fn from_env() -> Self {
        let Some(value) = std::env::var_os(NOTIFY_SOCKET) else {
            return Self::disabled();
        };
        match Self::open(Path::new(&value)) {
            Ok(notifier) => notifier,
            Err(e) => {
                warn!(notify_socket = %Path::new(&value).display(), error = %e, "not notifying systemd");
                Self::disabled()
            }
        }
    }

    fn open(value: &Path) -> io::Result<Self> {
        let text = value.to_string_lossy();
        // sd_notify(3): an absolute path, or `@` for a socket in the abstract namespace.
        let addr = if let Some(name) = text.strip_prefix('@') {
            SocketAddr::from_abstract_name(name.as_bytes())?
        } else if value.is_absolute() {
            SocketAddr::from_pathname(value)?
        } else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "neither an absolute path nor an @abstract name",
            ));
        };
        Ok(Self {
            target: Some((UnixDatagram::unbound()?, addr)),
        })
    }

    /// Sends one notification (`READY=1`, `STATUS=...`: one assignment per line). A failure is
    /// logged, never fatal: the filter matters more than the supervisor's view of it.
    pub fn send(&self, assignments: &[&str]) {
        let Some((socket, addr)) = &self.target else {
            return;
        };
        let message = assignments.join("\n");
        if let Err(e) = socket.send_to_addr(message.as_bytes(), addr) {
            warn!(error = %e, message, "notifying systemd failed");
        }
    }

    /// `READY=1` with the status line: every interface is filtering.
    pub fn ready(&self, status: &str) {
        self.send(&["READY=1", &status_line(status)]);
    }

    /// A new status line for `systemctl status`.
    pub fn status(&self, status: &str) {
        self.send(&[&status_line(status)]);
    }

    /// `STOPPING=1`: shutdown has begun.
    pub fn stopping(&self, status: &str) {
        self.send(&["STOPPING=1", &status_line(status)]);
    }
}

/// `STATUS=` takes one line: a newline would start another assignment.
fn status_line(status: &str) -> String {
    format!("STATUS={}", status.replace('\n', " "))
}

/// One line saying what the filter does: the interfaces, the policy and the database, e.g.
/// `eth0 (native): deny RU,BY; unknown pass; 2 exceptions; all ports; 512340 IPv4 + 98765 IPv6
/// prefixes`. Shown by `systemctl status` and `run --check`.
pub fn summary<'a>(
    interfaces: impl IntoIterator<Item = (&'a str, XdpModeChoice)>,
    policy: &DesiredPolicy,
    db: &CompiledDb,
) -> String {
    let interfaces: Vec<String> = interfaces
        .into_iter()
        .map(|(name, mode)| format!("{name} ({})", mode_name(mode)))
        .collect();
    let mode = match policy.mode {
        Mode::Deny => "deny",
        Mode::AllowOnly => "allow-only",
    };
    let countries: Vec<String> = policy.countries.iter().map(|&c| code_str(c)).collect();
    let countries = if countries.is_empty() {
        "no countries".to_owned()
    } else {
        countries.join(",")
    };
    let unknown = match policy.unknown {
        UnknownAction::Pass => "pass",
        UnknownAction::Drop => "drop",
    };
    let ports = if policy.ports.is_everything() {
        "all ports".to_owned()
    } else {
        let list = |set: &BTreeSet<PortRange>| {
            set.iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        match (policy.ports.only.is_empty(), policy.ports.exempt.is_empty()) {
            (false, true) => format!("only {}", list(&policy.ports.only)),
            (true, false) => format!("exempt {}", list(&policy.ports.exempt)),
            _ => format!(
                "only {} exempt {}",
                list(&policy.ports.only),
                list(&policy.ports.exempt)
            ),
        }
    };
    let monitor = if policy.monitor {
        "MONITOR ONLY (nothing dropped); "
    } else {
        ""
    };
    format!(
        "{}: {monitor}{mode} {countries}; unknown {unknown}; {} exceptions; {ports}; {} IPv4 + {} \
         IPv6 prefixes",
        interfaces.join(", "),
        policy.exceptions.len(),
        db.v4.len(),
        db.v6.len()
    )
}

fn mode_name(mode: XdpModeChoice) -> &'static str {
    match mode {
        XdpModeChoice::Native => "native",
        XdpModeChoice::Skb => "skb",
        XdpModeChoice::Auto => "auto",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_arrive_as_one_datagram_of_assignments() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("notify.sock");
        let listener = UnixDatagram::bind(&path).expect("binding the notify socket");
        let notifier = Notifier::open(&path).expect("opening the notifier");
        notifier.ready("eth0 (native):\ndeny RU");
        notifier.stopping("bye");
        let mut buf = [0u8; 256];
        let n = listener.recv(&mut buf).expect("ready datagram");
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=eth0 (native): deny RU");
        let n = listener.recv(&mut buf).expect("stopping datagram");
        assert_eq!(&buf[..n], b"STOPPING=1\nSTATUS=bye");
    }

    #[test]
    fn abstract_and_relative_addresses() {
        let name = format!("geofilter-notify-test-{}", std::process::id());
        let listener = UnixDatagram::bind_addr(
            &SocketAddr::from_abstract_name(name.as_bytes()).expect("abstract address"),
        )
        .expect("binding an abstract socket");
        Notifier::open(Path::new(&format!("@{name}")))
            .expect("abstract notifier")
            .status("up");
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).expect("status datagram");
        assert_eq!(&buf[..n], b"STATUS=up");
        assert!(Notifier::open(Path::new("relative/notify.sock")).is_err());
        // Not under systemd: nothing to send to, and nothing fails.
        Notifier::disabled().ready("x");
    }
}

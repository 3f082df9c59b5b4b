//! The pin-root decision as a pure function of what was observed, so that host tests cover
//! every row (the observing and mounting is in [`super::mount`]).

use super::Persistence;

/// What [`plan`] decides from.
#[derive(Debug, Clone, Copy)]
pub struct Facts {
    /// The nearest ancestor in another mount namespace whose `/sys/fs/bpf` we can reach through
    /// `/proc/PID/root` (None: we are the outermost we can see, or it cannot be inspected).
    pub outer: Option<u32>,
    /// Some ancestor is in another mount namespace, reachable or not.
    pub own_namespace: bool,
    /// `/sys/fs/bpf` here is a bpffs.
    pub ours_mounted: bool,
    /// The outer `/sys/fs/bpf` is a bpffs.
    pub outer_mounted: bool,
    /// Ours and the outer one are the same bpffs instance (same device).
    pub same_instance_as_outer: bool,
    /// Our `/sys/fs/bpf` mount receives propagation from a mount outside this namespace
    /// (`master:` in /proc/self/mountinfo): it was mounted outside us, as in a systemd unit's
    /// namespace, which cannot look into PID 1 without CAP_SYS_PTRACE.
    pub ours_propagated: bool,
}

/// What to do about the bpffs at `/sys/fs/bpf`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Pin at the configured path; mount a bpffs there first when `mount`.
    Here {
        mount: bool,
        persistence: Persistence,
    },
    /// Pin into the bpffs of process `pid`'s mount namespace; mount one there first when `mount`.
    Outer { pid: u32, mount: bool },
}

/// The decision, as a pure function of what was observed (host tests cover every row).
pub fn plan(f: Facts) -> Plan {
    if !f.own_namespace {
        return Plan::Here {
            mount: !f.ours_mounted,
            persistence: Persistence::Host,
        };
    }
    if f.ours_mounted && (f.same_instance_as_outer || f.ours_propagated) {
        // A container given the host's /sys/fs/bpf, or a unit whose private namespace still
        // sees the host's mount: the pins are the host's already.
        return Plan::Here {
            mount: false,
            persistence: Persistence::Host,
        };
    }
    if let Some(pid) = f.outer {
        return Plan::Outer {
            pid,
            mount: !f.outer_mounted,
        };
    }
    Plan::Here {
        mount: !f.ours_mounted,
        persistence: Persistence::PrivateNamespace,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Facts for a daemon that is in the outermost namespace (`outer: None`, no own namespace)
    /// or in one of its own under process 42.
    fn facts(own_namespace: bool, ours: bool, outer_reachable: bool, same: bool) -> Facts {
        Facts {
            outer: outer_reachable.then_some(42),
            own_namespace,
            ours_mounted: ours,
            outer_mounted: same,
            same_instance_as_outer: same,
            ours_propagated: false,
        }
    }

    #[test]
    fn host_namespace_mounts_when_missing() {
        assert_eq!(
            plan(facts(false, false, false, false)),
            Plan::Here {
                mount: true,
                persistence: Persistence::Host
            }
        );
        assert_eq!(
            plan(facts(false, true, false, false)),
            Plan::Here {
                mount: false,
                persistence: Persistence::Host
            }
        );
    }

    #[test]
    fn private_namespace_sharing_the_hosts_bpffs_pins_here() {
        assert_eq!(
            plan(facts(true, true, true, true)),
            Plan::Here {
                mount: false,
                persistence: Persistence::Host
            }
        );
    }

    #[test]
    fn a_units_namespace_seeing_the_hosts_mount_pins_here() {
        // systemd: PID 1 is out of reach, but the mount is the host's (a slave of it).
        let unit = Facts {
            ours_propagated: true,
            ..facts(true, true, false, false)
        };
        assert_eq!(
            plan(unit),
            Plan::Here {
                mount: false,
                persistence: Persistence::Host
            }
        );
    }

    #[test]
    fn ip_netns_exec_pins_into_the_outer_namespace() {
        // ip netns exec on a fresh host: a new sysfs hides /sys/fs/bpf, and the outer namespace
        // has no bpffs either, so it is mounted there.
        assert_eq!(
            plan(facts(true, false, true, false)),
            Plan::Outer {
                pid: 42,
                mount: true
            }
        );
        let host_has_one = Facts {
            outer_mounted: true,
            ..facts(true, false, true, false)
        };
        assert_eq!(
            plan(host_has_one),
            Plan::Outer {
                pid: 42,
                mount: false
            }
        );
        // A private bpffs of our own is not where a filter should live either.
        assert!(matches!(
            plan(facts(true, true, true, false)),
            Plan::Outer { .. }
        ));
    }

    #[test]
    fn unreachable_outer_namespace_is_private_and_said_so() {
        assert_eq!(
            plan(facts(true, false, false, false)),
            Plan::Here {
                mount: true,
                persistence: Persistence::PrivateNamespace
            }
        );
    }
}

//! Building a dispatcher with a new set of components and swapping it onto the interface
//! (protocol.org: "Adding or removing programs from an existing dispatcher"), the way libxdp's
//! `xdp_multiprog__generate`, `__pin` and `__attach` do it.

use std::{
    fs,
    os::{
        fd::{AsFd as _, AsRawFd as _},
        unix::fs::DirBuilderExt as _,
    },
};

use aya::{
    Ebpf, EbpfLoader,
    programs::{Extension, Xdp, links::FdLink},
};

use super::{
    Component, Config, Current, DISPATCHER_NAME, DispatcherError, MAGIC, OnInterface, RETVAL,
    SLOTS, VERSION, XdpLock, ifindex, inspect, io_err, pin_dir, prog_err, program_info, unpin_dir,
};
use crate::{datapath::netlink, paths};

/// `XDP_PASS`: geofilter's only chain call action. A packet it passes goes on to the next
/// program; one it drops stops there (libxdp's default for programs that state none).
const XDP_PASS: u32 = 2;

/// Where geofilter's program went.
#[derive(Debug, Clone, Copy)]
pub struct Joined {
    pub slot: usize,
    /// [`netlink::FLAG_DRV`] or [`netlink::FLAG_SKB`].
    pub mode_flag: u32,
}

/// One slot of the dispatcher to build.
enum Planned<'a> {
    Existing(&'a Component),
    Geofilter { priority: u32 },
}

impl Planned<'_> {
    fn priority(&self) -> u32 {
        match self {
            Self::Existing(c) => c.priority,
            Self::Geofilter { priority } => *priority,
        }
    }
    fn name(&self) -> &str {
        match self {
            Self::Existing(c) => &c.name,
            Self::Geofilter { .. } => geofilter_common::maps::EXT_PROGRAM,
        }
    }
}

/// Puts geofilter's program `ext` into the dispatcher on `iface` at `priority`, in place of any
/// geofilter program already there (adoption by a restarted daemon) and beside every other
/// component; creates a dispatcher (trying `modes` in turn) when nothing is attached. The others
/// keep their programs, priorities and chain actions; the swap is one netlink replace.
pub fn join(
    ext: &mut Extension,
    iface: &str,
    priority: u32,
    modes: &[u32],
) -> Result<Joined, DispatcherError> {
    let _lock = XdpLock::acquire(iface)?;
    let current = match inspect(iface)? {
        OnInterface::Nothing => None,
        OnInterface::Dispatcher(current) => Some(current),
        OnInterface::Other { name, id } => {
            return Err(DispatcherError::NotDispatcher {
                iface: iface.to_owned(),
                name,
                id,
            });
        }
    };
    let mut plan: Vec<Planned> = current
        .iter()
        .flat_map(|c| &c.components)
        .filter(|c| !c.is_geofilter())
        .map(Planned::Existing)
        .collect();
    plan.push(Planned::Geofilter { priority });
    let modes = match &current {
        Some(c) => vec![c.attached.mode_flag],
        None => modes.to_vec(),
    };
    rebuild(iface, current.as_ref(), plan, Some(ext), &modes)
}

/// Takes geofilter's program out of the dispatcher on `iface`, leaving every other component
/// running; removes the dispatcher when geofilter was the last. Nothing to do is not an error.
pub fn leave(iface: &str) -> Result<(), DispatcherError> {
    let _lock = XdpLock::acquire(iface)?;
    let OnInterface::Dispatcher(current) = inspect(iface)? else {
        return Ok(());
    };
    if !current.components.iter().any(Component::is_geofilter) {
        return Ok(());
    }
    let plan: Vec<Planned> = current
        .components
        .iter()
        .filter(|c| !c.is_geofilter())
        .map(Planned::Existing)
        .collect();
    if plan.is_empty() {
        let old = program_info(iface, current.attached.prog_id)?
            .fd()
            .map_err(prog_err(iface, "opening the dispatcher"))?;
        netlink::set(
            ifindex(iface)?,
            -1,
            Some(old.as_fd().as_raw_fd()),
            current.attached.mode_flag,
        )
        .map_err(io_err(iface, "detaching the dispatcher"))?;
        unpin_dir(&current.dir);
        return Ok(());
    }
    rebuild(
        iface,
        Some(&current),
        plan,
        None,
        &[current.attached.mode_flag],
    )
    .map(drop)
}

fn dispatcher_object(iface: &str) -> Result<std::path::PathBuf, DispatcherError> {
    let candidates = paths::libxdp_dispatcher_candidates();
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| DispatcherError::NoObject {
            tried: candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
        .inspect_err(|_| tracing::error!(%iface, "no libxdp dispatcher object"))
}

/// libxdp's dispatcher object loaded (verified) with `config`.
fn load_dispatcher(iface: &str, config: &Config) -> Result<Ebpf, DispatcherError> {
    let path = dispatcher_object(iface)?;
    let mut object = EbpfLoader::new()
        .override_global("conf", config, true)
        .load_file(&path)
        .map_err(|source| DispatcherError::Load {
            iface: iface.to_owned(),
            path: path.clone(),
            source: Box::new(source),
        })?;
    dispatcher_program(iface, &mut object)?
        .load()
        .map_err(prog_err(iface, "loading the dispatcher"))?;
    Ok(object)
}

fn dispatcher_program<'a>(
    iface: &str,
    object: &'a mut Ebpf,
) -> Result<&'a mut Xdp, DispatcherError> {
    object
        .program_mut(DISPATCHER_NAME)
        .ok_or_else(|| {
            prog_err(iface, "finding xdp_dispatcher")(aya::programs::ProgramError::NotLoaded)
        })?
        .try_into()
        .map_err(prog_err(iface, "the dispatcher's type"))
}

/// A dispatcher with geofilter alone in slot 0, attached nowhere, for `cargo xtask bench` to
/// test-run (the per-packet cost of the dispatcher's call and chain check).
#[cfg(feature = "test-helpers")]
pub fn standalone(ext: &mut Extension) -> Result<Ebpf, DispatcherError> {
    let mut config = Config {
        magic: MAGIC,
        dispatcher_version: VERSION,
        num_progs_enabled: 1,
        ..Config::default()
    };
    config.run_prios[0] = super::DEFAULT_PRIORITY;
    config.chain_call_actions[0] = 1 << XDP_PASS | 1 << RETVAL;
    let mut object = load_dispatcher("(none)", &config)?;
    let fd = dispatcher_program("(none)", &mut object)?
        .fd()
        .map_err(prog_err("(none)", "the dispatcher's fd"))?
        .try_clone()
        .map_err(io_err("(none)", "dup"))?;
    ext.load(fd, "prog0")
        .map_err(prog_err("(none)", "loading geofilter into prog0"))?;
    // The link stays in `ext`'s link table: the slot is filled while `ext` lives.
    ext.attach()
        .map_err(prog_err("(none)", "attaching to prog0"))?;
    Ok(object)
}

/// Loads a dispatcher for `plan` (sorted as libxdp sorts: priority, then name), attaches each
/// component to its slot, pins the lot under libxdp's folder, swaps it in for `current` (or
/// attaches it where nothing runs) and unpins `current`. On any failure before the swap the new
/// pins are removed and the interface runs what it ran.
fn rebuild(
    iface: &str,
    current: Option<&Current>,
    mut plan: Vec<Planned>,
    mut ext: Option<&mut Extension>,
    modes: &[u32],
) -> Result<Joined, DispatcherError> {
    plan.sort_by(|a, b| (a.priority(), a.name()).cmp(&(b.priority(), b.name())));
    if plan.len() > SLOTS {
        return Err(DispatcherError::Full {
            iface: iface.to_owned(),
        });
    }
    let mut config = Config {
        magic: MAGIC,
        dispatcher_version: VERSION,
        num_progs_enabled: plan.len() as u8,
        ..Config::default()
    };
    for (slot, p) in plan.iter().enumerate() {
        config.run_prios[slot] = p.priority();
        (config.chain_call_actions[slot], config.program_flags[slot]) = match p {
            Planned::Existing(c) => (c.chain_call_actions | 1 << RETVAL, c.program_flags),
            Planned::Geofilter { .. } => (1 << XDP_PASS | 1 << RETVAL, 0),
        };
    }
    let mut object = load_dispatcher(iface, &config)?;
    let dispatcher = dispatcher_program(iface, &mut object)?;
    let dispatcher_fd = dispatcher
        .fd()
        .map_err(prog_err(iface, "the dispatcher's fd"))?;
    let new_id = dispatcher
        .info()
        .map_err(prog_err(iface, "the dispatcher's id"))?
        .id();
    let index = ifindex(iface)?;
    let dir = pin_dir(index, new_id);
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(io_err(iface, "creating the dispatcher's pin folder"))?;
    let attached = (|| {
        let mut our_slot = None;
        for (slot, p) in plan.iter().enumerate() {
            let func = format!("prog{slot}");
            let slot_err =
                |what: &str| prog_err(iface, format!("{what} into slot {func} ({})", p.name()));
            let mut foreign;
            let program: &mut Extension = match p {
                Planned::Existing(c) => {
                    foreign =
                        Extension::from_pin(&c.pin).map_err(slot_err("opening the program"))?;
                    &mut foreign
                }
                Planned::Geofilter { .. } => {
                    our_slot = Some(slot);
                    ext.as_deref_mut()
                        .expect("a geofilter slot comes with its program")
                }
            };
            // The program is loaded against the first dispatcher it joins (the kernel verifies
            // it for that slot); later ones are extra attachments to other dispatchers (5.10+).
            let link = if program.fd().is_err() {
                program
                    .load(
                        dispatcher_fd
                            .try_clone()
                            .map_err(|e| io_err(iface, "dup")(e))?,
                        &func,
                    )
                    .map_err(slot_err("loading geofilter"))?;
                program.attach()
            } else {
                program.attach_to_program(dispatcher_fd, &func)
            }
            .map_err(slot_err("attaching"))?;
            let link = FdLink::from(
                program
                    .take_link(link)
                    .map_err(slot_err("taking the link"))?,
            );
            link.pin(dir.join(format!("{func}-link")))
                .map_err(|e| io_err(iface, "pinning a component link")(std::io::Error::other(e)))?;
            program.pin(dir.join(format!("{func}-prog"))).map_err(|e| {
                io_err(iface, "pinning a component program")(std::io::Error::other(e))
            })?;
        }
        let expected = match current {
            Some(c) => Some(
                program_info(iface, c.attached.prog_id)?
                    .fd()
                    .map_err(prog_err(iface, "opening the attached dispatcher"))?,
            ),
            None => None,
        };
        let expected_fd = expected.as_ref().map(|f| f.as_fd().as_raw_fd());
        let mut last = None;
        for &mode in modes {
            match netlink::set(index, dispatcher_fd.as_fd().as_raw_fd(), expected_fd, mode) {
                Ok(()) => {
                    return Ok(Joined {
                        slot: our_slot.unwrap_or(usize::MAX),
                        mode_flag: mode,
                    });
                }
                Err(e) => last = Some(e),
            }
        }
        Err(io_err(iface, "attaching the dispatcher")(
            last.unwrap_or_else(|| std::io::Error::other("no XDP mode to try")),
        ))
    })();
    match attached {
        Ok(joined) => {
            if let Some(c) = current {
                unpin_dir(&c.dir);
            }
            Ok(joined)
        }
        Err(e) => {
            unpin_dir(&dir);
            Err(e)
        }
    }
}

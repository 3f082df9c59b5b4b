//! Attaching the program to interfaces, and pinning so the filter outlives the daemon process.

use std::{fs, path::Path};

use aya::{
    maps::{Array, ArrayOfMaps, Map, MapData},
    programs::{
        Xdp, XdpMode,
        links::{FdLink, PinnedLink},
        xdp::XdpLink,
    },
};
use geofilter_common::{POLICY_SCHEMA, Policy, maps as names};
use tracing::warn;

use super::{Datapath, DatapathError, dispatcher, map_err, netlink};
use crate::paths::PinLayout;

/// `--xdp-mode`.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum XdpModeChoice {
    /// In the driver, before any socket buffer exists: the fast path.
    Native,
    /// Generic XDP in the stack: works on every interface, ~40 ns/packet slower.
    Skb,
    /// Native, falling back to skb mode (with a warning) where the driver has no XDP support.
    #[default]
    Auto,
}

/// `--xdp-attach`, or `xdp_attach` in the config and state file.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum XdpAttach {
    /// In a slot of libxdp's dispatcher, beside other libxdp programs.
    Dispatcher,
    /// Alone, with a BPF link.
    Exclusive,
    /// A dispatcher slot where a libxdp dispatcher runs, exclusive otherwise.
    #[default]
    Auto,
}

/// How to attach: `--xdp-mode`, `--xdp-attach`, `--xdp-priority`, `--force`.
#[derive(Clone, Copy, Debug)]
pub struct AttachOptions {
    pub mode: XdpModeChoice,
    pub attach: XdpAttach,
    pub priority: u32,
    pub force: bool,
}

/// How an attachment holds the interface.
enum Hold {
    /// geofilter's own pinned BPF link.
    Link(PinnedLink),
    /// A slot in libxdp's dispatcher; the pins are libxdp's, under its folder. The marker is
    /// geofilter's record of it ([`PinLayout::dispatched`]).
    Dispatcher { marker: std::path::PathBuf },
}

/// One interface the program is attached to. The link is pinned (by geofilter, or in libxdp's
/// dispatcher folder), so it stays attached if the daemon dies; [`Datapath::detach`] removes it.
pub struct Attachment {
    pub iface: String,
    pub mode: XdpModeChoice,
    hold: Hold,
}

impl Attachment {
    /// Whether geofilter runs in a dispatcher slot here.
    pub fn in_dispatcher(&self) -> bool {
        matches!(self.hold, Hold::Dispatcher { .. })
    }
}

fn pin_err(
    what: &'static str,
    path: &Path,
) -> impl FnOnce(std::io::Error) -> DatapathError + use<> {
    let path = path.to_path_buf();
    move |source| DatapathError::Pin { what, path, source }
}

/// Creates the pin folders; returns whether an earlier daemon's maps are there to adopt, after
/// checking that their layout is the one this program was built for.
pub(super) fn prepare_pin_dirs(layout: &PinLayout) -> Result<bool, DatapathError> {
    super::bpffs::ensure_on_bpffs(&layout.root)?;
    for dir in [layout.maps(), layout.links()] {
        fs::create_dir_all(&dir).map_err(pin_err("creating", &dir))?;
    }
    let policy_pin = layout.map(names::POLICY);
    if !policy_pin.exists() {
        return Ok(false);
    }
    let outer = MapData::from_pin(&policy_pin).map_err(map_err(names::POLICY))?;
    let outer: ArrayOfMaps<MapData, MapData> = Map::from_map_data(outer)
        .and_then(Map::try_into)
        .map_err(map_err(names::POLICY))?;
    let inner = outer.get(&0, 0).map_err(map_err(names::POLICY))?;
    let value_size = inner.info().map_err(map_err(names::POLICY))?.value_size() as usize;
    if value_size != size_of::<Policy>() {
        return Err(DatapathError::Schema { found: 0 });
    }
    let inner: Array<MapData, Policy> = Map::from_map_data(inner)
        .and_then(Map::try_into)
        .map_err(map_err(names::POLICY))?;
    let schema = inner.get(&0, 0).map_err(map_err(names::POLICY))?.schema;
    if schema != POLICY_SCHEMA {
        return Err(DatapathError::Schema { found: schema });
    }
    Ok(true)
}

fn is_busy(e: &aya::programs::ProgramError) -> bool {
    matches!(e, aya::programs::ProgramError::SyscallError(s) if s.io_error.raw_os_error() == Some(libc::EBUSY))
}

/// Attaches in the chosen mode; `auto` falls back to generic mode, loudly, only where the driver
/// has no native XDP (a busy interface is not a reason to fall back).
fn attach_in_mode(
    program: &mut Xdp,
    iface: &str,
    mode: XdpModeChoice,
) -> Result<(aya::programs::xdp::XdpLinkId, XdpModeChoice), aya::programs::ProgramError> {
    match mode {
        XdpModeChoice::Native => Ok((program.attach(iface, XdpMode::Driver)?, mode)),
        XdpModeChoice::Skb => Ok((program.attach(iface, XdpMode::Skb)?, mode)),
        XdpModeChoice::Auto => match program.attach(iface, XdpMode::Driver) {
            Ok(id) => Ok((id, XdpModeChoice::Native)),
            Err(e) if is_busy(&e) => Err(e),
            Err(native_err) => {
                warn!(
                    %iface, error = %native_err,
                    "NATIVE XDP IS NOT AVAILABLE on this interface; falling back to generic \
                     (skb) mode, which filters correctly but much more slowly"
                );
                Ok((program.attach(iface, XdpMode::Skb)?, XdpModeChoice::Skb))
            }
        },
    }
}

/// Detaches a program attached through netlink (`ip link ... xdp`, xdp-loader without a
/// dispatcher link) in every mode, with iproute2. A program held by another process's BPF link
/// cannot be removed this way; the retried attach then reports it.
fn remove_netlink_program(iface: &str) {
    for mode in ["xdpgeneric", "xdpdrv", "xdpoffload"] {
        let _ = std::process::Command::new("ip")
            .args(["link", "set", "dev", iface, mode, "off"])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// Pins the program, replacing an earlier daemon's program pin (its links keep running the old
/// program until [`Datapath::attach`] swaps this one in).
pub(super) fn pin_program(program: &mut Xdp, layout: &PinLayout) -> Result<(), DatapathError> {
    let path = layout.program();
    match fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(pin_err("removing old program pin", &path)(e)),
    }
    program
        .pin(&path)
        .map_err(|e| pin_err("pinning program at", &path)(std::io::Error::other(e)))
}

impl Datapath {
    /// Attaches to `iface`: exclusively, pinning the link at `layout.link(iface)`, or in a slot
    /// of libxdp's dispatcher (see [`dispatcher`]), as `opts.attach` says.
    pub fn attach(
        &mut self,
        iface: &str,
        opts: AttachOptions,
        layout: &PinLayout,
    ) -> Result<Attachment, DatapathError> {
        let path = layout.link(iface);
        if path.exists() {
            return self.take_over(iface, &path);
        }
        let join = match opts.attach {
            XdpAttach::Dispatcher => true,
            XdpAttach::Exclusive => false,
            XdpAttach::Auto => matches!(
                dispatcher::inspect(iface)?,
                dispatcher::OnInterface::Dispatcher(_)
            ),
        };
        if join {
            return self.join_dispatcher(iface, opts, layout);
        }
        self.attach_exclusive(iface, opts.mode, &path, opts.force)
    }

    fn join_dispatcher(
        &mut self,
        iface: &str,
        opts: AttachOptions,
        layout: &PinLayout,
    ) -> Result<Attachment, DatapathError> {
        let modes: &[u32] = match opts.mode {
            XdpModeChoice::Native => &[netlink::FLAG_DRV],
            XdpModeChoice::Skb => &[netlink::FLAG_SKB],
            XdpModeChoice::Auto => &[netlink::FLAG_DRV, netlink::FLAG_SKB],
        };
        let joined = dispatcher::join(self.extension_mut()?, iface, opts.priority, modes)?;
        let marker = layout.dispatched().join(iface);
        fs::create_dir_all(&marker).map_err(pin_err("creating", &marker))?;
        let mode = if joined.mode_flag == netlink::FLAG_SKB {
            XdpModeChoice::Skb
        } else {
            XdpModeChoice::Native
        };
        tracing::info!(%iface, slot = joined.slot, priority = opts.priority, "in libxdp's dispatcher");
        Ok(Attachment {
            iface: iface.to_owned(),
            mode,
            hold: Hold::Dispatcher { marker },
        })
    }

    fn attach_exclusive(
        &mut self,
        iface: &str,
        mode: XdpModeChoice,
        path: &Path,
        force: bool,
    ) -> Result<Attachment, DatapathError> {
        let attach_err = |source| DatapathError::Attach {
            iface: iface.to_owned(),
            source,
        };
        let program = self.program_mut();
        let (link_id, used) = match attach_in_mode(program, iface, mode) {
            // The kernel refuses a link where another program is attached (dev_xdp_attach:
            // EBUSY). Replacing someone else's filter silently would be worse than failing.
            Err(e) if is_busy(&e) && !force => {
                return Err(DatapathError::Foreign {
                    iface: iface.to_owned(),
                    forced: false,
                });
            }
            Err(e) if is_busy(&e) => {
                warn!(%iface, "replacing the XDP program another tool attached (--force)");
                remove_netlink_program(iface);
                attach_in_mode(program, iface, mode).map_err(|e| {
                    if is_busy(&e) {
                        DatapathError::Foreign {
                            iface: iface.to_owned(),
                            forced: true,
                        }
                    } else {
                        attach_err(e)
                    }
                })?
            }
            other => other.map_err(attach_err)?,
        };
        let link = program.take_link(link_id).map_err(attach_err)?;
        let fd_link = FdLink::try_from(link).map_err(|source| DatapathError::Link {
            iface: iface.to_owned(),
            source,
        })?;
        let link = fd_link
            .pin(path)
            .map_err(|e| pin_err("pinning link at", path)(std::io::Error::other(e)))?;
        Ok(Attachment {
            iface: iface.to_owned(),
            mode: used,
            hold: Hold::Link(link),
        })
    }

    /// Swaps this program into a link an earlier daemon pinned, in one `BPF_LINK_UPDATE`: the
    /// interface runs the old program until the call and this one after it, never neither. The
    /// pin file stays in place throughout.
    fn take_over(&mut self, iface: &str, path: &Path) -> Result<Attachment, DatapathError> {
        let link_err = |source| DatapathError::Link {
            iface: iface.to_owned(),
            source,
        };
        let existing = PinnedLink::from_pin(path).map_err(link_err)?;
        let xdp_link = XdpLink::try_from(FdLink::from(existing)).map_err(link_err)?;
        let program = self.program_mut();
        let id = program
            .attach_to_link(xdp_link)
            .map_err(|source| DatapathError::Attach {
                iface: iface.to_owned(),
                source,
            })?;
        // Our copy of the link fd can go; the pin keeps the link (and the program) alive.
        drop(program.take_link(id));
        Ok(Attachment {
            iface: iface.to_owned(),
            mode: XdpModeChoice::Auto,
            hold: Hold::Link(PinnedLink::from_pin(path).map_err(link_err)?),
        })
    }

    /// Detaches: unpins the link and closes it, which removes the program from the interface;
    /// in a dispatcher, rebuilds it without geofilter's slot (or removes it if that was the
    /// last), leaving the other programs running.
    pub fn detach(attachment: Attachment) -> Result<(), DatapathError> {
        let Attachment { iface, hold, .. } = attachment;
        let link = match hold {
            Hold::Link(link) => link,
            Hold::Dispatcher { marker } => {
                dispatcher::leave(&iface)?;
                let _ = fs::remove_dir(marker);
                return Ok(());
            }
        };
        let fd_link = link.unpin().map_err(|source| DatapathError::Pin {
            what: "unpinning link of",
            path: iface.into(),
            source,
        })?;
        drop(fd_link);
        Ok(())
    }
}

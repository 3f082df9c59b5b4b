//! Attaching the program to interfaces, and pinning so the filter outlives the daemon process.

use std::{fs, path::Path};

use aya::programs::{
    XdpMode,
    links::{FdLink, PinnedLink},
};
use tracing::warn;

use super::{Datapath, DatapathError};
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

/// One interface the program is attached to. The link is pinned, so it stays attached if the
/// daemon dies; [`Datapath::detach`] removes it.
pub struct Attachment {
    pub iface: String,
    pub mode: XdpModeChoice,
    link: PinnedLink,
}

fn pin_err(
    what: &'static str,
    path: &Path,
) -> impl FnOnce(std::io::Error) -> DatapathError + use<> {
    let path = path.to_path_buf();
    move |source| DatapathError::Pin { what, path, source }
}

/// Pins the program and every map of a freshly loaded object under `layout`.
pub(super) fn pin_all(ebpf: &mut aya::Ebpf, layout: &PinLayout) -> Result<(), DatapathError> {
    for dir in [layout.maps(), layout.links()] {
        fs::create_dir_all(&dir).map_err(pin_err("creating", &dir))?;
    }
    for (name, map) in ebpf.maps() {
        // Compiler-generated maps (`.rodata*`, `.bss`) need no pin, and bpffs refuses names with
        // a dot anyway (kernel/bpf/inode.c, `bpf_dname_reserved`: EPERM).
        if name.contains('.') {
            continue;
        }
        let path = layout.map(name);
        map.pin(&path)
            .map_err(|e| pin_err("pinning map at", &path)(std::io::Error::other(e)))?;
    }
    let path = layout.program();
    let program: &mut aya::programs::Xdp = ebpf
        .program_mut(geofilter_common::maps::PROGRAM)
        .and_then(|p| p.try_into().ok())
        .expect("program exists and is XDP");
    program
        .pin(&path)
        .map_err(|e| pin_err("pinning program at", &path)(std::io::Error::other(e)))
}

impl Datapath {
    /// Attaches to `iface` and pins the link at `layout.link(iface)`.
    pub fn attach(
        &mut self,
        iface: &str,
        mode: XdpModeChoice,
        layout: &PinLayout,
    ) -> Result<Attachment, DatapathError> {
        let attach_err = |source| DatapathError::Attach {
            iface: iface.to_owned(),
            source,
        };
        let program = self.program_mut();
        let (link_id, used) = match mode {
            XdpModeChoice::Native => (
                program.attach(iface, XdpMode::Driver).map_err(attach_err)?,
                mode,
            ),
            XdpModeChoice::Skb => (
                program.attach(iface, XdpMode::Skb).map_err(attach_err)?,
                mode,
            ),
            XdpModeChoice::Auto => match program.attach(iface, XdpMode::Driver) {
                Ok(id) => (id, XdpModeChoice::Native),
                Err(native_err) => {
                    warn!(
                        %iface, error = %native_err,
                        "NATIVE XDP IS NOT AVAILABLE on this interface; falling back to generic \
                         (skb) mode, which filters correctly but much more slowly"
                    );
                    (
                        program.attach(iface, XdpMode::Skb).map_err(attach_err)?,
                        XdpModeChoice::Skb,
                    )
                }
            },
        };
        let link = program.take_link(link_id).map_err(attach_err)?;
        let fd_link = FdLink::try_from(link).map_err(|source| DatapathError::Link {
            iface: iface.to_owned(),
            source,
        })?;
        let path = layout.link(iface);
        let link = fd_link
            .pin(&path)
            .map_err(|e| pin_err("pinning link at", &path)(std::io::Error::other(e)))?;
        Ok(Attachment {
            iface: iface.to_owned(),
            mode: used,
            link,
        })
    }

    /// Detaches: unpins the link and closes it, which removes the program from the interface.
    pub fn detach(attachment: Attachment) -> Result<(), DatapathError> {
        let Attachment { iface, link, .. } = attachment;
        let fd_link = link.unpin().map_err(|source| DatapathError::Pin {
            what: "unpinning link of",
            path: iface.into(),
            source,
        })?;
        drop(fd_link);
        Ok(())
    }
}

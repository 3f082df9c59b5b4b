//! Asking the live program what it does with a packet from an address (`geofilter why`).
//!
//! The answer comes from the loaded program itself: a minimal frame from the address runs through
//! it with BPF_PROG_TEST_RUN against the live maps, carrying a [`WhyProbe`] record in its XDP
//! metadata. The program fills the record (country table entry, verdict) and counts nothing.

use std::net::IpAddr;

use aya::programs::{TestRun, TestRunOptions, Xdp};
use geofilter_common::{PrefixInfo, Verdict, WHY_MAGIC, WhyProbe};

use super::{Datapath, DatapathError};

/// What the program decided for one address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Classification {
    pub verdict: Verdict,
    pub info: PrefixInfo,
}

/// `struct xdp_md` from include/uapi/linux/bpf.h: test_run takes the metadata length from `data`.
#[repr(C)]
#[derive(Clone, Copy)]
struct XdpMd {
    data: u32,
    data_end: u32,
    data_meta: u32,
    ingress_ifindex: u32,
    rx_queue_index: u32,
    egress_ifindex: u32,
}

const _: () = assert!(size_of::<XdpMd>() == 6 * size_of::<u32>());
// SAFETY: `repr(C)` u32 fields only, no padding (size asserted above), every bit pattern valid.
unsafe impl aya::Pod for XdpMd {}

const META_LEN: usize = size_of::<WhyProbe>();

/// The bytes of a record the kernel reads (the probe metadata, the test-run context).
fn as_bytes<T: aya::Pod>(value: &T) -> &[u8] {
    // SAFETY: `Pod` types have no padding, so all `size_of::<T>()` bytes behind the reference are
    // initialised, and the slice borrows `value` for its lifetime.
    unsafe { std::slice::from_raw_parts((value as *const T).cast::<u8>(), size_of::<T>()) }
}

/// Metadata record, then an Ethernet frame with an IPv4 or IPv6 header from `addr` (the program
/// reads nothing past the addresses).
fn probe_input(addr: IpAddr) -> Vec<u8> {
    let probe = WhyProbe {
        magic: WHY_MAGIC,
        ..Default::default()
    };
    let mut buf = as_bytes(&probe).to_vec();
    buf.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01]);
    match addr {
        IpAddr::V4(a) => {
            buf.extend_from_slice(&0x0800u16.to_be_bytes());
            buf.extend_from_slice(&[0x45, 0, 0, 20, 0, 0, 0, 0, 64, 17, 0, 0]);
            buf.extend_from_slice(&a.octets());
            buf.extend_from_slice(&[192, 0, 2, 1]);
        }
        IpAddr::V6(a) => {
            buf.extend_from_slice(&0x86DDu16.to_be_bytes());
            buf.extend_from_slice(&[0x60, 0, 0, 0, 0, 0, 17, 64]);
            buf.extend_from_slice(&a.octets());
            buf.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        }
    }
    buf
}

impl Datapath {
    /// Runs a probe frame from `addr` through the live program.
    pub fn classify(&self, addr: IpAddr) -> Result<Classification, DatapathError> {
        classify(self.program(), addr)
    }
}

/// Runs a probe frame from `addr` through `program` (geofilter or its LPM-trie variant).
pub(super) fn classify(program: &Xdp, addr: IpAddr) -> Result<Classification, DatapathError> {
    let input = probe_input(addr);
    let ctx = XdpMd {
        data: META_LEN as u32,
        data_end: input.len() as u32,
        data_meta: 0,
        ingress_ifindex: 0,
        rx_queue_index: 0,
        egress_ifindex: 0,
    };
    let mut output = vec![0u8; input.len()];
    let mut opts = TestRunOptions::new();
    opts.data_in = Some(&input);
    opts.data_out = Some(&mut output);
    opts.ctx_in = Some(as_bytes(&ctx));
    let result = program.test_run(opts).map_err(DatapathError::Program)?;
    // SAFETY: the output starts with the metadata record (test_run copies from data_meta).
    let probe: WhyProbe = unsafe { std::ptr::read_unaligned(output.as_ptr().cast()) };
    let verdict = match probe.verdict {
        0 => Verdict::Pass,
        1 => Verdict::Drop,
        2 => Verdict::WouldDrop,
        other => {
            return Err(DatapathError::Probe(format!(
                "program reported verdict {other}"
            )));
        }
    };
    if probe.magic != WHY_MAGIC || result.data_size_out as usize != input.len() {
        return Err(DatapathError::Probe(
            "the program did not fill the probe record".into(),
        ));
    }
    Ok(Classification {
        verdict,
        info: probe.info,
    })
}

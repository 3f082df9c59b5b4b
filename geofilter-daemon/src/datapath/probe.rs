//! Asking the live program what it does with a packet from an address (`geofilter why`).
//!
//! The answer comes from the loaded program's code: a minimal frame from the address runs through
//! its `why` twin (the same filter code and the same live maps, loaded beside it, never attached)
//! with BPF_PROG_TEST_RUN, carrying a [`WhyProbe`] record in front of the frame that the twin turns
//! into XDP metadata. The program fills the record (country, net, verdict and what decided it)
//! and counts nothing.

use std::net::IpAddr;

use aya::{
    Ebpf,
    programs::{ProgramError, TestRun, TestRunOptions, Xdp},
};
use geofilter_common::{CountryId, Decider, Verdict, WHY_MAGIC, WhyProbe, maps as names};

use super::{Datapath, DatapathError};

/// What the program decided for one address, and what it found on the way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Classification {
    pub verdict: Verdict,
    pub country: CountryId,
    pub decided_by: Decider,
    /// The list slot that decided, when a list did.
    pub list: u8,
    /// The address's net in the table (in a table without ASN data or lists: its database
    /// file's index), and that net's listed index and lists (bit per list slot).
    pub net: u32,
    pub listed: u32,
    pub lists: u32,
}

const META_LEN: usize = size_of::<WhyProbe>();

/// The bytes of a record the kernel reads (the probe record in front of the frame).
fn as_bytes<T: aya::Pod>(value: &T) -> &[u8] {
    // SAFETY: `Pod` types have no padding, so all `size_of::<T>()` bytes behind the reference are
    // initialised, and the slice borrows `value` for its lifetime.
    unsafe { std::slice::from_raw_parts((value as *const T).cast::<u8>(), size_of::<T>()) }
}

/// The probe record, then an Ethernet frame with an IPv4 or IPv6 header from `addr` (the program
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
    /// Runs a probe frame from `addr` through the live program's `why` twin.
    pub fn classify(&self, addr: IpAddr) -> Result<Classification, DatapathError> {
        classify(&self.ebpf, addr)
    }
}

/// The object's `why` twin of the XDP program (same code, same maps; see `filter::why` in
/// geofilter-ebpf).
pub(super) fn why_program_mut(ebpf: &mut Ebpf) -> Result<&mut Xdp, DatapathError> {
    ebpf.program_mut(names::WHY_PROGRAM)
        .ok_or(DatapathError::Program(ProgramError::NotLoaded))?
        .try_into()
        .map_err(DatapathError::Program)
}

/// Runs a probe frame from `addr` through the `why` twin in `ebpf` (geofilter or its LPM-trie
/// variant). The record goes first in the frame, not in a test-run context: 5.10 has none for
/// XDP.
pub(super) fn classify(ebpf: &Ebpf, addr: IpAddr) -> Result<Classification, DatapathError> {
    let program: &Xdp = ebpf
        .program(names::WHY_PROGRAM)
        .ok_or(DatapathError::Program(ProgramError::NotLoaded))?
        .try_into()
        .map_err(DatapathError::Program)?;
    let input = probe_input(addr);
    // Before 5.14 the output is the frame from `data` (record first); from 5.14 it starts at
    // `data_meta`, one more copy of the record in front.
    let mut output = vec![0u8; input.len() + META_LEN];
    let mut opts = TestRunOptions::new();
    opts.data_in = Some(&input);
    opts.data_out = Some(&mut output);
    let result = program.test_run(opts).map_err(DatapathError::Program)?;
    // SAFETY: the output starts with the record on every kernel (see above).
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
    let out_len = result.data_size_out as usize;
    if probe.magic != WHY_MAGIC || (out_len != input.len() && out_len != input.len() + META_LEN) {
        return Err(DatapathError::Probe(
            "the program did not fill the probe record".into(),
        ));
    }
    let decided_by = Decider::from_u8(probe.decided_by).ok_or_else(|| {
        DatapathError::Probe(format!("program reported decider {}", probe.decided_by))
    })?;
    Ok(Classification {
        verdict,
        country: probe.country,
        decided_by,
        list: probe.list,
        net: probe.net,
        listed: probe.listed,
        lists: probe.lists,
    })
}

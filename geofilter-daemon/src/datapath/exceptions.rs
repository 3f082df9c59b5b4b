//! Exceptions: per-prefix entries in LPM tries, written and deleted in place (each one atomic
//! for readers), plus marks on the country tables that say where a packet must look them up.
//!
//! A packet consults the exception trie only when its family has exceptions (a policy flag) and
//! an entry on its path through the country table carries [`ENTRY_EXCEPTION`]. Marks are placed
//! so that every address an exception covers passes through a marked entry (see
//! [`super::stride::StrideTable::exception_marks`]); addresses elsewhere never walk the trie.
//!
//! Ordering keeps every packet's view consistent, before or after a change, never torn:
//!
//! - adding: the trie entry first, then the marks. A packet that sees no mark yet misses an
//!   exception it would not have had before the change anyway.
//! - removing: the trie entry first, then the marks no other exception needs. A packet that
//!   still sees a mark finds no entry: the state after the change.
//!
//! Marks are written in place into the live table: the whole 4 KiB page holding a changed node
//! is rewritten, but only mark bits differ from what the kernel holds (a node's shape never
//! depends on its marks, `compact.rs`), and every mark is one bit of a run's value. However the
//! kernel copies the value (`copy_map_value`, any store width), a reader sees each word's other
//! 31 bits unchanged and its mark old or new.
//!
//! [`ENTRY_EXCEPTION`]: geofilter_common::table::ENTRY_EXCEPTION

use aya::maps::lpm_trie::Key;
use geofilter_common::{EXCEPTION_DROP, EXCEPTION_PASS, maps as names};

use super::{Datapath, DatapathError, map_err, tables::FamilyTables};
use crate::rules::{Cidr, ExceptionAction};

impl FamilyTables {
    /// Adds or removes one exception's marks and writes the chunks that changed.
    fn mark(&mut self, addr: u128, len: u8, add: bool) -> Result<(), DatapathError> {
        let present = if add {
            self.exceptions.insert((addr, len))
        } else {
            self.exceptions.remove(&(addr, len))
        };
        if !present {
            // Adding one that is already there (a new action) or removing an absent one changes
            // no marks.
            return Ok(());
        }
        let changed = self.live.marks.update(&self.live.table, addr, len, add);
        self.rewrite(&changed)
    }
}

impl Datapath {
    pub fn set_exception(
        &mut self,
        cidr: &Cidr,
        action: ExceptionAction,
    ) -> Result<(), DatapathError> {
        let value = match action {
            ExceptionAction::Pass => EXCEPTION_PASS,
            ExceptionAction::Drop => EXCEPTION_DROP,
        };
        let len = u32::from(cidr.len);
        if cidr.addr.is_ipv4() {
            let key = Key::new(len, (cidr.bits() as u32).to_be_bytes());
            self.except_v4
                .insert(&key, value, 0)
                .map_err(map_err(names::EXCEPT_V4))?;
            self.v4.mark(cidr.bits(), cidr.len, true)
        } else {
            let key = Key::new(len, cidr.bits().to_be_bytes());
            self.except_v6
                .insert(&key, value, 0)
                .map_err(map_err(names::EXCEPT_V6))?;
            self.v6.mark(cidr.bits(), cidr.len, true)
        }
    }

    pub fn remove_exception(&mut self, cidr: &Cidr) -> Result<(), DatapathError> {
        let len = u32::from(cidr.len);
        let result = if cidr.addr.is_ipv4() {
            let key = Key::new(len, (cidr.bits() as u32).to_be_bytes());
            self.except_v4
                .remove(&key)
                .map_err(map_err(names::EXCEPT_V4))
        } else {
            let key = Key::new(len, cidr.bits().to_be_bytes());
            self.except_v6
                .remove(&key)
                .map_err(map_err(names::EXCEPT_V6))
        };
        match result {
            // Already gone is what we wanted. aya's LpmTrie::remove reports the kernel's ENOENT
            // (trie_delete_elem in kernel/bpf/lpm_trie.c, for a key not in the trie; seen on
            // 6.18) as a SyscallError, not as KeyNotFound.
            Err(DatapathError::Map {
                source: aya::maps::MapError::KeyNotFound,
                ..
            }) => {}
            Err(DatapathError::Map {
                source: aya::maps::MapError::SyscallError(e),
                ..
            }) if e.io_error.raw_os_error() == Some(libc::ENOENT) => {}
            other => other?,
        }
        if cidr.addr.is_ipv4() {
            self.v4.mark(cidr.bits(), cidr.len, false)
        } else {
            self.v6.mark(cidr.bits(), cidr.len, false)
        }
    }
}

impl Datapath {
    /// Whether a packet from `addr` would look the exception trie up (its family has exceptions
    /// and its path through the live table carries a mark), read from the kernel's table itself.
    /// For the privileged tests (the `test-helpers` feature): one map read per table level.
    #[cfg(feature = "test-helpers")]
    pub fn exception_lookup_needed(&self, addr: std::net::IpAddr) -> Result<bool, DatapathError> {
        let family = if addr.is_ipv4() { &self.v4 } else { &self.v6 };
        if family.exceptions.is_empty() {
            return Ok(false);
        }
        let (bits, addr) = match addr {
            std::net::IpAddr::V4(a) => (32, u128::from(a.to_bits())),
            std::net::IpAddr::V6(a) => (128, a.to_bits()),
        };
        let inner = &family.live.inner;
        let read = |index: u32| inner.get(&index, 0).map_err(map_err(family.name));
        let (_, marked) = super::compact::walk(read, bits, addr)?;
        Ok(marked)
    }

    /// The exception prefixes in the kernel's tries.
    fn exceptions_in_kernel(&self) -> Result<Vec<Cidr>, DatapathError> {
        let mut present = Vec::new();
        for key in self.except_v4.keys() {
            let key = key.map_err(map_err(names::EXCEPT_V4))?;
            let addr = std::net::Ipv4Addr::from(key.data());
            present.push(Cidr {
                addr: addr.into(),
                len: key.prefix_len() as u8,
            });
        }
        for key in self.except_v6.keys() {
            let key = key.map_err(map_err(names::EXCEPT_V6))?;
            let addr = std::net::Ipv6Addr::from(key.data());
            present.push(Cidr {
                addr: addr.into(),
                len: key.prefix_len() as u8,
            });
        }
        Ok(present)
    }

    /// After adopting an earlier daemon's pins: learn its exceptions and its live tables, and
    /// put the marks right where they are not.
    pub(super) fn adopt_exceptions_and_tables(&mut self) -> Result<(), DatapathError> {
        for cidr in self.exceptions_in_kernel()? {
            let family = if cidr.addr.is_ipv4() {
                &mut self.v4
            } else {
                &mut self.v6
            };
            family.exceptions.insert((cidr.bits(), cidr.len));
        }
        self.v4.adopt()?;
        self.v6.adopt()
    }

    /// Makes the exception tries hold exactly `wanted` (after adopting tries an earlier daemon
    /// filled, which may hold entries the state file never recorded).
    pub fn sync_exceptions(
        &mut self,
        wanted: &std::collections::BTreeMap<Cidr, ExceptionAction>,
    ) -> Result<(), DatapathError> {
        let present = self.exceptions_in_kernel()?;
        for (cidr, action) in wanted {
            self.set_exception(cidr, *action)?;
        }
        for cidr in present {
            if !wanted.contains_key(&cidr) {
                self.remove_exception(&cidr)?;
            }
        }
        Ok(())
    }

    /// Interfaces with a pinned link under `layout` (attached by this or an earlier daemon).
    pub fn pinned_links(layout: &crate::paths::PinLayout) -> Vec<String> {
        std::fs::read_dir(layout.links())
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect()
    }
}

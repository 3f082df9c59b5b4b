//! Exception tries: per-prefix entries written and deleted in place (each one atomic for readers).

use aya::maps::lpm_trie::Key;
use geofilter_common::{EXCEPTION_DROP, EXCEPTION_PASS, maps as names};

use super::{Datapath, DatapathError, map_err};
use crate::rules::{Cidr, ExceptionAction};

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
                .map_err(map_err(names::EXCEPT_V4))
        } else {
            let key = Key::new(len, cidr.bits().to_be_bytes());
            self.except_v6
                .insert(&key, value, 0)
                .map_err(map_err(names::EXCEPT_V6))
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
            // Already gone is what we wanted.
            Err(DatapathError::Map {
                source: aya::maps::MapError::KeyNotFound,
                ..
            }) => Ok(()),
            other => other,
        }
    }
}

impl Datapath {
    /// Makes the exception tries hold exactly `wanted` (after adopting tries an earlier daemon
    /// filled, which may hold entries the state file never recorded).
    pub fn sync_exceptions(
        &mut self,
        wanted: &std::collections::BTreeMap<Cidr, ExceptionAction>,
    ) -> Result<(), DatapathError> {
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

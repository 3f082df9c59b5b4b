//! Country tables: a compiled database written into fresh LPM tries, then swapped in.

use std::time::{Duration, Instant};

use aya::maps::lpm_trie::Key;
use geofilter_common::maps::{self as names, TABLE_CAPACITY};

use super::{Datapath, DatapathError, TableV4, TableV6, map_err};
use crate::geoip::Prefix;

/// `BPF_F_NO_PREALLOC`: mandatory for LPM tries (kernel/bpf/lpm_trie.c, `trie_alloc`), and the
/// inner map must carry the same flags as the template the program was verified against.
const BPF_F_NO_PREALLOC: u32 = 1;

/// What an install wrote.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct TableStats {
    pub prefixes_v4: usize,
    pub prefixes_v6: usize,
    #[serde(skip)]
    pub elapsed: Duration,
}

impl Datapath {
    /// Builds new tables holding exactly `v4` and `v6` and swaps them in. On any error the live
    /// tables are untouched: the new ones are only referenced after they are complete.
    pub fn install_tables(
        &mut self,
        v4: &[Prefix],
        v6: &[Prefix],
    ) -> Result<TableStats, DatapathError> {
        let start = Instant::now();
        let mut new_v4 =
            TableV4::create(TABLE_CAPACITY, BPF_F_NO_PREALLOC).map_err(map_err(names::TABLE_V4))?;
        fill(
            &mut new_v4,
            v4,
            |addr| (addr as u32).to_be_bytes(),
            names::TABLE_V4,
        )?;
        let mut new_v6 =
            TableV6::create(TABLE_CAPACITY, BPF_F_NO_PREALLOC).map_err(map_err(names::TABLE_V6))?;
        fill(&mut new_v6, v6, u128::to_be_bytes, names::TABLE_V6)?;
        // Each family is swapped in one step; a packet only ever consults one family's table.
        self.table_v4
            .set(0, &new_v4, 0)
            .map_err(map_err(names::TABLE_V4))?;
        self.table_v6
            .set(0, &new_v6, 0)
            .map_err(map_err(names::TABLE_V6))?;
        Ok(TableStats {
            prefixes_v4: v4.len(),
            prefixes_v6: v6.len(),
            elapsed: start.elapsed(),
        })
    }
}

fn fill<const N: usize>(
    trie: &mut aya::maps::LpmTrie<aya::maps::MapData, [u8; N], geofilter_common::PrefixInfo>,
    prefixes: &[Prefix],
    bytes: impl Fn(u128) -> [u8; N],
    name: &'static str,
) -> Result<(), DatapathError> {
    for prefix in prefixes {
        let key = Key::new(u32::from(prefix.len), bytes(prefix.addr));
        insert_retrying(trie, &key, prefix, name)?;
    }
    Ok(())
}

/// LPM trie nodes are allocated with GFP_NOWAIT (bpf_mem_alloc since 6.14), so a burst of
/// inserts can see a transient ENOMEM that succeeds when retried.
fn insert_retrying<const N: usize>(
    trie: &mut aya::maps::LpmTrie<aya::maps::MapData, [u8; N], geofilter_common::PrefixInfo>,
    key: &Key<[u8; N]>,
    prefix: &Prefix,
    name: &'static str,
) -> Result<(), DatapathError> {
    let mut attempts = 0;
    loop {
        match trie.insert(key, prefix.info, 0) {
            Ok(()) => return Ok(()),
            Err(aya::maps::MapError::SyscallError(e))
                if e.io_error.raw_os_error() == Some(libc::ENOMEM) && attempts < 100 =>
            {
                attempts += 1;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => return Err(map_err(name)(e)),
        }
    }
}

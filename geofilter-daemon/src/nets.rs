//! Nets: the country ranges, the ASN ranges and the blocklists' ranges of one address family,
//! cut into one partition and compiled into the table input, so that a packet still walks one
//! table whatever the policy names (layout: `geofilter_common::table`, "Nets").
//!
//! Every piece of the partition has a country (with the database file it came from), an ASN
//! (or none) and a set of lists. The table's leaf holds the country and a *net*: the index of
//! the distinct (ASN, list set) pair, so the number of nets grows with the ASNs, not with the
//! prefixes (a world ASN database: about 84,000 nets for IPv4). Net 0 is "no ASN, no list".
//!
//! Rules: the country database decides the country exactly as `geoip::compile` does (its
//! prefixes come in already compiled); the ASN database's ranges are disjoint (`asn::load`
//! resolves overlaps); a list holds an address when any of its ranges does. Pieces whose leaf
//! and net are both empty are left out: a lookup miss means exactly that.

use std::collections::HashMap;

use geofilter_common::{
    UNKNOWN_COUNTRY,
    table::{LIST_SLOTS, Leaf, MAX_NETS, Net},
};

use crate::{
    asn::{AsnDb, AsnRange},
    datapath::{TableInput, compact::NetPages, stride::TablePrefix},
    family::Family,
    geoip::{CompiledDb, Prefix, for_each_prefix, last_addr},
};

/// One blocklist's ranges of one family: sorted, disjoint, inclusive.
#[derive(Clone, Copy, Debug)]
pub struct ListSpans<'a> {
    /// The list's slot: bit `slot` of [`Net::lists`].
    pub slot: u32,
    pub ranges: &'a [(u128, u128)],
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NetsError {
    #[error(
        "{family}: {count} distinct ASN and list combinations, more than the {max} a table holds"
    )]
    TooManyNets {
        family: &'static str,
        count: usize,
        max: u32,
    },
    #[error("list slot {slot} is past the {LIST_SLOTS} a table holds")]
    BadListSlot { slot: u32 },
}

/// What the daemon keeps about one table's nets, to explain and change them: which ASN each net
/// is (the program only sees the ASN's listed index), and the nets of each ASN (where a block
/// writes that index).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetIndex {
    /// The ASN of each net (0: none).
    pub net_asn: Vec<u32>,
    /// The nets of each ASN the table holds.
    pub asn_nets: HashMap<u32, Vec<u32>>,
}

impl NetIndex {
    /// The ASN of net `net`, if it has one.
    pub fn asn(&self, net: u32) -> Option<u32> {
        self.net_asn.get(net as usize).copied().filter(|&a| a != 0)
    }
}

/// The table input of one family (with its net index).
pub fn compile(
    family: Family,
    countries: &[Prefix],
    asns: &[AsnRange],
    lists: &[ListSpans<'_>],
) -> Result<TableInput, NetsError> {
    let bits = family.bits();
    let name = family.name();
    if let Some(bad) = lists.iter().find(|l| l.slot >= LIST_SLOTS) {
        return Err(NetsError::BadListSlot { slot: bad.slot });
    }
    // Every place where something may change: each range's start and the address after it.
    let mut cuts: Vec<u128> = Vec::with_capacity(2 * (countries.len() + asns.len()) + 1);
    cuts.push(0);
    let mut cut = |start: u128, end: u128| {
        cuts.push(start);
        if let Some(next) = end.checked_add(1)
            && (bits == 128 || next >> bits == 0)
        {
            cuts.push(next);
        }
    };
    for p in countries {
        cut(p.addr, last_addr(p.addr, p.len, bits));
    }
    for a in asns {
        cut(a.start, a.end);
    }
    for l in lists {
        for &(start, end) in l.ranges {
            cut(start, end);
        }
    }
    cuts.sort_unstable();
    cuts.dedup();

    // A net per distinct (ASN, list set); net 0 is (none, none).
    let mut nets: Vec<Net> = vec![Net::default()];
    let mut net_asn: Vec<u32> = vec![0];
    let mut net_of: HashMap<(u32, u32), u32> = HashMap::from([((0, 0), 0)]);
    let mut prefixes = Vec::new();
    // Cursors into the sorted inputs; each only moves forward.
    let (mut c, mut a) = (0usize, 0usize);
    let mut l: Vec<usize> = vec![0; lists.len()];
    // The current run of equal leaves: its start and leaf.
    let mut run: Option<(u128, Leaf)> = None;
    let last = if bits == 128 {
        u128::MAX
    } else {
        (1u128 << bits) - 1
    };
    for (i, &start) in cuts.iter().enumerate() {
        let end = cuts.get(i + 1).map_or(last, |&next| next - 1);
        while c < countries.len() && last_addr(countries[c].addr, countries[c].len, bits) < start {
            c += 1;
        }
        let country = match countries.get(c) {
            Some(p) if p.addr <= start => p.info.country,
            _ => UNKNOWN_COUNTRY,
        };
        while a < asns.len() && asns[a].end < start {
            a += 1;
        }
        let asn = match asns.get(a) {
            Some(s) if s.start <= start => s.asn,
            _ => 0,
        };
        let mut mask = 0u32;
        for (list, cursor) in lists.iter().zip(l.iter_mut()) {
            while *cursor < list.ranges.len() && list.ranges[*cursor].1 < start {
                *cursor += 1;
            }
            if list.ranges.get(*cursor).is_some_and(|r| r.0 <= start) {
                mask |= 1 << list.slot;
            }
        }
        let id = match net_of.get(&(asn, mask)) {
            Some(&id) => id,
            None => {
                let id = nets.len() as u32;
                nets.push(Net {
                    listed: 0,
                    lists: mask,
                });
                net_asn.push(asn);
                net_of.insert((asn, mask), id);
                id
            }
        };
        let leaf = Leaf { country, net: id };
        match run {
            Some((_, current)) if current == leaf => {}
            _ => {
                if let Some((from, current)) = run {
                    emit(&mut prefixes, from, start - 1, bits, current);
                }
                run = Some((start, leaf));
            }
        }
        if end == last {
            break;
        }
    }
    if let Some((from, current)) = run {
        emit(&mut prefixes, from, last, bits, current);
    }
    if nets.len() > MAX_NETS as usize {
        return Err(NetsError::TooManyNets {
            family: name,
            count: nets.len(),
            max: MAX_NETS,
        });
    }
    let mut asn_nets: HashMap<u32, Vec<u32>> = HashMap::new();
    for (net, &asn) in net_asn.iter().enumerate().skip(1) {
        if asn != 0 {
            asn_nets.entry(asn).or_default().push(net as u32);
        }
    }
    Ok(TableInput {
        prefixes,
        nets: NetPages { nets },
        index: NetIndex { net_asn, asn_nets },
    })
}

/// The prefixes of `start..=end` with `leaf`, unless the leaf says nothing (unknown, net 0).
fn emit(out: &mut Vec<TablePrefix>, start: u128, end: u128, bits: u32, leaf: Leaf) {
    if leaf != Leaf::UNKNOWN {
        for_each_prefix(start, end, bits, |addr, len| {
            out.push(TablePrefix { addr, len, leaf })
        });
    }
}

#[cfg(test)]
mod tests;

/// One blocklist's ranges of both families.
#[derive(Clone, Copy, Debug)]
pub struct ListRanges<'a> {
    pub slot: u32,
    pub v4: &'a [(u128, u128)],
    pub v6: &'a [(u128, u128)],
}

/// The inputs of both families' tables: the country database, the ASN database if one is
/// loaded, and the lists.
pub fn inputs(
    db: &CompiledDb,
    asn: Option<&AsnDb>,
    lists: &[ListRanges<'_>],
) -> Result<(TableInput, TableInput), NetsError> {
    let spans = |v6: bool| -> Vec<ListSpans<'_>> {
        lists
            .iter()
            .map(|l| ListSpans {
                slot: l.slot,
                ranges: if v6 { l.v6 } else { l.v4 },
            })
            .collect()
    };
    let (spans_v4, spans_v6) = (spans(false), spans(true));
    let (v4, v6) = std::thread::scope(|s| {
        let v6 = s.spawn(|| {
            compile(
                Family::V6,
                &db.v6,
                asn.map_or(&[][..], |a| &a.v6),
                &spans_v6,
            )
        });
        let v4 = compile(
            Family::V4,
            &db.v4,
            asn.map_or(&[][..], |a| &a.v4),
            &spans_v4,
        );
        (v4, v6.join().expect("the net compiler panicked"))
    });
    Ok((v4?, v6?))
}

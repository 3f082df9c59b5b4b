//! Compiling the ranges of all files into disjoint CIDR prefixes (rules in the module docs of
//! [`super`]).
//!
//! Per family: collect every range with its file index and position, sort by start, cut the
//! address space into segments with a single winner, merge neighbours with the same country and
//! file, drop unknown segments, and split each segment into maximal CIDR blocks.
//!
//! Most real files are already sorted and disjoint: then the winner of every segment is simply
//! the range itself and the sweep is skipped. Otherwise a sweep line keeps the ranges that cover
//! the current address in a heap ordered by (smallest size, latest position); a range that has
//! ended is removed lazily when it reaches the top. Both paths are O(n log n) with no allocation
//! per range.

use std::{cmp::Reverse, collections::BinaryHeap};

use geofilter_common::{CountryId, PrefixInfo, UNKNOWN_COUNTRY};

use super::{
    CompiledDb, DbError, Limits, MAX_SOURCES, Prefix, SourceRanges, SourceSummary, text::host_mask,
};
use crate::family::Family;

/// Compiles the ranges of `sources` (in `--db` order) into the prefix table, without a
/// [`Limits`] budget: for data already bounded (the embedded database, tests).
///
/// # Panics
/// As [`compile_within`].
pub fn compile(sources: Vec<SourceRanges>) -> CompiledDb {
    let unbounded = Limits {
        ranges: usize::MAX,
        prefixes: usize::MAX,
        table_mib: usize::MAX,
    };
    compile_within(sources, &unbounded).expect("no limit to exceed")
}

/// Compiles the ranges of `sources` (in `--db` order) into the prefix table, or refuses them
/// once a family has more ranges or prefixes than `limits` allow.
///
/// Ranges with `start > end` or outside their family are ignored (the readers never produce
/// them).
///
/// # Panics
/// With more than 65,536 sources ([`PrefixInfo::source`] is a `u16`); [`super::load`] refuses
/// that many files first.
pub fn compile_within(sources: Vec<SourceRanges>, limits: &Limits) -> Result<CompiledDb, DbError> {
    assert!(
        sources.len() <= MAX_SOURCES,
        "at most {MAX_SOURCES} database files"
    );
    let over = |what, family, unit, limit| DbError::OverBudget {
        files: sources
            .iter()
            .map(|s| s.path.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
        what,
        family,
        unit,
        limit,
        table_mib: limits.table_mib,
    };
    for family in Family::ALL {
        let total: usize = sources.iter().map(|s| s.ranges(family).len()).sum();
        if total > limits.ranges {
            return Err(over(
                "together hold",
                family.name(),
                "ranges",
                limits.ranges,
            ));
        }
    }
    let summaries = sources
        .iter()
        .map(|s| SourceSummary {
            path: s.path.clone(),
            format: s.format,
            ranges_v4: s.v4.len(),
            ranges_v6: s.v6.len(),
        })
        .collect();
    // The families are independent; compile them side by side.
    let max = limits.prefixes;
    let (v4, v6) = std::thread::scope(|scope| {
        let v4 = scope.spawn(|| compile_family(&sources, Family::V4, max));
        let v6 = compile_family(&sources, Family::V6, max);
        (v4.join().expect("IPv4 compile thread panicked"), v6)
    });
    let too_many = |family: Family| over("compile to", family.name(), "prefixes", max);
    Ok(CompiledDb {
        sources: summaries,
        v4: v4.ok_or_else(|| too_many(Family::V4))?,
        v6: v6.ok_or_else(|| too_many(Family::V6))?,
    })
}

/// One input range with its priority.
#[derive(Clone, Copy)]
struct Item {
    start: u128,
    end: u128,
    /// Position over all files in order: among ranges of equal size, the larger wins.
    seq: u32,
    country: CountryId,
    source: u16,
}

/// The family's prefixes, or `None` once there would be more than `max_prefixes`.
fn compile_family(
    sources: &[SourceRanges],
    family: Family,
    max_prefixes: usize,
) -> Option<Vec<Prefix>> {
    let (bits, max) = (family.bits(), family.max());
    let total: usize = sources.iter().map(|s| s.ranges(family).len()).sum();
    assert!(total < u32::MAX as usize, "too many ranges");
    let mut items = Vec::with_capacity(total);
    for (source, s) in sources.iter().enumerate() {
        for r in s.ranges(family) {
            if r.start > r.end || r.start > max {
                continue;
            }
            items.push(Item {
                start: r.start,
                end: r.end.min(max),
                seq: items.len() as u32,
                country: r.country,
                source: source as u16,
            });
        }
    }
    // Stable, and fast on the usual input: one or a few already sorted runs.
    if !items.is_sorted_by_key(|i| i.start) {
        items.sort_by_key(|i| i.start);
    }

    let mut out = Emitter {
        out: Vec::with_capacity(total.saturating_mul(2).min(max_prefixes)),
        bits,
        pending: None,
        max: max_prefixes,
        over: false,
    };
    if items.windows(2).all(|w| w[0].end < w[1].start) {
        for i in &items {
            out.push(i.start, i.end, i.country, i.source);
        }
    } else {
        sweep(&items, &mut out);
    }
    out.finish()
}

/// Emits the winning segments of overlapping, start-sorted `items` in address order.
fn sweep(items: &[Item], out: &mut Emitter) {
    let n = items.len();
    // (smaller size first, later position first, index into items)
    let mut active: BinaryHeap<(Reverse<u128>, u32, usize)> = BinaryHeap::new();
    let mut next = 0;
    let Some(first) = items.first() else { return };
    let mut pos = first.start;
    loop {
        while next < n && items[next].start <= pos {
            let it = &items[next];
            active.push((Reverse(it.end - it.start), it.seq, next));
            next += 1;
        }
        while active.peek().is_some_and(|&(_, _, i)| items[i].end < pos) {
            active.pop();
        }
        let Some(&(_, _, winner)) = active.peek() else {
            match items.get(next) {
                Some(it) => {
                    pos = it.start;
                    continue;
                }
                None => break,
            }
        };
        let w = &items[winner];
        // The winner holds until it ends or another range starts (which may be smaller).
        // `items[next].start > pos >= 0`, so the subtraction cannot underflow.
        let seg_end = match items.get(next) {
            Some(it) => w.end.min(it.start - 1),
            None => w.end,
        };
        out.push(pos, seg_end, w.country, w.source);
        match seg_end.checked_add(1) {
            Some(p) => pos = p,
            None => break,
        }
    }
}

/// Merges adjacent segments with the same country and file, drops unknown ones, and splits the
/// rest into CIDR prefixes.
struct Emitter {
    out: Vec<Prefix>,
    bits: u32,
    pending: Option<(u128, u128, PrefixInfo)>,
    /// The most prefixes `out` may hold; past it, `over` is set and nothing more is kept.
    max: usize,
    over: bool,
}

impl Emitter {
    fn push(&mut self, start: u128, end: u128, country: CountryId, source: u16) {
        if self.over {
            return;
        }
        let info = PrefixInfo { country, source };
        if let Some((_, pending_end, pending_info)) = &mut self.pending
            && *pending_info == info
            && pending_end.checked_add(1) == Some(start)
        {
            *pending_end = end;
            return;
        }
        self.flush();
        self.pending = Some((start, end, info));
    }

    fn flush(&mut self) {
        if let Some((start, end, info)) = self.pending.take()
            && info.country != UNKNOWN_COUNTRY
        {
            split_into_prefixes(start, end, self.bits, info, &mut self.out);
            // One segment adds at most 2 * (bits - 1) prefixes past the limit before this.
            if self.out.len() > self.max {
                self.over = true;
                self.out = Vec::new();
            }
        }
    }

    fn finish(mut self) -> Option<Vec<Prefix>> {
        self.flush();
        (!self.over).then_some(self.out)
    }
}

/// Splits `start..=end` into the fewest CIDR prefixes (greedy: at each step the largest block
/// that starts at `start`, is aligned to its size, and does not pass `end`).
pub(crate) fn split_into_prefixes(
    mut start: u128,
    end: u128,
    bits: u32,
    info: PrefixInfo,
    out: &mut Vec<Prefix>,
) {
    debug_assert!(start <= end && (bits == 128 || end >> bits == 0));
    loop {
        let align = start.trailing_zeros().min(bits);
        let span = end - start; // addresses in the rest, minus one
        // floor(log2(span + 1)): the largest power of two that fits.
        let fit = match span.checked_add(1) {
            Some(count) => 127 - count.leading_zeros(),
            None => 128,
        };
        let k = align.min(fit);
        out.push(Prefix {
            addr: start,
            len: (bits - k) as u8,
            info,
        });
        if k == 128 {
            break;
        }
        match start.checked_add(1 << k) {
            Some(next) if next <= end => start = next,
            _ => break,
        }
    }
}

/// The last address of a prefix.
pub(crate) fn last_addr(addr: u128, len: u8, bits: u32) -> u128 {
    addr | host_mask(len.into(), bits)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::{
        super::{
            Format, Range,
            tests::{cc, ip, v4},
        },
        *,
    };

    fn split(start: u128, end: u128, bits: u32) -> Vec<(u128, u8)> {
        let mut out = Vec::new();
        let info = PrefixInfo {
            country: 1,
            source: 0,
        };
        split_into_prefixes(start, end, bits, info, &mut out);
        // Contiguous cover of exactly start..=end, each block aligned.
        let mut next = Some(start);
        for p in &out {
            assert_eq!(Some(p.addr), next);
            assert_eq!(p.addr & host_mask(p.len.into(), bits), 0, "unaligned");
            next = last_addr(p.addr, p.len, bits).checked_add(1);
        }
        assert_eq!(next, end.checked_add(1));
        out.iter().map(|p| (p.addr, p.len)).collect()
    }

    #[test]
    fn prefixes_of_edge_ranges() {
        assert_eq!(split(0, u32::MAX as u128, 32), [(0, 0)]);
        assert_eq!(split(0, u128::MAX, 128), [(0, 0)]);
        assert_eq!(split(u128::MAX, u128::MAX, 128), [(u128::MAX, 128)]);
        assert_eq!(
            split(u32::MAX as u128, u32::MAX as u128, 32),
            [(u32::MAX as u128, 32)]
        );
        assert_eq!(split(0, 0, 32), [(0, 32)]);
        // The upper half of each space, ending at the very last address.
        assert_eq!(split(1 << 31, u32::MAX as u128, 32), [(1 << 31, 1)]);
        assert_eq!(split(1 << 127, u128::MAX, 128), [(1 << 127, 1)]);
        // Everything but the first address: one prefix per bit.
        assert_eq!(split(1, u32::MAX as u128, 32).len(), 32);
        assert_eq!(split(1, u128::MAX, 128).len(), 128);
        // Everything but the last address.
        assert_eq!(split(0, u128::MAX - 1, 128).len(), 128);
        // Worst case: 2 * (bits - 1) prefixes.
        assert_eq!(split(1, u32::MAX as u128 - 1, 32).len(), 62);
        assert_eq!(split(1, u128::MAX - 1, 128).len(), 254);
        // Real unaligned range from GeoLite2.
        let p = split(v4("6.0.0.0"), v4("7.81.167.144"), 32);
        assert_eq!(p[0], (v4("6.0.0.0"), 8));
        assert_eq!(p[1], (v4("7.0.0.0"), 10));
        assert_eq!(*p.last().unwrap(), (v4("7.81.167.144"), 32));
        assert_eq!(
            split(v4("1.0.0.0"), v4("1.0.0.255"), 32),
            [(v4("1.0.0.0"), 24)]
        );
        assert_eq!(
            split(v4("10.0.0.1"), v4("10.0.0.6"), 32),
            [
                (v4("10.0.0.1"), 32),
                (v4("10.0.0.2"), 31),
                (v4("10.0.0.4"), 31),
                (v4("10.0.0.6"), 32)
            ]
        );
    }

    fn src(v4: &[(u128, u128, &str)], v6: &[(u128, u128, &str)]) -> SourceRanges {
        let conv = |l: &[(u128, u128, &str)]| {
            l.iter()
                .map(|&(start, end, c)| Range {
                    start,
                    end,
                    country: if c == "??" { UNKNOWN_COUNTRY } else { cc(c) },
                })
                .collect()
        };
        SourceRanges {
            path: PathBuf::from("t.csv"),
            format: Format::RangeCsv.into(),
            v4: conv(v4),
            v6: conv(v6),
        }
    }

    /// (first, last, country, source) of the compiled table, with prefixes merged back.
    fn segments(db: &[Prefix], bits: u32) -> Vec<(u128, u128, String, u16)> {
        let mut out: Vec<(u128, u128, String, u16)> = Vec::new();
        for p in db {
            let code = crate::country::code_str(p.info.country);
            let last = last_addr(p.addr, p.len, bits);
            if let Some(prev) = out.last_mut()
                && prev.1 + 1 == p.addr
                && prev.2 == code
                && prev.3 == p.info.source
            {
                prev.1 = last;
                continue;
            }
            out.push((p.addr, last, code, p.info.source));
        }
        out
    }

    fn seg(a: u128, b: u128, c: &str, s: u16) -> (u128, u128, String, u16) {
        (a, b, c.to_owned(), s)
    }

    #[test]
    fn nested_ranges_most_specific_wins() {
        let db = compile(vec![src(
            &[
                (0, 63, "DE"),
                (40, 47, "TR"),
                (44, 44, "FR"),
                (100, 200, "US"),
                (150, 300, "CA"),
            ],
            &[],
        )]);
        assert_eq!(
            segments(&db.v4, 32),
            [
                seg(0, 39, "DE", 0),
                seg(40, 43, "TR", 0),
                seg(44, 44, "FR", 0),
                seg(45, 47, "TR", 0),
                seg(48, 63, "DE", 0),
                // Partial overlap: the smaller range (US, 101 addresses) wins where both apply.
                seg(100, 200, "US", 0),
                seg(201, 300, "CA", 0),
            ]
        );
    }

    #[test]
    fn ties_go_to_later_file_then_later_line() {
        let a = src(&[(0, 255, "DE"), (256, 511, "FR")], &[]);
        let b = src(&[(0, 255, "RU")], &[]);
        let db = compile(vec![a.clone(), b.clone()]);
        assert_eq!(
            segments(&db.v4, 32),
            [seg(0, 255, "RU", 1), seg(256, 511, "FR", 0)]
        );
        let db = compile(vec![b, a]);
        assert_eq!(
            segments(&db.v4, 32),
            [seg(0, 255, "DE", 1), seg(256, 511, "FR", 1)]
        );
        // Within one file, the later line; also for equal-size ranges that only overlap.
        let db = compile(vec![src(&[(0, 9, "DE"), (0, 9, "FR"), (5, 14, "IT")], &[])]);
        assert_eq!(
            segments(&db.v4, 32),
            [seg(0, 4, "FR", 0), seg(5, 14, "IT", 0)]
        );
        // A smaller range wins even from an earlier file.
        let db = compile(vec![src(&[(4, 5, "DE")], &[]), src(&[(0, 9, "FR")], &[])]);
        assert_eq!(
            segments(&db.v4, 32),
            [seg(0, 3, "FR", 1), seg(4, 5, "DE", 0), seg(6, 9, "FR", 1)]
        );
    }

    #[test]
    fn unknown_ranges_take_part_and_are_dropped() {
        let db = compile(vec![src(
            &[(0, 255, "DE"), (16, 31, "??"), (300, 400, "??")],
            &[],
        )]);
        assert_eq!(
            segments(&db.v4, 32),
            [seg(0, 15, "DE", 0), seg(32, 255, "DE", 0)]
        );
        assert!(db.lookup("0.0.0.20".parse().unwrap()).is_none());
        assert!(db.lookup("0.0.1.100".parse().unwrap()).is_none());
        assert_eq!(db.countries().into_iter().collect::<Vec<_>>(), [cc("DE")]);
    }

    #[test]
    fn adjacent_equal_segments_merge() {
        let db = compile(vec![src(
            &[(0, 127, "DE"), (128, 255, "DE"), (256, 511, "FR")],
            &[],
        )]);
        assert_eq!(
            db.v4.iter().map(|p| (p.addr, p.len)).collect::<Vec<_>>(),
            [(0, 24), (256, 24)]
        );
        // Not across files: `why` must name the right one.
        let db = compile(vec![
            src(&[(0, 127, "DE")], &[]),
            src(&[(128, 255, "DE")], &[]),
        ]);
        assert_eq!(db.v4.len(), 2);
    }

    #[test]
    fn whole_spaces_and_their_ends() {
        let db = compile(vec![src(
            &[
                (0, u32::MAX as u128, "DE"),
                (u32::MAX as u128, u32::MAX as u128, "FR"),
            ],
            &[(0, u128::MAX, "US"), (u128::MAX - 255, u128::MAX, "CA")],
        )]);
        assert_eq!(
            segments(&db.v4, 32),
            [
                seg(0, u32::MAX as u128 - 1, "DE", 0),
                seg(u32::MAX as u128, u32::MAX as u128, "FR", 0)
            ]
        );
        assert_eq!(db.v4.len(), 33);
        assert_eq!(
            segments(&db.v6, 128),
            [
                seg(0, u128::MAX - 256, "US", 0),
                seg(u128::MAX - 255, u128::MAX, "CA", 0)
            ]
        );
        assert_eq!(
            db.lookup(ip("255.255.255.255")).unwrap().info.country,
            cc("FR")
        );
        assert_eq!(db.lookup(ip("0.0.0.0")).unwrap().info.country, cc("DE"));
        assert_eq!(
            db.lookup(ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"))
                .unwrap()
                .info
                .country,
            cc("CA")
        );
        assert_eq!(db.lookup(ip("::")).unwrap().info.country, cc("US"));
        let whole = compile(vec![src(
            &[(0, u32::MAX as u128, "DE")],
            &[(0, u128::MAX, "US")],
        )]);
        assert_eq!(
            whole.v4.iter().map(|p| (p.addr, p.len)).collect::<Vec<_>>(),
            [(0, 0)]
        );
        assert_eq!(
            whole.v6.iter().map(|p| (p.addr, p.len)).collect::<Vec<_>>(),
            [(0, 0)]
        );
        assert_eq!(whole.lookup(ip("255.255.255.255")).unwrap().len, 0);
    }

    #[test]
    fn sweep_handles_gaps_and_many_layers() {
        // Gaps between overlapping clusters, and a range starting right after a winner's end.
        let db = compile(vec![src(
            &[
                (10, 20, "DE"),
                (12, 13, "FR"),
                (50, 60, "IT"),
                (50, 55, "ES"),
                (56, 60, "PT"),
                (61, 61, "PL"),
            ],
            &[],
        )]);
        assert_eq!(
            segments(&db.v4, 32),
            [
                seg(10, 11, "DE", 0),
                seg(12, 13, "FR", 0),
                seg(14, 20, "DE", 0),
                seg(50, 55, "ES", 0),
                seg(56, 60, "PT", 0),
                seg(61, 61, "PL", 0),
            ]
        );
        // Out-of-family and reversed input is ignored rather than wrapped.
        let db = compile(vec![src(
            &[(5, 4, "DE"), (1 << 32, 1 << 33, "FR"), (0, 1 << 40, "IT")],
            &[],
        )]);
        assert_eq!(segments(&db.v4, 32), [seg(0, u32::MAX as u128, "IT", 0)]);
    }

    #[test]
    fn summaries_and_lookup_misses() {
        let db = compile(vec![src(
            &[(256, 511, "DE")],
            &[(1 << 100, (1 << 100) + 5, "FR")],
        )]);
        assert_eq!(
            db.sources,
            [SourceSummary {
                path: PathBuf::from("t.csv"),
                format: Format::RangeCsv.into(),
                ranges_v4: 1,
                ranges_v6: 1,
            }]
        );
        assert!(db.lookup(ip("0.0.0.255")).is_none());
        assert!(db.lookup(ip("0.0.2.0")).is_none());
        assert_eq!(db.lookup(ip("0.0.1.0")).unwrap().len, 24);
        assert!(db.lookup(ip("::1")).is_none());
        assert!(compile(Vec::new()).lookup(ip("1.2.3.4")).is_none());
    }
}

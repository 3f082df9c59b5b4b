//! Compiling the ranges of all files into disjoint CIDR prefixes (rules in the module docs of
//! [`super`]).
//!
//! Per family: collect every range with its file index and position, cut the address space into
//! segments with a single winner ([`super::sweep`]), merge neighbours with the same country and
//! file, drop unknown segments, and split each segment into maximal CIDR blocks.

use geofilter_common::{CountryId, PrefixInfo, UNKNOWN_COUNTRY};

use super::{
    CompiledDb, DbError, Limits, MAX_SOURCES, Prefix, SourceRanges, SourceSummary,
    prefixes::split_into_prefixes,
    sweep::{items, resolve},
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

/// The family's prefixes, or `None` once there would be more than `max_prefixes`.
fn compile_family(
    sources: &[SourceRanges],
    family: Family,
    max_prefixes: usize,
) -> Option<Vec<Prefix>> {
    let (bits, max) = (family.bits(), family.max());
    let total: usize = sources.iter().map(|s| s.ranges(family).len()).sum();
    let ranges = sources.iter().enumerate().flat_map(|(source, s)| {
        s.ranges(family)
            .iter()
            .map(move |r| (r.start, r.end, (r.country, source as u16)))
    });
    let mut items = items(ranges, max, total);
    let mut out = Emitter {
        out: Vec::with_capacity(total.saturating_mul(2).min(max_prefixes)),
        bits,
        pending: None,
        max: max_prefixes,
        over: false,
    };
    resolve(&mut items, |start, end, w| {
        out.push(start, end, w.value.0, w.value.1);
    });
    out.finish()
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

#[cfg(test)]
mod tests;

//! Resolving the ranges of all files into the disjoint ASN table, by the country rules (most
//! specific wins, ties to the later file and line; [`crate::geoip::sweep`] does the cutting),
//! then merging adjacent pieces of one AS and dropping the pieces without one.

use std::collections::BTreeMap;

use super::{AsnDb, AsnError, AsnRange, AsnSource, AsnSourceSummary, NO_ASN};
use crate::{
    family::Family,
    geoip::{
        Limits,
        sweep::{items, resolve},
    },
};

/// Resolves `sources` (in `--asn-db` order) into one table, or refuses them once a family holds
/// more ranges than `limits` allow. `embedded` marks the sources in the summaries.
///
/// Ranges with `start > end` or outside their family are ignored (the readers never produce
/// them).
pub fn compile_within(
    sources: Vec<AsnSource>,
    limits: &Limits,
    embedded: bool,
) -> Result<AsnDb, AsnError> {
    for family in Family::ALL {
        let total: usize = sources.iter().map(|s| s.ranges(family).len()).sum();
        if total > limits.ranges {
            return Err(AsnError::OverBudget {
                files: sources
                    .iter()
                    .map(|s| s.path.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                family: family.name(),
                limit: limits.ranges,
                table_mib: limits.table_mib,
            });
        }
    }
    let (v4, v6) = std::thread::scope(|scope| {
        let v4 = scope.spawn(|| compile_family(&sources, Family::V4));
        let v6 = compile_family(&sources, Family::V6);
        (v4.join().expect("IPv4 compile thread panicked"), v6)
    });
    let summaries = sources
        .iter()
        .map(|s| AsnSourceSummary::of(s, embedded))
        .collect();
    let mut names = BTreeMap::new();
    for source in sources {
        names.extend(source.names);
    }
    Ok(AsnDb {
        sources: summaries,
        v4,
        v6,
        names,
    })
}

/// The family's disjoint ranges with an AS, adjacent ranges of one AS merged.
fn compile_family(sources: &[AsnSource], family: Family) -> Vec<AsnRange> {
    let total = sources.iter().map(|s| s.ranges(family).len()).sum();
    let ranges = sources
        .iter()
        .flat_map(|s| s.ranges(family))
        .map(|r| (r.start, r.end, r.asn));
    let mut items = items(ranges, family.max(), total);
    let mut out: Vec<AsnRange> = Vec::with_capacity(items.len());
    // The last piece emitted, with or without an AS: a piece of another AS (or none) between
    // two of the same AS keeps them apart.
    let mut last: Option<AsnRange> = None;
    resolve(&mut items, |start, end, winner| {
        let asn = winner.value;
        if let Some(l) = &mut last
            && l.asn == asn
            && l.end.checked_add(1) == Some(start)
        {
            l.end = end;
            return;
        }
        if let Some(done) = last.replace(AsnRange { start, end, asn })
            && done.asn != NO_ASN
        {
            out.push(done);
        }
    });
    out.extend(last.filter(|l| l.asn != NO_ASN));
    out
}

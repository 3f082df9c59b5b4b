//! Overlap resolution, shared by the country compiler ([`super::compile()`]) and the ASN compiler
//! ([`crate::asn`]): the address space cut into segments with a single winner, the smallest range
//! that contains the segment, ties to the later position.
//!
//! Most real files are already sorted and disjoint: then the winner of every segment is simply
//! the range itself and the sweep is skipped. Otherwise a sweep line keeps the ranges that cover
//! the current address in a heap ordered by (smallest size, latest position); a range that has
//! ended is removed lazily when it reaches the top. Both paths are O(n log n) with no allocation
//! per range.

use std::{cmp::Reverse, collections::BinaryHeap};

/// One input range with its priority and what it maps to.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Item<V> {
    pub start: u128,
    pub end: u128,
    /// Position over all files in order: among ranges of equal size, the larger wins.
    pub seq: u32,
    pub value: V,
}

/// The items of `ranges` (inclusive, within `0..=max`, in file and line order), each numbered by
/// its position; ranges with `start > end` or starting past `max` are left out, ends past `max`
/// cut.
pub(crate) fn items<V>(
    ranges: impl Iterator<Item = (u128, u128, V)>,
    max: u128,
    capacity: usize,
) -> Vec<Item<V>> {
    assert!(capacity < u32::MAX as usize, "too many ranges");
    let mut items = Vec::with_capacity(capacity);
    for (start, end, value) in ranges {
        if start > end || start > max {
            continue;
        }
        items.push(Item {
            start,
            end: end.min(max),
            seq: items.len() as u32,
            value,
        });
    }
    items
}

/// Emits the winning segments of `items` (`start <= end` each) in address order, as
/// `(segment start, segment end, winner)`. Sorts `items` by start first (stably, so ties keep
/// their order).
pub(crate) fn resolve<V>(items: &mut [Item<V>], mut emit: impl FnMut(u128, u128, &Item<V>)) {
    // Stable, and fast on the usual input: one or a few already sorted runs.
    if !items.is_sorted_by_key(|i| i.start) {
        items.sort_by_key(|i| i.start);
    }
    if items.windows(2).all(|w| w[0].end < w[1].start) {
        for i in items.iter() {
            emit(i.start, i.end, i);
        }
    } else {
        sweep(items, emit);
    }
}

/// Emits the winning segments of overlapping, start-sorted `items` in address order.
fn sweep<V>(items: &[Item<V>], mut emit: impl FnMut(u128, u128, &Item<V>)) {
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
        emit(pos, seg_end, w);
        match seg_end.checked_add(1) {
            Some(p) => pos = p,
            None => break,
        }
    }
}

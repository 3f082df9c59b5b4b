//! The structural check an MMDB search tree must pass before the `maxminddb` crate's network
//! iterator walks it: a tree, not a graph that expands to 2^128 networks.

use std::path::Path;

use maxminddb::Metadata;

use crate::geoip::DbError;

/// Refuses a search tree that is not a tree before the network iterator walks it.
///
/// The format calls the search tree a binary trie, but nothing in a file stops a record from
/// pointing at a node that another record already points at. The crate's iterator walks every
/// path (depth first, bounded only by the address width), so 32 nodes that each point twice at
/// the next expand to 2^32 networks, and 128 such nodes to 2^128 steps: a 432-byte file kept a
/// reader allocating until it died. In a tree of `n` nodes every node is reached once, so a walk
/// visits at most `2n + 1` records (the root, then each node's two records); the only node a
/// valid file reaches more than once is the IPv4 subtree of an IPv6 tree (aliased at
/// `::ffff:0:0/96`, `2001::/32`, `2002::/16`), and the iterator skips those aliases without
/// entering them. This walk follows the iterator's order and alias rule exactly and stops after
/// `2n + 1` visits, so it costs O(n) and the iterator afterwards does no more than that.
pub(crate) fn check_tree(buf: &[u8], meta: &Metadata, path: &Path) -> Result<(), DbError> {
    let nodes = meta.node_count as usize;
    let tree = Tree {
        buf,
        record_bits: meta.record_size,
        nodes,
    };
    let bits: u32 = if meta.ip_version == 6 { 128 } else { 32 };
    // The crate finds the IPv4 subtree by following 96 zero bits from the root.
    let ipv4_start = if bits == 128 {
        let mut node = 0;
        for _ in 0..96 {
            if node >= nodes {
                break;
            }
            node = tree.record(node, 0);
        }
        node
    } else {
        0
    };
    let limit = 2 * nodes as u64 + 1;
    let mut visits = 0u64;
    // (node or record value, depth, whether every bit so far is zero)
    let mut stack = vec![(0usize, 0u32, true)];
    while let Some((node, depth, zeros)) = stack.pop() {
        visits += 1;
        if visits > limit {
            return Err(DbError::Invalid {
                path: path.to_owned(),
                reason: format!(
                    "not a valid MaxMind DB file: its search tree of {nodes} nodes is walked more \
                     than {limit} times, so its nodes are shared (a graph, not a tree) and it \
                     would expand to far more networks than the file holds"
                ),
            });
        }
        // The iterator's alias rule: the IPv4 subtree reached by any path with a bit set in the
        // first 96 is an alias, not entered.
        let alias = bits == 128 && ipv4_start != 0 && node == ipv4_start && !zeros;
        // Only internal nodes are entered; a node deeper than the address width is a cycle,
        // which the iterator reports itself as soon as it gets there (in the same order).
        if alias || node >= nodes || depth >= bits {
            continue;
        }
        stack.push((tree.record(node, 1), depth + 1, zeros && depth >= 96));
        stack.push((tree.record(node, 0), depth + 1, zeros));
    }
    Ok(())
}

/// The search tree at the start of an MMDB file, whose size the crate has checked.
struct Tree<'a> {
    buf: &'a [u8],
    record_bits: u16,
    nodes: usize,
}

impl Tree<'_> {
    /// Record `side` (0 left, 1 right) of `node`: 24, 28 or 32 bits, big-endian; with 28 bits
    /// the middle byte holds the high nibbles of both records (MaxMind DB spec, "Search Tree").
    fn record(&self, node: usize, side: usize) -> usize {
        debug_assert!(node < self.nodes);
        let be = |b: &[u8]| b.iter().fold(0usize, |v, &x| v << 8 | usize::from(x));
        match self.record_bits {
            24 => be(&self.buf[node * 6 + side * 3..][..3]),
            28 => {
                let n = &self.buf[node * 7..][..7];
                if side == 0 {
                    usize::from(n[3] >> 4) << 24 | be(&n[..3])
                } else {
                    usize::from(n[3] & 0x0f) << 24 | be(&n[4..])
                }
            }
            _ => be(&self.buf[node * 8 + side * 4..][..4]),
        }
    }
}

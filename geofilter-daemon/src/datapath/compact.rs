//! The compiled trie in the kernel's form: each chunk as a node of runs with a bitmap, packed
//! into 4 KiB pages (layout: [`geofilter_common::table`]).
//!
//! Lossless by construction: a node holds one value per run of equal entries and the bitmap
//! says where each run starts, so every entry of every chunk decodes to the entry it was (a test
//! checks every index of every chunk of the real databases). The levels are the compiler's, so
//! exactness follows from [`StrideTable`]'s.
//!
//! Placement: root chunk `b` at word 0 of page `b`; every other node best-fit, largest first,
//! into the space left, so pages fill nearly completely (a world table wastes well under 1 %).

use std::collections::BTreeSet;

use geofilter_common::table::{
    BITMAP_WORDS, CHUNK_ENTRIES, Chunk, ENTRY_EXCEPTION, Entry, MAX_NETS, MAX_PAGES, NET_PAGE,
    NETS_PER_PAGE, NODE_HEADER_WORDS, Net, NodeAddr, PAGE_SHIFT, PAGE_WORDS, Page, ROOT_CHUNKS,
    node_addr, node_entry, node_rank, page_net,
};

use super::stride::{Marks, StrideTable};

#[derive(Debug, thiserror::Error)]
#[error("the table needs more than {MAX_PAGES} pages")]
pub struct TooManyPages;

/// A table's nets (index: the net its leaves name; net 0 is no ASN and no list).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetPages {
    pub nets: Vec<Net>,
}

impl NetPages {
    /// Pages the nets take (at least one: net 0 is always there).
    pub fn net_pages(&self) -> usize {
        self.nets.len().max(1).div_ceil(NETS_PER_PAGE as usize)
    }
}

/// A compiled table in the kernel's form, with the exception marks of `marks`.
#[derive(Clone, Debug)]
pub struct CompactTable {
    pub pages: Vec<Page>,
    /// The node of each chunk of the compiled table.
    pub nodes: Vec<NodeAddr>,
}

/// The first page after the net pages: where nodes that do not fit the root pages go.
fn first_node_page(nets: &NetPages) -> usize {
    NET_PAGE as usize + nets.net_pages()
}

/// Runs of equal entries in `chunk`. (A plain loop over the words: the daemon's debug build
/// runs this for every chunk of a world table, and the test VMs run the debug build.)
fn runs(chunk: &Chunk) -> usize {
    let mut runs = 1;
    let mut last = chunk.entries[0].0;
    for e in &chunk.entries[1..] {
        runs += usize::from(e.0 != last);
        last = e.0;
    }
    runs
}

/// Words of the node for `chunk`.
fn node_words(chunk: &Chunk) -> usize {
    NODE_HEADER_WORDS + runs(chunk)
}

/// Words of a 64-byte cache line.
const LINE_WORDS: usize = 16;

/// Where the next node may start in a page whose first `used` words are taken: there, or at the
/// next cache line if its header (bitmap and counts) would straddle one, so reading a node's
/// bitmap word and count byte costs one cache line, never two.
fn next_start(used: usize) -> usize {
    if used % LINE_WORDS + NODE_HEADER_WORDS > LINE_WORDS {
        used.next_multiple_of(LINE_WORDS)
    } else {
        used
    }
}

/// The node address of every chunk and the number of pages. The net pages between the root
/// pages and the rest hold no nodes.
fn place(table: &StrideTable, nets: &NetPages) -> Result<(Vec<NodeAddr>, usize), TooManyPages> {
    let mut nodes = vec![0; table.chunks.len()];
    let words: Vec<usize> = table.chunks.iter().map(node_words).collect();
    let mut used = words[..ROOT_CHUNKS as usize].to_vec();
    used.resize(first_node_page(nets), PAGE_WORDS);
    for (b, node) in nodes.iter_mut().enumerate().take(ROOT_CHUNKS as usize) {
        *node = node_addr(b as u32, 0);
    }
    // Best fit, decreasing: (room for the next node, page) of every page.
    let room = |used: usize| PAGE_WORDS.saturating_sub(next_start(used));
    let mut free: BTreeSet<(usize, usize)> = used
        .iter()
        .enumerate()
        .map(|(page, &u)| (room(u), page))
        .filter(|&(room, _)| room > 0)
        .collect();
    let mut rest: Vec<(usize, usize)> = (ROOT_CHUNKS as usize..table.chunks.len())
        .map(|i| (words[i], i))
        .collect();
    rest.sort_unstable_by(|a, b| b.cmp(a));
    for (words, index) in rest {
        let page = match free.range((words, 0)..).next().copied() {
            Some(slot) => {
                free.remove(&slot);
                slot.1
            }
            None => {
                used.push(0);
                used.len() - 1
            }
        };
        if page >= MAX_PAGES as usize {
            return Err(TooManyPages);
        }
        let start = next_start(used[page]);
        nodes[index] = node_addr(page as u32, start);
        used[page] = start + words;
        free.insert((room(used[page]), page));
    }
    Ok((nodes, used.len()))
}

impl CompactTable {
    /// Encodes `table` with the marks of `marks` and the nets of `nets`.
    pub fn encode(
        table: &StrideTable,
        marks: &Marks,
        nets: &NetPages,
    ) -> Result<Self, TooManyPages> {
        if nets.nets.len() > MAX_NETS as usize {
            return Err(TooManyPages);
        }
        let (nodes, pages) = place(table, nets)?;
        let mut out = Self {
            pages: vec![Page::ZERO; pages],
            nodes,
        };
        for index in 0..table.chunks.len() {
            out.write_node(table, marks, index as u32);
        }
        out.write_nets(nets);
        Ok(out)
    }

    /// Writes `nets` into the net pages (which must be there: see [`Self::encode`]).
    pub fn write_nets(&mut self, nets: &NetPages) {
        for (id, &net) in nets.nets.iter().enumerate() {
            self.set_net(id as u32, net);
        }
    }

    /// Sets net `id` in place; returns the page it is in.
    pub fn set_net(&mut self, id: u32, net: Net) -> u32 {
        let page = NET_PAGE + id / NETS_PER_PAGE;
        let at = (id % NETS_PER_PAGE) as usize * 2;
        let words = &mut self.pages[page as usize].words;
        (words[at], words[at + 1]) = (net.listed, net.lists);
        page
    }

    /// Writes chunk `index`'s node again with its current marks, in place (its shape does not
    /// depend on marks); returns the page it is in.
    pub fn write_node(&mut self, table: &StrideTable, marks: &Marks, index: u32) -> u32 {
        let chunk = &table.chunks[index as usize];
        let nodes = &self.nodes;
        let value = |e: Entry| {
            if e.is_child() {
                Entry::child(nodes[e.child_index() as usize]).0
            } else {
                e.0
            }
        };
        let addr = nodes[index as usize];
        let (page, start) = (addr >> PAGE_SHIFT, (addr as usize) & (PAGE_WORDS - 1));
        let words = &mut self.pages[page as usize].words;
        let node = &mut words[start..];
        node[..NODE_HEADER_WORDS].fill(0);
        node[NODE_HEADER_WORDS] = value(chunk.entries[0]);
        // Run starts after entry 0 so far: the rank of the current run.
        let mut starts = 0u32;
        for i in 1..CHUNK_ENTRIES {
            if i % 32 == 0 {
                // At most 224: fits its byte.
                node[BITMAP_WORDS + i / 128] |= starts << ((i / 32 % 4) * 8);
            }
            if chunk.entries[i].0 != chunk.entries[i - 1].0 {
                starts += 1;
                node[i / 32] |= 1 << (i % 32);
                node[NODE_HEADER_WORDS + starts as usize] = value(chunk.entries[i]);
            }
        }
        // A mark anywhere in a run marks the run.
        for i in marks.marked_entries(index) {
            let rank = node_rank(words, start, i);
            words[start + NODE_HEADER_WORDS + rank] |= ENTRY_EXCEPTION;
        }
        page
    }

    /// Kernel bytes of the table's values.
    pub fn bytes(&self) -> usize {
        self.pages.len() * size_of::<Page>()
    }

    /// What the program finds for `addr`: the entry it ends on and whether its path was marked
    /// (the host's copy of its walk, over the same decoding); a missing page reads as the
    /// program reads it, unknown and marked.
    pub fn lookup(&self, bits: u32, addr: u128) -> (Entry, bool) {
        walk(
            |i| self.pages.get(i as usize).copied().ok_or(()),
            bits,
            addr,
        )
        .unwrap_or((Entry::UNKNOWN, true))
    }
}

/// The program's walk for `addr` over the pages `page(index)` returns (from a copy or from the
/// kernel's array).
pub fn walk<E>(
    mut page: impl FnMut(u32) -> Result<Page, E>,
    bits: u32,
    addr: u128,
) -> Result<(Entry, bool), E> {
    let byte = |resolved: u32| (addr >> (bits - resolved) & 0xff) as usize;
    let mut entry = node_entry(&page(byte(8) as u32)?.words, 0, byte(16));
    let mut marked = entry.exception_marked();
    let mut resolved = 16;
    while entry.is_child() && resolved < bits {
        resolved += 8;
        let addr = entry.child_index();
        let words = page(addr >> PAGE_SHIFT)?.words;
        entry = node_entry(&words, (addr as usize) & (PAGE_WORDS - 1), byte(resolved));
        marked |= entry.exception_marked();
    }
    Ok((entry, marked))
}

/// A kernel table read back: the compiled trie it encodes (chunks in the order a walk from the
/// root finds them, marks dropped), the node of each chunk, and its nets.
#[derive(Debug)]
pub struct Decoded {
    pub chunks: Vec<Chunk>,
    pub nodes: Vec<NodeAddr>,
    pub nets: NetPages,
}

/// Reads a kernel table back (see [`Decoded`]): for adopting an earlier daemon's table in place.
pub fn decode(pages: &[Page]) -> Result<Decoded, String> {
    if pages.len() <= NET_PAGE as usize {
        return Err(format!(
            "{} pages, fewer than the {} of a root and a net page",
            pages.len(),
            NET_PAGE + 1
        ));
    }
    let mut chunks: Vec<Chunk> = Vec::new();
    let mut index_of = std::collections::HashMap::new();
    let mut queue: Vec<NodeAddr> = (0..ROOT_CHUNKS).map(|b| node_addr(b, 0)).collect();
    for (i, &addr) in queue.iter().enumerate() {
        index_of.insert(addr, i as u32);
    }
    let mut next = 0;
    while next < queue.len() {
        let addr = queue[next];
        next += 1;
        let page = (addr >> PAGE_SHIFT) as usize;
        let start = (addr as usize) & (PAGE_WORDS - 1);
        let words = &pages
            .get(page)
            .ok_or_else(|| format!("a node in page {page}, past the {} pages", pages.len()))?
            .words;
        let runs: u32 = words[start..]
            .iter()
            .take(BITMAP_WORDS)
            .map(|w| w.count_ones())
            .sum();
        if start + NODE_HEADER_WORDS + runs as usize >= PAGE_WORDS || words[start] & 1 != 0 {
            return Err(format!("a malformed node at page {page} word {start}"));
        }
        let mut chunk = Chunk::EMPTY;
        for i in 0..CHUNK_ENTRIES {
            let e = node_entry(words, start, i).with_exception_mark(false);
            chunk.entries[i] = if e.is_child() {
                let len = index_of.len() as u32;
                let child = *index_of.entry(e.child_index()).or_insert_with(|| {
                    queue.push(e.child_index());
                    len
                });
                Entry::child(child)
            } else {
                e
            };
        }
        chunks.push(chunk);
    }
    // Every net a leaf names.
    let mut top_net = 0;
    for chunk in &chunks {
        for e in &chunk.entries {
            if !e.is_child() {
                top_net = top_net.max(e.info().net);
            }
        }
    }
    let net_pages = (top_net as usize + 1).div_ceil(NETS_PER_PAGE as usize);
    if NET_PAGE as usize + net_pages > pages.len() {
        return Err(format!(
            "a leaf names net {top_net}, past the table's {} pages",
            pages.len()
        ));
    }
    let nets = (0..=top_net)
        .map(|n| page_net(&pages[(NET_PAGE + n / NETS_PER_PAGE) as usize].words, n))
        .collect();
    Ok(Decoded {
        chunks,
        nodes: queue,
        nets: NetPages { nets },
    })
}

#[cfg(test)]
mod tests;

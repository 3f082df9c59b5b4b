//! A minimal MMDB writer for test fixtures (search tree with 24-bit records, maps, strings and
//! integers); just enough of <https://maxmind.github.io/MaxMind-DB/> to build the layouts the
//! reader must handle. Built only for the daemon's unit tests and, through the `test-helpers`
//! feature, for the privileged exactness and db tests, which write MMDB files from real data; not
//! meant for production files, so the release daemon does not contain it.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rec {
    Empty,
    Node(usize),
    /// Offset into the data section.
    Data(usize),
}

/// A value in the data section.
pub enum V<'a> {
    S(&'a str),
    U16(u16),
    U32(u32),
    U64(u64),
    M(Vec<(&'a str, V<'a>)>),
    A(Vec<V<'a>>),
}

pub struct Writer {
    ip_version: u16,
    nodes: Vec<[Rec; 2]>,
    data: Vec<u8>,
}

impl Writer {
    pub fn new(ip_version: u16) -> Self {
        Self {
            ip_version,
            nodes: vec![[Rec::Empty; 2]],
            data: Vec::new(),
        }
    }

    fn bits(&self) -> u32 {
        if self.ip_version == 6 { 128 } else { 32 }
    }

    /// Stores a value in the data section; the record to point networks at.
    pub fn value(&mut self, v: &V) -> Rec {
        let at = self.data.len();
        encode(v, &mut self.data);
        Rec::Data(at)
    }

    /// Stores an ASN record as GeoLite2-ASN has them: `autonomous_system_number` and, when
    /// given, `autonomous_system_organization` (up to 284 bytes).
    pub fn asn_record(&mut self, asn: u32, organisation: Option<&str>) -> Rec {
        let mut m = vec![("autonomous_system_number", V::U32(asn))];
        if let Some(o) = organisation {
            m.push(("autonomous_system_organization", V::S(o)));
        }
        self.value(&V::M(m))
    }

    /// Points `addr/len` (within the tree's width) at `rec`, creating nodes on the way.
    pub fn insert(&mut self, addr: u128, len: u32, rec: Rec) {
        assert!(len >= 1, "the root is not a record");
        let bits = self.bits();
        let mut node = 0;
        for depth in 0..len - 1 {
            let bit = (addr >> (bits - 1 - depth) & 1) as usize;
            node = match self.nodes[node][bit] {
                Rec::Node(n) => n,
                Rec::Empty => {
                    self.nodes.push([Rec::Empty; 2]);
                    let n = self.nodes.len() - 1;
                    self.nodes[node][bit] = Rec::Node(n);
                    n
                }
                Rec::Data(_) => panic!("overlapping networks in the fixture"),
            };
        }
        let bit = (addr >> (bits - len) & 1) as usize;
        self.nodes[node][bit] = rec;
    }

    /// Sets both records of node `n` directly, adding nodes up to it: for trees `insert`
    /// cannot build, such as shared subtrees (hostile input).
    pub fn set_node(&mut self, n: usize, records: [Rec; 2]) {
        if self.nodes.len() <= n {
            self.nodes.resize(n + 1, [Rec::Empty; 2]);
        }
        self.nodes[n] = records;
    }

    /// A database of `levels` nodes where node i points twice at node i + 1 and the last
    /// node twice at `{country: {iso_code: RU}}`: 432 bytes that expand to 2^levels
    /// networks (issue 10, defect 3).
    pub fn dag(ip_version: u16, levels: usize) -> Vec<u8> {
        let mut w = Writer::new(ip_version);
        let ru = w.value(&V::M(vec![(
            "country",
            V::M(vec![("iso_code", V::S("RU"))]),
        )]));
        for i in 0..levels - 1 {
            w.set_node(i, [Rec::Node(i + 1); 2]);
        }
        w.set_node(levels - 1, [ru; 2]);
        w.finish("GeoIP2-Country")
    }

    /// The node reached by following `addr`'s first `len` bits.
    pub fn node_at(&self, addr: u128, len: u32) -> Rec {
        let mut rec = Rec::Node(0);
        for depth in 0..len {
            let Rec::Node(n) = rec else { return rec };
            rec = self.nodes[n][(addr >> (self.bits() - 1 - depth) & 1) as usize];
        }
        rec
    }

    pub fn finish(self, database_type: &str) -> Vec<u8> {
        let count = self.nodes.len();
        let record = |r: Rec| -> u32 {
            let v = match r {
                Rec::Empty => count,
                Rec::Node(n) => n,
                Rec::Data(off) => count + 16 + off,
            };
            assert!(v < 1 << 24);
            v as u32
        };
        let mut out = Vec::new();
        for [l, r] in &self.nodes {
            out.extend_from_slice(&record(*l).to_be_bytes()[1..]);
            out.extend_from_slice(&record(*r).to_be_bytes()[1..]);
        }
        out.extend_from_slice(&[0; 16]);
        out.extend_from_slice(&self.data);
        out.extend_from_slice(super::mmdb::METADATA_MARKER);
        let meta = V::M(vec![
            ("binary_format_major_version", V::U16(2)),
            ("binary_format_minor_version", V::U16(0)),
            ("build_epoch", V::U64(1_781_000_000)),
            ("database_type", V::S(database_type)),
            (
                "description",
                V::M(vec![("en", V::S("geofilter test fixture"))]),
            ),
            ("ip_version", V::U16(self.ip_version)),
            ("languages", V::A(vec![V::S("en")])),
            ("node_count", V::U32(count as u32)),
            ("record_size", V::U16(24)),
        ]);
        encode(&meta, &mut out);
        out
    }
}

fn control(out: &mut Vec<u8>, kind: u8, size: usize) {
    // Sizes 29 to 284 take one extra byte after the type (the format's "size 29" case).
    assert!(size < 29 + 256, "fixture values are small");
    let (short, extra) = if size < 29 {
        (size as u8, None)
    } else {
        (29, Some((size - 29) as u8))
    };
    if kind <= 7 {
        out.push(kind << 5 | short);
    } else {
        out.push(short);
        out.push(kind - 7);
    }
    out.extend(extra);
}

fn encode(v: &V, out: &mut Vec<u8>) {
    let uint = |out: &mut Vec<u8>, kind: u8, n: u64| {
        let bytes = n.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        control(out, kind, 8 - skip);
        out.extend_from_slice(&bytes[skip..]);
    };
    match v {
        V::S(s) => {
            control(out, 2, s.len());
            out.extend_from_slice(s.as_bytes());
        }
        V::U16(n) => uint(out, 5, (*n).into()),
        V::U32(n) => uint(out, 6, (*n).into()),
        V::U64(n) => uint(out, 9, *n),
        V::M(pairs) => {
            control(out, 7, pairs.len());
            for (k, v) in pairs {
                encode(&V::S(k), out);
                encode(v, out);
            }
        }
        V::A(items) => {
            control(out, 11, items.len());
            for v in items {
                encode(v, out);
            }
        }
    }
}

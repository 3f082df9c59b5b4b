//! Acceptance: the country the **kernel** finds for an address equals a straightforward reference
//! lookup over the same database, for every database format, IPv4 and IPv6.
//!
//! Each case compiles its files exactly as the daemon does (`geoip::load`), installs the table in
//! a freshly loaded XDP program (`Datapath::load` + `install_tables`), and asks the live program
//! (`Datapath::classify`, a BPF_PROG_TEST_RUN probe) about every range boundary of every file
//! (start, end, start-1, end+1) and 100,000 random addresses per family. The reference is
//! [`ReferenceIndex`]: the rules of `geoip::reference::reference_lookup` (smallest containing
//! range, ties to the later file and line, pseudo-codes unknown) over the ranges as read, with no
//! code shared with the compiler.
//!
//! Data: the committed real slices and fixtures, plus files written here in each format from
//! the real geo-whois-asn-country slices (so every format is exercised at a few thousand real,
//! overlapping, unaligned ranges), plus the real iptoasn MMDB (315k networks). The full
//! geo-whois-asn-country package (550k ranges) is fetched with `npm pack` into
//! `target/exactness-data/`; when the registry is unreachable that test says so loudly, and
//! fails when `CI` is set.

use std::{
    collections::{BTreeMap, HashMap},
    fmt::Write as _,
    io::Write as _,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
    time::Instant,
};

use geofilter_common::{CountryId, UNKNOWN_COUNTRY};
use geofilter_daemon::{
    country::code_str,
    datapath::Datapath,
    geoip::{
        self, CompiledDb, Format, Prefix, Range, SourceRanges, embedded,
        mmdb_writer::{Rec, V, Writer},
        reference::ReferenceIndex,
    },
};
use geofilter_tests::{netns::unique, require_root};

/// Random addresses per family and case.
const RANDOM: usize = 100_000;

/// The npm package of the full-dataset test, pinned to the version the embedded database was
/// built from (so that test also proves the embedded table is exactly this data).
const NPM_PACKAGE: &str = "@ip-location-db/geo-whois-asn-country";
const NPM_VERSION: &str = "2.3.2026061719";

fn testdata(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../geofilter-daemon/testdata")
        .join(rel)
}

/// Progress lines that the test harness does not capture (it only captures the print macros),
/// so a run shows what was checked and how long it took.
fn say(msg: &str) {
    let _ = writeln!(std::io::stderr(), "exactness: {msg}");
}

/// A temporary folder, removed on drop (also when the test panics).
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let p = std::env::temp_dir().join(unique("gf-exact-"));
        std::fs::create_dir_all(&p).expect("temp dir");
        Self(p)
    }
    fn join(&self, rel: &str) -> PathBuf {
        let p = self.0.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("temp subdir");
        }
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// splitmix64: reproducible random addresses without a dependency.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn u128(&mut self) -> u128 {
        (u128::from(self.next_u64()) << 64) | u128::from(self.next_u64())
    }
    /// Uniform in `0..n` (n > 0), up to a negligible bias.
    fn below(&mut self, n: u128) -> u128 {
        self.u128() % n
    }
}

fn to_ip(v6: bool, addr: u128) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::from(addr))
    } else {
        IpAddr::V4(Ipv4Addr::from(addr as u32))
    }
}

/// Reads `paths` as the reference sees them and compiles them as the daemon does.
fn read(paths: &[PathBuf], format: Option<Format>) -> (Vec<SourceRanges>, CompiledDb) {
    let sources = paths
        .iter()
        .map(|p| {
            geoip::read_source(p, format).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
        })
        .collect();
    let db = geoip::load(paths, format).unwrap_or_else(|e| panic!("compiling: {e}"));
    (sources, db)
}

/// The addresses to ask about for one family: every boundary of every range, then `RANDOM`
/// random ones (three quarters near a random range, where boundaries are; a quarter uniform).
fn addresses(sources: &[SourceRanges], v6: bool, seed: u64) -> (Vec<u128>, usize) {
    let max = if v6 { u128::MAX } else { u32::MAX.into() };
    let ranges: Vec<&Range> = sources
        .iter()
        .flat_map(|s| if v6 { &s.v6 } else { &s.v4 })
        .collect();
    let mut out = Vec::with_capacity(ranges.len() * 4 + RANDOM);
    for r in &ranges {
        out.push(r.start);
        out.push(r.end);
        if let Some(a) = r.start.checked_sub(1) {
            out.push(a);
        }
        if r.end < max {
            out.push(r.end + 1);
        }
    }
    let boundaries = out.len();
    let mut rng = Rng(seed);
    for _ in 0..RANDOM {
        let near = !ranges.is_empty() && !rng.next_u64().is_multiple_of(4);
        let addr = if near {
            let r = ranges[rng.below(ranges.len() as u128) as usize];
            // Within the range or up to its own size outside it on either side.
            let size = (r.end - r.start).saturating_add(1);
            let lo = r.start.saturating_sub(size);
            let hi = r.end.saturating_add(size).min(max);
            lo + rng.below((hi - lo).saturating_add(1).max(1))
        } else if v6 {
            rng.u128()
        } else {
            rng.below(max + 1)
        };
        out.push(addr);
    }
    (out, boundaries)
}

/// Loads `db` into a fresh kernel program and compares its answer with the reference at every
/// boundary and at random addresses of both families. Panics with the first mismatches.
fn check_db(name: &str, sources: &[SourceRanges], db: &CompiledDb) {
    require_root();
    let started = Instant::now();
    let mut datapath = Datapath::load().expect("loading the XDP program");
    let tables = datapath
        .install_tables(&db.v4, &db.v6)
        .unwrap_or_else(|e| panic!("{name}: installing the tables: {e}"));
    let index = ReferenceIndex::new(sources);
    let mut report = format!(
        "{name}: {} + {} prefixes installed in {} ms;",
        db.v4.len(),
        db.v6.len(),
        tables.elapsed.as_millis()
    );
    let mut mismatches = Vec::new();
    let mut total_mismatches = 0usize;
    for v6 in [false, true] {
        let family = if v6 { "IPv6" } else { "IPv4" };
        let ranges: usize = sources
            .iter()
            .map(|s| if v6 { s.v6.len() } else { s.v4.len() })
            .sum();
        assert!(
            ranges > 0,
            "{name}: no {family} ranges: every case covers both families"
        );
        let (addrs, boundaries) = addresses(sources, v6, 0x6e0f_u64 ^ u64::from(v6));
        let t = Instant::now();
        let mut known = 0usize;
        for &a in &addrs {
            let ip = to_ip(v6, a);
            let got = datapath
                .classify(ip)
                .unwrap_or_else(|e| panic!("{name}: classify {ip}: {e}"))
                .info
                .country;
            let got = (got != UNKNOWN_COUNTRY).then_some(got);
            // The program classifies an IPv6 source that embeds an IPv4 address (6to4, ...) as
            // that address (geofilter_common::embedded), whatever the IPv6 table holds there.
            let want = index.lookup(geofilter_daemon::policy::filtered_as(ip).0);
            known += usize::from(want.is_some());
            if got != want {
                total_mismatches += 1;
                if mismatches.len() < 20 {
                    mismatches.push((ip, got, want));
                }
            }
        }
        let secs = t.elapsed().as_secs_f64();
        let _ = write!(
            report,
            " {family}: {ranges} ranges, {boundaries} boundary + {RANDOM} random addresses \
             ({known} with a country) in {secs:.1} s ({:.1} us each);",
            secs * 1e6 / addrs.len() as f64
        );
    }
    say(&format!(
        "{report} total {:.1} s",
        started.elapsed().as_secs_f64()
    ));
    if total_mismatches > 0 {
        let name_of = |c: Option<CountryId>| c.map_or("unknown".to_owned(), code_str);
        let list: Vec<String> = mismatches
            .iter()
            .map(|(ip, got, want)| {
                let containing: Vec<String> = sources
                    .iter()
                    .flat_map(|s| {
                        let ranges = if ip.is_ipv4() { &s.v4 } else { &s.v6 };
                        let a = match ip {
                            IpAddr::V4(a) => u128::from(u32::from(*a)),
                            IpAddr::V6(a) => u128::from(*a),
                        };
                        ranges
                            .iter()
                            .filter(move |r| r.start <= a && a <= r.end)
                            .map(move |r| {
                                format!(
                                    "{}..{} {} ({})",
                                    to_ip(ip.is_ipv6(), r.start),
                                    to_ip(ip.is_ipv6(), r.end),
                                    code_str(r.country),
                                    s.path.display()
                                )
                            })
                    })
                    .collect();
                format!(
                    "  {ip}: kernel {} reference {}; containing ranges: [{}]",
                    name_of(*got),
                    name_of(*want),
                    containing.join(", ")
                )
            })
            .collect();
        panic!(
            "{name}: the kernel disagrees with the reference at {total_mismatches} addresses; \
             first ones:\n{}",
            list.join("\n")
        );
    }
}

fn check_files(name: &str, paths: &[PathBuf], format: Option<Format>) {
    let (sources, db) = read(paths, format);
    check_db(name, &sources, &db);
}

/// The committed geo-whois-asn-country slices, as read (overlapping, unaligned, in file order).
fn slices() -> Vec<SourceRanges> {
    let dir = "geo-whois-asn-country";
    [
        format!("{dir}/geo-whois-asn-country-ipv4.slice.csv"),
        format!("{dir}/geo-whois-asn-country-ipv6.slice.csv"),
    ]
    .iter()
    .map(|p| geoip::read_source(&testdata(p), None).expect("reading the committed slices"))
    .collect()
}

/// The ranges of a family over all slices, in file order.
fn slice_ranges(v6: bool) -> Vec<Range> {
    slices()
        .into_iter()
        .flat_map(|s| if v6 { s.v6 } else { s.v4 })
        .collect()
}

/// `start..=end` as the fewest CIDR blocks (the plain greedy split), as (address, length).
fn cidrs(mut start: u128, end: u128, bits: u32) -> Vec<(u128, u32)> {
    let mut out = Vec::new();
    loop {
        // The largest aligned block at `start` that ends by `end`.
        let fits = |k: u32| match k {
            128 => start == 0 && end == u128::MAX,
            _ => start
                .checked_add((1u128 << k) - 1)
                .is_some_and(|e| e <= end),
        };
        let mut k = start.trailing_zeros().min(bits);
        while !fits(k) {
            k -= 1;
        }
        out.push((start, bits - k));
        if k == 128 {
            return out;
        }
        let last = start + ((1u128 << k) - 1);
        if last >= end {
            return out;
        }
        start = last + 1;
    }
}

fn cidr_text(v6: bool, addr: u128, len: u32) -> String {
    format!("{}/{len}", to_ip(v6, addr))
}

/// The compiled (disjoint) prefixes of the slices.
fn slice_prefixes() -> CompiledDb {
    geoip::compile(slices())
}

// ---------------------------------------------------------------------------------------------
// One test per format.

#[test]
fn range_csv_text() {
    check_files(
        "range-csv text (geo-whois-asn-country slices)",
        &[
            testdata("geo-whois-asn-country/geo-whois-asn-country-ipv4.slice.csv"),
            testdata("geo-whois-asn-country/geo-whois-asn-country-ipv6.slice.csv"),
        ],
        None,
    );
}

#[test]
fn range_csv_integer() {
    // The slices with decimal addresses (the `-num.csv` layout of ip-location-db, IP2Location
    // DB1), in quotes like IP2Location, in the original order.
    let dir = TempDir::new();
    let mut paths = Vec::new();
    for v6 in [false, true] {
        let path = dir.join(if v6 { "v6-num.csv" } else { "v4-num.csv" });
        let mut text = String::new();
        for r in slice_ranges(v6) {
            let _ = writeln!(
                text,
                "\"{}\",\"{}\",\"{}\"",
                r.start,
                r.end,
                code_str(r.country)
            );
        }
        std::fs::write(&path, text).unwrap();
        paths.push(path);
    }
    check_files("range-csv integer", &paths, Some(Format::RangeCsv));
}

#[test]
fn mmdb() {
    // The real iptoasn IPv4 MMDB (315k networks), and an IPv6 tree written here from the
    // compiled slices, with IPv4 in its ::/96 subtree, half the records in MaxMind's layout
    // (`country.iso_code`, some only `registered_country`) and half in ip-location-db's
    // (`country_code`).
    let dir = TempDir::new();
    let db = slice_prefixes();
    let mut w = Writer::new(6);
    let mut records: HashMap<(CountryId, u8), Rec> = HashMap::new();
    for (i, p) in db.v4.iter().chain(&db.v6).enumerate() {
        let v4 = i < db.v4.len();
        let layout = (i % 3) as u8;
        let rec = *records.entry((p.info.country, layout)).or_insert_with(|| {
            let code = code_str(p.info.country);
            let v = match layout {
                0 => V::M(vec![("country_code", V::S(&code))]),
                1 => V::M(vec![("country", V::M(vec![("iso_code", V::S(&code))]))]),
                _ => V::M(vec![(
                    "registered_country",
                    V::M(vec![("iso_code", V::S(&code))]),
                )]),
            };
            w.value(&v)
        });
        let (addr, len) = if v4 {
            (p.addr, u32::from(p.len) + 96)
        } else {
            (p.addr, u32::from(p.len))
        };
        w.insert(addr, len, rec);
    }
    let v6_mmdb = dir.join("slices.mmdb");
    std::fs::write(&v6_mmdb, w.finish("GeoIP2-Country")).unwrap();
    check_files(
        "mmdb (iptoasn-country-ipv4.mmdb + IPv6 tree of the slices)",
        &[
            testdata("iptoasn-country/iptoasn-country-ipv4.mmdb"),
            v6_mmdb,
        ],
        None,
    );
}

#[test]
fn maxmind_csv() {
    // The committed fixture folder, and a GeoLite2-Country-CSV folder written from the compiled
    // slices: geoname ids per country, every fourth network only with a registered country, and
    // every 50th with neither (an anonymous proxy: unknown).
    let dir = TempDir::new();
    let db = slice_prefixes();
    let id = |c: CountryId| 1_000_000 + u32::from(c);
    let mut countries = BTreeMap::new();
    for v6 in [false, true] {
        let table = if v6 { &db.v6 } else { &db.v4 };
        let mut text = String::from(
            "network,geoname_id,registered_country_geoname_id,represented_country_geoname_id,\
             is_anonymous_proxy,is_satellite_provider\n",
        );
        for (i, p) in table.iter().enumerate() {
            countries.insert(id(p.info.country), code_str(p.info.country));
            let net = cidr_text(v6, p.addr, p.len.into());
            let g = id(p.info.country);
            let _ = match i {
                _ if i % 50 == 49 => writeln!(text, "{net},,,,1,0"),
                _ if i % 4 == 3 => writeln!(text, "{net},,{g},,0,0"),
                _ => writeln!(text, "{net},{g},{g},,0,0"),
            };
        }
        let name = if v6 { "IPv6" } else { "IPv4" };
        std::fs::write(
            dir.join(&format!("slices/GeoLite2-Country-Blocks-{name}.csv")),
            text,
        )
        .unwrap();
    }
    let mut loc = String::from(
        "geoname_id,locale_code,continent_code,continent_name,country_iso_code,country_name,\
         is_in_european_union\n",
    );
    for (g, code) in &countries {
        let _ = writeln!(loc, "{g},en,XX,Somewhere,{code},\"Name, of {code}\",0");
    }
    std::fs::write(dir.join("slices/GeoLite2-Country-Locations-en.csv"), loc).unwrap();
    check_files(
        "maxmind-csv (fixture + slices)",
        &[testdata("maxmind-csv"), dir.0.join("slices")],
        None,
    );
}

#[test]
fn tor() {
    // The committed fixtures, and `geoip` / `geoip6` files written from the slices (decimal IPv4,
    // text IPv6, comment header), with every 40th range marked `??` like IPFire's unplaced space.
    let dir = TempDir::new();
    let mut paths = vec![testdata("tor/geoip"), testdata("tor/geoip6")];
    for v6 in [false, true] {
        let path = dir.join(if v6 { "slices/geoip6" } else { "slices/geoip" });
        let mut text = String::from("# Written by tests/tests/exactness.rs from real slices.\n");
        for (i, r) in slice_ranges(v6).iter().enumerate() {
            let code = if i % 40 == 39 {
                "??".to_owned()
            } else {
                code_str(r.country)
            };
            let _ = if v6 {
                writeln!(
                    text,
                    "{},{},{code}",
                    to_ip(true, r.start),
                    to_ip(true, r.end)
                )
            } else {
                writeln!(text, "{},{},{code}", r.start, r.end)
            };
        }
        std::fs::write(&path, text).unwrap();
        paths.push(path);
    }
    check_files("tor (fixtures + slices)", &paths, None);
}

#[test]
fn cidr_dir() {
    // Both committed layouts, and an ipdeny-style folder written from the slices: every range
    // split into CIDR blocks in its country's list (`de.zone`, `ipv6/de.zone`), so the nesting
    // of the real data becomes nesting across lists.
    let dir = TempDir::new();
    let mut lists: BTreeMap<String, String> = BTreeMap::new();
    for v6 in [false, true] {
        for r in slice_ranges(v6) {
            if r.country == UNKNOWN_COUNTRY {
                continue; // a list file is always a country
            }
            let file = format!(
                "{}{}.zone",
                if v6 { "ipv6/" } else { "" },
                code_str(r.country).to_ascii_lowercase()
            );
            let text = lists.entry(file).or_default();
            for (a, len) in cidrs(r.start, r.end, if v6 { 128 } else { 32 }) {
                let _ = writeln!(text, "{}", cidr_text(v6, a, len));
            }
        }
    }
    for (file, text) in &lists {
        std::fs::write(dir.join(&format!("slices/{file}")), text).unwrap();
    }
    check_files(
        "cidr-dir (fixtures + slices)",
        &[
            testdata("cidr-dir/country-ip-blocks"),
            testdata("cidr-dir/ipdeny"),
            dir.0.join("slices"),
        ],
        None,
    );
}

#[test]
fn rir() {
    // The committed fixtures, and a delegated-extended file written from the slices: IPv4 as
    // start and address count (not a power of two where the range is unaligned), IPv6 as CIDR
    // blocks; unknown ranges as `ZZ ... available`, which the reader skips.
    let dir = TempDir::new();
    let mut text = String::from("2|nro|20260617|0|19700101|20260617|+0000\n");
    text += "nro|*|ipv4|*|0|summary\n";
    for v6 in [false, true] {
        for (i, r) in slice_ranges(v6).iter().enumerate() {
            let (cc, status) = if r.country == UNKNOWN_COUNTRY {
                ("ZZ".to_owned(), "available")
            } else {
                (
                    code_str(r.country),
                    if i % 2 == 0 { "allocated" } else { "assigned" },
                )
            };
            if v6 {
                for (a, len) in cidrs(r.start, r.end, 128) {
                    let _ = writeln!(
                        text,
                        "nro|{cc}|ipv6|{}|{len}|20200101|{status}|id{i}",
                        to_ip(true, a)
                    );
                }
            } else {
                let _ = writeln!(
                    text,
                    "nro|{cc}|ipv4|{}|{}|20200101|{status}|id{i}",
                    to_ip(false, r.start),
                    r.end - r.start + 1
                );
            }
        }
    }
    let path = dir.join("delegated-slices-extended-latest");
    std::fs::write(&path, text).unwrap();
    check_files(
        "rir (fixtures + slices)",
        &[
            testdata("rir/delegated-ripencc-extended-latest"),
            testdata("rir/delegated-apnic-latest.gz"),
            path,
        ],
        None,
    );
}

// ---------------------------------------------------------------------------------------------
// The full dataset.

/// `target/exactness-data/<package>-<version>/package/`, fetched with `npm pack` on first use.
/// `Err` says why it could not be fetched.
fn npm_package() -> Result<PathBuf, String> {
    say(&format!("{NPM_PACKAGE}@{NPM_VERSION} (10.8 MB)"));
    geofilter_tests::npm::package(
        NPM_PACKAGE,
        NPM_VERSION,
        &[
            "geo-whois-asn-country-ipv4.csv",
            "geo-whois-asn-country-ipv6.csv",
            "geo-whois-asn-country-ipv4-num.csv",
            "geo-whois-asn-country-ipv6-num.csv",
            "NRO_LICENSE",
        ],
    )
}

/// Two tables with the same prefixes and countries (the source index differs by design).
fn assert_same_table(what: &str, a: &[Prefix], b: &[Prefix]) {
    assert_eq!(a.len(), b.len(), "{what}: prefix counts differ");
    if let Some((x, y)) = a
        .iter()
        .zip(b)
        .find(|(x, y)| x.addr != y.addr || x.len != y.len || x.info.country != y.info.country)
    {
        panic!("{what}: tables differ first at {x:?} vs {y:?}");
    }
}

#[test]
fn full_geo_whois_asn_country_and_the_embedded_database() {
    require_root();
    let package = match npm_package() {
        Ok(p) => p,
        Err(why) => {
            let msg = format!(
                "THE FULL-DATASET EXACTNESS CHECK DID NOT RUN: {NPM_PACKAGE}@{NPM_VERSION} could \
                 not be fetched ({why}). Only the committed slices were checked."
            );
            if std::env::var_os("CI").is_some() {
                panic!("{msg} (CI is set: the registry must be reachable in CI)");
            }
            say(&format!("WARNING: {msg}"));
            return;
        }
    };
    let text = [
        package.join("geo-whois-asn-country-ipv4.csv"),
        package.join("geo-whois-asn-country-ipv6.csv"),
    ];
    let num = [
        package.join("geo-whois-asn-country-ipv4-num.csv"),
        package.join("geo-whois-asn-country-ipv6-num.csv"),
    ];
    let t = Instant::now();
    let (sources, db) = read(&text, None);
    say(&format!(
        "full CSV read and compiled in {:.1} s",
        t.elapsed().as_secs_f64()
    ));

    // The integer files hold the same data: the same table (their kernel check would repeat
    // this one exactly).
    let (_, num_db) = read(&num, None);
    assert_same_table("IPv4 -num.csv vs .csv", &num_db.v4, &db.v4);
    assert_same_table("IPv6 -num.csv vs .csv", &num_db.v6, &db.v6);

    // The embedded database is exactly this data, compiled.
    let meta = embedded::meta();
    assert_eq!(
        meta.version, NPM_VERSION,
        "the embedded database was built from another version; update NPM_VERSION"
    );
    let t = Instant::now();
    let emb = embedded::load().expect("embedded database");
    say(&format!(
        "embedded database ({} bytes packed) loaded in {} ms (debug build)",
        embedded::embedded_size(),
        t.elapsed().as_millis()
    ));
    assert_same_table("embedded IPv4 vs the package", &emb.v4, &db.v4);
    assert_same_table("embedded IPv6 vs the package", &emb.v6, &db.v6);

    check_db("geo-whois-asn-country full CSV (npm)", &sources, &db);
}

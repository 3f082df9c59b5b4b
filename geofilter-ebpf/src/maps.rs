//! The program's maps and the few operations the packet path does on them.

use aya_ebpf::{
    btf_maps::{Array, ArrayOfMaps, LpmTrie, PerCpuArray, lpm_trie::Key},
    macros::btf_map,
};
use geofilter_common::{
    COUNTRY_COUNTERS, Counter, CountryId, PacketClass, Policy, PrefixInfo, Verdict,
    country_counter_index,
    maps::{EXCEPT_CAPACITY, TABLE_CAPACITY},
};

const CAPACITY: usize = TABLE_CAPACITY as usize;

#[btf_map]
static GF_POLICY: ArrayOfMaps<Array<Policy, 1>, 1> = ArrayOfMaps::new();

#[btf_map]
static GF_TABLE_V4: ArrayOfMaps<LpmTrie<[u8; 4], PrefixInfo, CAPACITY>, 1> = ArrayOfMaps::new();

#[btf_map]
static GF_TABLE_V6: ArrayOfMaps<LpmTrie<[u8; 16], PrefixInfo, CAPACITY>, 1> = ArrayOfMaps::new();

#[btf_map]
static GF_EXCEPT_V4: LpmTrie<[u8; 4], u32, { EXCEPT_CAPACITY as usize }> = LpmTrie::new();

#[btf_map]
static GF_EXCEPT_V6: LpmTrie<[u8; 16], u32, { EXCEPT_CAPACITY as usize }> = LpmTrie::new();

#[btf_map]
static GF_CC_COUNT: PerCpuArray<Counter, { COUNTRY_COUNTERS as usize }> = PerCpuArray::new();

#[btf_map]
static GF_CLASS_COUNT: PerCpuArray<Counter, { PacketClass::COUNT as usize }> = PerCpuArray::new();

#[inline(always)]
pub fn policy() -> Option<&'static Policy> {
    GF_POLICY.get_value(0, &0)
}

#[inline(always)]
pub fn country_of_v4(addr: [u8; 4]) -> PrefixInfo {
    let key = Key::new(32, addr);
    match GF_TABLE_V4.get_value_ptr_mut(0, &key) {
        // SAFETY: the kernel returned a pointer to a live trie value; it stays valid for this
        // program run (RCU), and we copy it out at once.
        Some(info) => unsafe { *info },
        None => PrefixInfo::UNKNOWN,
    }
}

#[inline(always)]
pub fn country_of_v6(addr: [u8; 16]) -> PrefixInfo {
    let key = Key::new(128, addr);
    match GF_TABLE_V6.get_value_ptr_mut(0, &key) {
        // SAFETY: as in `country_of_v4`.
        Some(info) => unsafe { *info },
        None => PrefixInfo::UNKNOWN,
    }
}

/// The exception action for an address, if an exception covers it.
#[inline(always)]
pub fn exception_v4(addr: [u8; 4]) -> Option<u32> {
    GF_EXCEPT_V4.get(&Key::new(32, addr)).copied()
}

#[inline(always)]
pub fn exception_v6(addr: [u8; 16]) -> Option<u32> {
    GF_EXCEPT_V6.get(&Key::new(128, addr)).copied()
}

#[inline(always)]
fn add(counter: Option<*mut Counter>, bytes: u64) {
    if let Some(counter) = counter {
        // SAFETY: a per-CPU slot: only this CPU writes it, and XDP runs with migration disabled.
        unsafe {
            (*counter).packets += 1;
            (*counter).bytes += bytes;
        }
    }
}

#[inline(always)]
pub fn count_class(class: PacketClass, bytes: u64) {
    add(GF_CLASS_COUNT.get_ptr_mut(class as u32), bytes);
}

#[inline(always)]
pub fn count_country(country: CountryId, verdict: Verdict, bytes: u64) {
    add(
        GF_CC_COUNT.get_ptr_mut(country_counter_index(country, verdict)),
        bytes,
    );
}

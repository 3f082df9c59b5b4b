//! The maps every variant of the program shares (policy, exceptions, counters) and the few
//! operations the packet path does on them. The country tables are in `stride` (the program) and
//! `lpm` (its LPM-trie variant).

use aya_ebpf::{
    btf_maps::{Array, ArrayOfMaps, LpmTrie, PerCpuArray, lpm_trie::Key},
    macros::btf_map,
};
use geofilter_common::{
    COUNTRY_COUNTERS, Counter, CountryId, PacketClass, Policy, Verdict, country_counter_index,
    maps::EXCEPT_CAPACITY,
};

#[btf_map]
static GF_POLICY: ArrayOfMaps<Array<Policy, 1>, 1> = ArrayOfMaps::new();

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

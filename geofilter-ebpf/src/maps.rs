//! The maps every variant of the program shares (policy, exceptions, counters) and the few
//! operations the packet path does on them. The country tables are in `stride` (the program) and
//! `lpm` (its LPM-trie variant).

use aya_ebpf::{
    btf_maps::{Array, ArrayOfMaps, LpmTrie, PerCpuArray, lpm_trie::Key},
    macros::btf_map,
};
use geofilter_common::{
    ASN_COUNTERS, COUNTRY_COUNTERS, Counter, CountryId, LIST_COUNTERS, PacketClass, Policy,
    Verdict, asn_counter_index, country_counter_index, list_counter_index, maps::EXCEPT_CAPACITY,
};

/// A value of an inner map (a map the daemon creates and swaps into an `ARRAY_OF_MAPS`), declared
/// in BTF as a byte array, never as the struct it holds.
///
/// Why: from 5.15 to 6.1 the kernel compares an inner map with the outer map's template field by
/// field, `timer_off` included (kernel/bpf/map_in_map.c, `bpf_map_meta_equal`). A template whose
/// BTF value is a struct without a timer gets `timer_off = -ENOENT`; a map created without BTF
/// (the daemon's, through aya's `Array::create`) keeps `-EINVAL`; the swap then fails with EINVAL
/// (seen on Debian 6.1.0-57). For a non-struct value type the kernel sets `-EINVAL` too, so both
/// agree. 6.2 replaced `timer_off` with a BTF record that treats "none" and "error" alike (6.12,
/// 6.18 accept either); 5.10 does not compare it.
pub type InnerValue<const SIZE: usize> = [u8; SIZE];

/// Reads an inner-map value as the `T` it holds.
///
/// # Safety
/// `SIZE` must be `size_of::<T>()` and every bit pattern a valid `T` (the daemon writes `T`s).
#[inline(always)]
pub unsafe fn inner_as<T, const SIZE: usize>(value: &InnerValue<SIZE>) -> &T {
    // Aligned enough for the 2- and 4-byte-aligned records read here: array elements are 8-byte
    // aligned (kernel/bpf/arraymap.c rounds elem_size up to 8), an LPM trie's value follows the
    // 4- or 16-byte key data in an 8-byte-aligned node (kernel/bpf/lpm_trie.c).
    unsafe { &*value.as_ptr().cast::<T>() }
}

const POLICY_SIZE: usize = core::mem::size_of::<Policy>();

#[btf_map]
static GF_POLICY: ArrayOfMaps<Array<InnerValue<POLICY_SIZE>, 1>, 1> = ArrayOfMaps::new();

#[btf_map]
static GF_EXCEPT_V4: LpmTrie<[u8; 4], u32, { EXCEPT_CAPACITY as usize }> = LpmTrie::new();

#[btf_map]
static GF_EXCEPT_V6: LpmTrie<[u8; 16], u32, { EXCEPT_CAPACITY as usize }> = LpmTrie::new();

#[btf_map]
static GF_CC_COUNT: PerCpuArray<Counter, { COUNTRY_COUNTERS as usize }> = PerCpuArray::new();

#[btf_map]
static GF_CLASS_COUNT: PerCpuArray<Counter, { PacketClass::COUNT as usize }> = PerCpuArray::new();

#[btf_map]
static GF_ASN_COUNT: PerCpuArray<Counter, { ASN_COUNTERS as usize }> = PerCpuArray::new();

#[btf_map]
static GF_LIST_COUNT: PerCpuArray<Counter, { LIST_COUNTERS as usize }> = PerCpuArray::new();

#[inline(always)]
pub fn policy() -> Option<&'static Policy> {
    // SAFETY: the daemon stores a `Policy` (a plain `repr(C)` record of integers) there.
    GF_POLICY
        .get_value(0, &0)
        .map(|value| unsafe { inner_as::<Policy, POLICY_SIZE>(value) })
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

/// Counts a packet of a listed ASN (`listed` is its listed index, never 0 here).
#[inline(always)]
pub fn count_asn(listed: u32, verdict: Verdict, bytes: u64) {
    add(
        GF_ASN_COUNT.get_ptr_mut(asn_counter_index(listed, verdict)),
        bytes,
    );
}

/// Counts a packet that an enabled list decided.
#[inline(always)]
pub fn count_list(list: u32, verdict: Verdict, bytes: u64) {
    add(
        GF_LIST_COUNT.get_ptr_mut(list_counter_index(list, verdict)),
        bytes,
    );
}

//! What every program object of this crate needs besides its programs.

// Only for the BPF target: a host build (clippy over the workspace) takes std's handler.
#[cfg(all(not(test), target_arch = "bpf"))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

// GPL-compatible so the verifier allows every helper we might need; the code is MIT/Apache.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

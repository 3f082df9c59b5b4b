//! Empty on purpose: the program is the `geofilter` binary of this crate, built for the BPF target
//! by the daemon's build script. This library target lets the daemon name the crate as a build
//! dependency, which is how cargo learns to rebuild the daemon when the program changes.
#![no_std]

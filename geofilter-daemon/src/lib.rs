//! geofilter's daemon and CLI as a library: the binary and the control-socket handlers are thin
//! layers over these modules.

pub mod cli;
pub mod control;
pub mod daemon;
pub mod datapath;
pub mod geoip;
pub mod paths;
pub mod policy;
pub mod why;

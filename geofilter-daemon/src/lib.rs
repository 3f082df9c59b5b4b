//! geofilter's daemon and CLI as a library: the binary and the control-socket handlers are thin
//! layers over these modules.

pub mod asn;
pub mod changes;
pub mod cli;
pub mod commit;
pub mod control;
pub mod country;
pub mod daemon;
pub mod datapath;
pub mod family;
pub mod fleet;
pub mod geoip;
pub mod iface;
pub mod keys;
pub mod lists;
pub mod metrics;
pub mod nets;
pub mod notify;
pub mod paths;
pub mod policy;
pub mod report;
pub mod rules;
pub mod state;
pub mod why;

//! The control socket: a Unix stream socket speaking one JSON request and one JSON response per
//! connection, each a single line.

pub mod client;
pub mod protocol;
pub mod server;

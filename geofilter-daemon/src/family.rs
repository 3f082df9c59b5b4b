//! The address family, one type for the whole daemon: the database compiler, the reference
//! lookup, the datapath's stride tables and `why` all number an address within its family as a
//! `u128` (an IPv4 address is a value below 2^32), and this says which family that number is in.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// IPv4 or IPv6.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    /// Both families, IPv4 first (the order the tables and the compiler use).
    pub const ALL: [Family; 2] = [Family::V4, Family::V6];

    /// Address width in bits.
    pub const fn bits(self) -> u32 {
        match self {
            Family::V4 => 32,
            Family::V6 => 128,
        }
    }

    /// `"IPv4"` or `"IPv6"`, for messages.
    pub const fn name(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }

    /// The largest address number of the family.
    pub const fn max(self) -> u128 {
        match self {
            Family::V4 => u32::MAX as u128,
            Family::V6 => u128::MAX,
        }
    }

    /// The address whose number within this family is `addr` (IPv4: below 2^32).
    pub fn ip(self, addr: u128) -> IpAddr {
        match self {
            Family::V4 => Ipv4Addr::from(addr as u32).into(),
            Family::V6 => Ipv6Addr::from(addr).into(),
        }
    }

    pub fn of(addr: IpAddr) -> Self {
        if addr.is_ipv4() {
            Family::V4
        } else {
            Family::V6
        }
    }
}

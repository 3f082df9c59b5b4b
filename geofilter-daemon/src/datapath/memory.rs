//! Kernel memory of the filter's maps, from the kernel's own accounting: the `memlock` line the
//! kernel prints in a map fd's fdinfo (kernel/bpf/syscall.c, `bpf_map_show_fdinfo`, computed by
//! each map type's `map_mem_usage`). Inner maps of the map-of-maps slots are counted too.

use std::{
    io,
    os::fd::{AsFd as _, AsRawFd as _},
};

use aya::maps::{ArrayOfMaps, Map, MapData, MapType};
use geofilter_common::maps as names;

use super::{DatapathError, map_err};
use crate::paths::PinLayout;

/// One map's memory.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct MapMemory {
    /// The pinned map's name; an inner map is `NAME[slot]`.
    pub name: String,
    pub bytes: u64,
}

/// `memlock` of one map.
pub fn memlock(map: &MapData) -> io::Result<u64> {
    let fd = map.fd().as_fd().as_raw_fd();
    let text = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}"))?;
    text.lines()
        .find_map(|line| line.strip_prefix("memlock:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| io::Error::other("no memlock line in the map's fdinfo"))
}

/// Memory of every map pinned under `layout` and of the inner maps they hold.
pub fn pinned_map_memory(layout: &PinLayout) -> Result<Vec<MapMemory>, DatapathError> {
    let mut out = Vec::new();
    let io_err =
        |name: &'static str| move |e: io::Error| map_err(name)(aya::maps::MapError::IoError(e));
    for name in names::PINNED {
        let data = MapData::from_pin(layout.map(name)).map_err(map_err(name))?;
        out.push(MapMemory {
            name: name.to_owned(),
            bytes: memlock(&data).map_err(io_err(name))?,
        });
        let of_maps = data
            .info()
            .map_err(map_err(name))?
            .map_type()
            .map_err(map_err(name))?
            == MapType::ArrayOfMaps;
        if of_maps {
            let outer: ArrayOfMaps<MapData, MapData> = Map::from_map_data(data)
                .and_then(Map::try_into)
                .map_err(map_err(name))?;
            let inner = outer.get(&0, 0).map_err(map_err(name))?;
            out.push(MapMemory {
                name: format!("{name}[0]"),
                bytes: memlock(&inner).map_err(io_err(name))?,
            });
        }
    }
    Ok(out)
}

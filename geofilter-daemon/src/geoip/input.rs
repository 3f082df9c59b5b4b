//! Opening database files: only regular files, sizes checked before anything is read, and gzip
//! bounded by what it decompresses to.
//!
//! Databases arrive from URLs (`db update`) and from operators' paths, so a path may name a FIFO
//! (opening it for reading blocks until a writer appears: a daemon thread gone for good), a
//! device (`/dev/zero` never ends) or a sparse file of gigabytes. Every reader opens through
//! [`open_regular`]:
//!
//! - `open(2)` with `O_NONBLOCK`, so a FIFO does not block the open, then `fstat(2)` on the open
//!   descriptor (not the path: nothing can swap the file between check and read). Symbolic links
//!   are followed; what counts is what they lead to. Anything but a regular file is refused.
//!   `O_NONBLOCK` has no effect on reads of a regular file (open(2), "O_NONBLOCK": "has no
//!   effect for regular files and block devices"; Linux 6.18).
//! - The size on disk must be at most the format's [`max_size`]; a gzip stream may decompress
//!   to at most the same size (checked while reading, as gzip does not record it reliably).

use std::{
    fs::{File, OpenOptions},
    io::{self, BufRead, BufReader, Read},
    os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _},
    path::Path,
};

use flate2::bufread::MultiGzDecoder;

use super::{DbError, Format};

/// The largest file of a format, on disk and after decompression.
///
/// - MMDB, read whole into memory: 1 GiB. GeoIP2 City, the largest common MMDB, is about
///   130 MB; DB-IP City lite about 130 MB.
/// - Text formats, streamed line by line: 2 GiB. The largest real ones are the City CSVs of
///   MaxMind (GeoLite2-City-Blocks-IPv4.csv, about 250 MB) and the NRO's combined RIR statistics
///   (about 60 MB).
pub const fn max_size(format: Format) -> u64 {
    match format {
        Format::Mmdb => 1 << 30,
        _ => 2 << 30,
    }
}

fn io_error<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> DbError + 'a {
    move |source| DbError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

/// Opens `path` for reading if it is a regular file (after symbolic links); returns it with its
/// size.
pub(crate) fn open_regular(path: &Path) -> Result<(File, u64), DbError> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(io_error("open", path))?;
    let meta = file.metadata().map_err(io_error("stat", path))?;
    let kind = meta.file_type();
    let what = if kind.is_file() {
        None
    } else if kind.is_fifo() {
        Some("a FIFO (named pipe)")
    } else if kind.is_char_device() {
        Some("a character device")
    } else if kind.is_block_device() {
        Some("a block device")
    } else if kind.is_socket() {
        Some("a socket")
    } else if kind.is_dir() {
        Some("a directory")
    } else {
        Some("not a regular file")
    };
    if let Some(what) = what {
        return Err(DbError::Invalid {
            path: path.to_owned(),
            reason: format!("is {what}, not a regular file; databases are read from files only"),
        });
    }
    Ok((file, meta.len()))
}

fn too_large(path: &Path, format: Format, how: &str, size: u64) -> DbError {
    DbError::Invalid {
        path: path.to_owned(),
        reason: format!(
            "{how} {} MiB, more than the {} MiB a {format} database may be; not a GeoIP database",
            size.div_ceil(1 << 20),
            max_size(format) >> 20
        ),
    }
}

/// Opens a database file for reading, transparently decompressing gzip (recognised by its magic
/// bytes `1f 8b`, whatever the file is called); the decompressed stream ends with an error past
/// [`max_size`].
pub(crate) fn open(path: &Path, format: Format) -> Result<Box<dyn BufRead + Send>, DbError> {
    let (file, size) = open_regular(path)?;
    if size > max_size(format) {
        return Err(too_large(path, format, "is", size));
    }
    let mut reader = BufReader::with_capacity(256 * 1024, file);
    let magic = reader.fill_buf().map_err(io_error("read", path))?;
    if magic.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(BufReader::with_capacity(
            256 * 1024,
            Bounded {
                inner: MultiGzDecoder::new(reader),
                left: max_size(format),
                format,
            },
        )))
    } else {
        Ok(Box::new(reader))
    }
}

/// Reads a whole database file into memory (decompressing gzip), at most [`max_size`] bytes.
pub(crate) fn read_all(path: &Path, format: Format) -> Result<Vec<u8>, DbError> {
    let mut buf = Vec::new();
    open(path, format)?
        .read_to_end(&mut buf)
        .map_err(|source| {
            oversize(path, format, &source).unwrap_or_else(|| DbError::Io {
                op: "read",
                path: path.to_owned(),
                source,
            })
        })?;
    Ok(buf)
}

/// The error for a read that failed because the gzip stream of [`open`] passed [`max_size`].
pub(crate) fn oversize(path: &Path, format: Format, e: &io::Error) -> Option<DbError> {
    e.get_ref()
        .is_some_and(|e| e.is::<Oversize>())
        .then(|| too_large(path, format, "decompresses to over", max_size(format)))
}

/// A decompressed stream that fails once it has produced more than `left` bytes.
struct Bounded<R> {
    inner: R,
    left: u64,
    format: Format,
}

#[derive(Debug, thiserror::Error)]
#[error("gzip data decompresses to more than {max_mib} MiB, the most a {format} database may be")]
struct Oversize {
    max_mib: u64,
    format: Format,
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // Read one byte past the limit, so a stream of exactly the limit still ends cleanly.
        let want = buf
            .len()
            .min(usize::try_from(self.left + 1).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n as u64 > self.left {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                Oversize {
                    max_mib: max_size(self.format) >> 20,
                    format: self.format,
                },
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decompressed_size_is_bounded() {
        let data = [7u8; 1000];
        let bounded = |left| Bounded {
            inner: &data[..],
            left,
            format: Format::Tor,
        };
        let mut out = Vec::new();
        assert_eq!(bounded(1000).read_to_end(&mut out).unwrap(), 1000);
        let e = bounded(999).read_to_end(&mut out).unwrap_err();
        assert!(e.get_ref().unwrap().is::<Oversize>(), "{e}");
        assert_eq!(
            e.to_string(),
            format!(
                "gzip data decompresses to more than {} MiB, the most a tor database may be",
                max_size(Format::Tor) >> 20
            )
        );
        // Readers turn it into the file's error, not "read failed (truncated or corrupt?)".
        let e = oversize(Path::new("geoip.gz"), Format::Tor, &e).unwrap();
        assert_eq!(
            e.to_string(),
            "geoip.gz: decompresses to over 2048 MiB, more than the 2048 MiB a tor database may \
             be; not a GeoIP database"
        );
        let other = io::Error::other("disk on fire");
        assert!(oversize(Path::new("x"), Format::Tor, &other).is_none());
    }
}

//! The CLI side of the control socket.

use std::{
    io::{self, BufRead, BufReader, Write},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context as _, bail};

use super::protocol::{Request, Response};

/// Why no connection to the daemon could be made. `unload` tells "no daemon" (it may then remove
/// the pins itself) from "a daemon it may not talk to" (it must not claim there is nothing).
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// EACCES/EPERM on the socket or a folder above it: the socket is root's (mode 0600).
    #[error("permission denied on {}: run as root", .socket.display())]
    PermissionDenied { socket: PathBuf },
    /// No socket file, or one nobody listens on (a daemon that was killed).
    #[error("no geofilter daemon at {} ({source}; is `geofilter run` running?)", .socket.display())]
    NoDaemon {
        socket: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot reach the geofilter daemon at {}: {source}", .socket.display())]
    Other {
        socket: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn connect(socket: &Path) -> Result<UnixStream, ConnectError> {
    UnixStream::connect(socket).map_err(|source| {
        let socket = socket.to_owned();
        match source.kind() {
            // PermissionDenied covers both EACCES and EPERM.
            io::ErrorKind::PermissionDenied => ConnectError::PermissionDenied { socket },
            io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
                ConnectError::NoDaemon { socket, source }
            }
            _ => ConnectError::Other { socket, source },
        }
    })
}

/// Sends one request and returns the result, or the daemon's error as an error. A failure to
/// connect is a [`ConnectError`] (`downcast_ref` tells which).
pub fn call(socket: &Path, request: &Request) -> anyhow::Result<serde_json::Value> {
    let mut stream = connect(socket)?;
    stream.set_read_timeout(Some(Duration::from_secs(120)))?;
    let mut line = serde_json::to_vec(request)?;
    line.push(b'\n');
    // A daemon that refuses a request may answer before reading all of it; its answer says why,
    // which matters more than the broken pipe, so read it even when the write failed.
    let sent = stream.write_all(&line);
    let mut reply = String::new();
    let read = BufReader::new(stream).read_line(&mut reply);
    if reply.is_empty() {
        sent.context("sending request")?;
        read.context("reading response")?;
        bail!("the daemon closed the connection without answering");
    }
    let response: Response =
        serde_json::from_str(&reply).context("daemon sent a malformed response")?;
    match (response.ok, response.result, response.error) {
        (true, result, _) => Ok(result.unwrap_or(serde_json::Value::Null)),
        (false, _, error) => bail!("{}", error.unwrap_or_else(|| "unspecified error".into())),
    }
}

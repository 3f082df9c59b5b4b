//! The CLI side of the control socket.

use std::{
    io::{self, BufRead, BufReader, Write},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::de::DeserializeOwned;

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

/// Why a request got no reply, or the daemon's refusal.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("{op}: {source}")]
    Io {
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("the daemon closed the connection without answering")]
    Closed,
    #[error("daemon sent a malformed response: {0}")]
    Malformed(#[source] serde_json::Error),
    /// The daemon refused the request; its message says why.
    #[error("{0}")]
    Refused(String),
}

fn io(op: &'static str) -> impl FnOnce(io::Error) -> CallError {
    move |source| CallError::Io { op, source }
}

/// Sends one request and returns its reply (of the type that request gets), or the daemon's
/// refusal as an error.
pub fn call<R: DeserializeOwned>(socket: &Path, request: &Request) -> Result<R, CallError> {
    let (sent, mut reader) = send(socket, request, Some(Duration::from_secs(120)))?;
    let mut reply = String::new();
    let read = reader.read_line(&mut reply);
    if reply.is_empty() {
        sent.map_err(io("sending request"))?;
        read.map_err(io("reading response"))?;
        return Err(CallError::Closed);
    }
    decode(&reply)
}

/// Sends a streaming request (`log`) and hands each reply line to `each` until the daemon ends
/// the stream, or `each` returns `false`. No read timeout: a follower waits for events as long
/// as it is left running.
pub fn stream<R: DeserializeOwned>(
    socket: &Path,
    request: &Request,
    mut each: impl FnMut(R) -> bool,
) -> Result<(), CallError> {
    let (sent, mut reader) = send(socket, request, None)?;
    let mut first = true;
    loop {
        let mut line = String::new();
        let read = reader
            .read_line(&mut line)
            .map_err(io("reading response"))?;
        if read == 0 {
            if first {
                sent.map_err(io("sending request"))?;
                return Err(CallError::Closed);
            }
            return Ok(());
        }
        first = false;
        if !each(decode(&line)?) {
            return Ok(());
        }
    }
}

/// Connects and writes `request`; the write's result comes back beside the reader because a
/// daemon that refuses a request may answer before reading all of it, and its answer says why,
/// which matters more than the broken pipe.
fn send(
    socket: &Path,
    request: &Request,
    timeout: Option<Duration>,
) -> Result<(io::Result<()>, BufReader<UnixStream>), CallError> {
    let mut stream = connect(socket)?;
    stream
        .set_read_timeout(timeout)
        .map_err(io("setting the read timeout"))?;
    let mut line = serde_json::to_vec(request).expect("requests serialize");
    line.push(b'\n');
    let sent = stream.write_all(&line);
    Ok((sent, BufReader::new(stream)))
}

fn decode<R: DeserializeOwned>(reply: &str) -> Result<R, CallError> {
    let response: Response<R> = serde_json::from_str(reply).map_err(CallError::Malformed)?;
    match (response.ok, response.result, response.error) {
        (true, Some(result), _) => Ok(result),
        (true, None, _) => Err(CallError::Malformed(serde::de::Error::missing_field(
            "result",
        ))),
        (false, _, error) => Err(CallError::Refused(
            error.unwrap_or_else(|| "unspecified error".into()),
        )),
    }
}

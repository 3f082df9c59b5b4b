//! The CLI side of the control socket.

use std::{
    io::{BufRead, BufReader, Write},
    os::unix::net::UnixStream,
    path::Path,
    time::Duration,
};

use anyhow::{Context as _, bail};

use super::protocol::{Request, Response};

/// Sends one request and returns the result, or the daemon's error as an error.
pub fn call(socket: &Path, request: &Request) -> anyhow::Result<serde_json::Value> {
    let mut stream = UnixStream::connect(socket).with_context(|| {
        format!(
            "cannot reach the geofilter daemon at {} (is `geofilter run` running?)",
            socket.display()
        )
    })?;
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

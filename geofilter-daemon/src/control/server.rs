//! The daemon side of the control socket.
//!
//! Only root (or the daemon's own user) may talk to it: the socket file is mode 0600, and each
//! connection's peer credentials (SO_PEERCRED) are checked too, in case the file mode was widened
//! or the socket was passed on. A client that sends garbage, too much, or nothing gets an error
//! (or a closed connection) and the daemon carries on.

use std::{
    collections::BTreeSet,
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use anyhow::Context as _;
use geofilter_common::CountryId;
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{UnixListener, UnixStream},
    sync::broadcast::error::RecvError,
};
use tracing::{debug, warn};

use super::protocol::{
    ControlError, LogLine, LogRequest, LogStarted, MAX_REQUEST_BYTES, Reply, Request, Response,
    decode_request,
};
use crate::datapath::events::{Follow, LoggedEvent, wanted};

/// Whoever answers requests (the daemon).
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, request: Request) -> impl Future<Output = Response<Reply>> + Send;
    /// What a `log` request streams.
    fn log(&self, request: &LogRequest) -> Result<LogFeed, ControlError>;
}

/// A `log` stream: the `started` line, the recent events, then (with `follow`) events as they
/// come until the client hangs up.
pub struct LogFeed {
    pub started: LogStarted,
    pub recent: Vec<LoggedEvent>,
    pub follow: Option<Follow>,
    pub countries: BTreeSet<CountryId>,
}

/// A bound socket that removes its file when dropped.
pub struct ControlSocket {
    listener: UnixListener,
    path: PathBuf,
}

impl ControlSocket {
    pub fn bind(path: &Path) -> anyhow::Result<Self> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        if path.exists() {
            // A live daemon answers; a dead one left its file behind.
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                anyhow::bail!(
                    "another geofilter daemon is already serving {}",
                    path.display()
                );
            }
            fs::remove_file(path)
                .with_context(|| format!("removing stale socket {}", path.display()))?;
        }
        let listener =
            UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))?;
        fs::set_permissions(path, fs::Permissions::from_mode(0o600))
            .with_context(|| format!("setting mode 0600 on {}", path.display()))?;
        Ok(Self {
            listener,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Accepts connections until the task is dropped; each is served on its own task.
    pub async fn serve<H: Handler>(&self, handler: Arc<H>) {
        loop {
            match self.listener.accept().await {
                Ok((stream, _)) => {
                    let handler = handler.clone();
                    tokio::spawn(async move {
                        if let Err(e) = serve_one(stream, &*handler).await {
                            debug!(error = %e, "control connection ended with an error");
                        }
                    });
                }
                Err(e) => {
                    warn!(error = %e, "accepting a control connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

fn peer_allowed(stream: &UnixStream) -> Result<(), ControlError> {
    let cred = stream.peer_cred().map_err(ControlError::PeerCredentials)?;
    // SAFETY: geteuid cannot fail.
    let me = unsafe { libc::geteuid() };
    if cred.uid() == 0 || cred.uid() == me {
        Ok(())
    } else {
        Err(ControlError::NotPermitted { uid: cred.uid() })
    }
}

async fn serve_one<H: Handler>(mut stream: UnixStream, handler: &H) -> std::io::Result<()> {
    // The request is read (bounded in size and time) even from a peer that will be refused:
    // answering before the client has finished writing would close the socket under it, and it
    // would see a broken pipe instead of the reason.
    let request = read_request(&mut stream).await;
    let response = match (peer_allowed(&stream), request) {
        (Err(e), _) | (Ok(()), Err(e)) => Response::error(e),
        (Ok(()), Ok(Request::Log(log))) => match handler.log(&log) {
            Ok(feed) => return stream_log(stream, feed).await,
            Err(e) => Response::error(e),
        },
        (Ok(()), Ok(request)) => handler.handle(request).await,
    };
    write_line(&mut stream, &response).await?;
    stream.shutdown().await
}

async fn write_line<W, R>(stream: &mut W, response: &Response<R>) -> std::io::Result<()>
where
    W: AsyncWriteExt + Unpin,
    R: serde::Serialize,
{
    let mut line = serde_json::to_vec(response).expect("responses serialize");
    line.push(b'\n');
    stream.write_all(&line).await
}

async fn stream_log(mut stream: UnixStream, feed: LogFeed) -> std::io::Result<()> {
    let LogFeed {
        started,
        recent,
        follow,
        countries,
    } = feed;
    write_line(&mut stream, &Response::ok(LogLine::Started(started))).await?;
    for event in recent {
        write_line(&mut stream, &Response::ok(LogLine::Event(event))).await?;
    }
    if let Some(mut follow) = follow {
        let (mut read, mut write) = stream.split();
        let mut scratch = [0u8; 64];
        loop {
            let line = tokio::select! {
                event = follow.events.recv() => match event {
                    Ok(event) if wanted(&countries, &event) => LogLine::Event(event),
                    Ok(_) => continue,
                    Err(RecvError::Lagged(missed)) => LogLine::Lagged { missed },
                    Err(RecvError::Closed) => break,
                },
                // The client sends nothing more; end of file (or an error) means it hung up,
                // and its subscription must end even when no event comes to fail a write.
                read = read.read(&mut scratch) => match read {
                    Ok(0) | Err(_) => break,
                    Ok(_) => continue,
                },
            };
            write_line(&mut write, &Response::ok(line)).await?;
        }
    }
    stream.shutdown().await
}

async fn read_request(stream: &mut UnixStream) -> Result<Request, ControlError> {
    let mut line = Vec::new();
    let mut reader = BufReader::new(stream).take(MAX_REQUEST_BYTES as u64 + 1);
    let read = tokio::time::timeout(Duration::from_secs(5), reader.read_until(b'\n', &mut line))
        .await
        .map_err(|_| ControlError::Timeout)?
        .map_err(ControlError::Read)?;
    if read > MAX_REQUEST_BYTES {
        return Err(ControlError::TooLong);
    }
    if read == 0 {
        return Err(ControlError::Empty);
    }
    decode_request(&line)
}

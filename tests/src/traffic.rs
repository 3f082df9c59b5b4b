//! Real traffic between the two namespaces of a [`Pair`]: UDP datagrams from chosen source
//! addresses, and a tiny HTTP server for curl. Every loop is bounded in count and time.

use std::{
    collections::HashMap,
    io::{Read, Write},
    net::{IpAddr, SocketAddr, TcpListener, UdpSocket},
    process::Output,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use crate::netns::{Netns, Pair};

pub const UDP_PORT: u16 = 9000;
pub const HTTP_PORT: u16 = 8080;

/// A datagram as the sink saw it: its source, and the send time it carried if it was stamped.
type Arrival = (IpAddr, Option<u64>);

/// UDP receivers on the server's addresses, drained by a thread from the start so no datagram
/// is lost to a full socket buffer.
pub struct UdpSink {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Vec<Arrival>>>,
}

/// A receive buffer of `bytes` regardless of `net.core.rmem_max` (SO_RCVBUFFORCE, root): the
/// default (~200 KiB, some hundred datagrams) overflows when a loaded machine deschedules the
/// draining thread for a few tens of milliseconds, and the test would count the loss as the
/// filter's.
fn force_receive_buffer(socket: &UdpSocket, bytes: libc::c_int) {
    use std::os::fd::AsRawFd as _;
    // SAFETY: setsockopt on a socket we own with a valid int option value.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&bytes as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_RCVBUFFORCE: {}", std::io::Error::last_os_error());
}

impl UdpSink {
    pub fn bind(server: &Netns, addrs: &[IpAddr]) -> Self {
        Self::bind_ports(server, addrs, &[UDP_PORT])
    }

    /// Receivers on every address and port (arrivals are still counted by source address).
    pub fn bind_ports(server: &Netns, addrs: &[IpAddr], ports: &[u16]) -> Self {
        let sockets: Vec<UdpSocket> = server.run_in(|| {
            addrs
                .iter()
                .flat_map(|&a| ports.iter().map(move |&p| SocketAddr::new(a, p)))
                .map(|a| {
                    let s = UdpSocket::bind(a).expect("bind UDP sink");
                    s.set_nonblocking(true).expect("nonblocking");
                    force_receive_buffer(&s, 16 << 20);
                    s
                })
                .collect()
        });
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut arrivals = Vec::new();
            let mut buf = [0u8; 2048];
            let deadline = Instant::now() + Duration::from_secs(300);
            while !flag.load(Ordering::Relaxed) && Instant::now() < deadline {
                let mut any = false;
                for s in &sockets {
                    while let Ok((n, from)) = s.recv_from(&mut buf) {
                        let stamp = (n == 8)
                            .then(|| u64::from_be_bytes(buf[..8].try_into().expect("8 bytes")));
                        arrivals.push((from.ip(), stamp));
                        any = true;
                    }
                }
                if !any {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
            arrivals
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }

    /// Waits `quiet` for stragglers, then stops and returns every arrival.
    fn stop_after(mut self, quiet: Duration) -> Vec<Arrival> {
        std::thread::sleep(quiet);
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .expect("running")
            .join()
            .expect("sink thread")
    }

    /// Datagrams per source address.
    pub fn collect(self, quiet: Duration) -> HashMap<IpAddr, u64> {
        let mut counts = HashMap::new();
        for (from, _) in self.stop_after(quiet) {
            *counts.entry(from).or_insert(0) += 1;
        }
        counts
    }

    /// (source, send time) of every stamped datagram (see [`StampedSender`]).
    pub fn finish(self, quiet: Duration) -> Vec<(IpAddr, u64)> {
        self.stop_after(quiet)
            .into_iter()
            .filter_map(|(from, stamp)| Some((from, stamp?)))
            .collect()
    }
}

impl Drop for UdpSink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Sends `count` datagrams from `source` (an address the client owns) to `dest`, paced so the
/// veth ring never overflows: every datagram sent must reach the filter, or the counters could
/// not be compared with what was sent.
pub fn send_udp(client: &Netns, source: IpAddr, dest: IpAddr, count: u64) {
    send_udp_to(client, source, SocketAddr::new(dest, UDP_PORT), count);
}

/// [`send_udp`] to any port.
pub fn send_udp_to(client: &Netns, source: IpAddr, target: SocketAddr, count: u64) {
    let socket =
        client.run_in(|| UdpSocket::bind(SocketAddr::new(source, 0)).expect("bind sender"));
    for i in 0..count {
        socket
            .send_to(format!("geofilter test {i}").as_bytes(), target)
            .expect("send_to");
        if i % 16 == 15 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// A minimal HTTP/1.0 server on the server's addresses, answering `hello` to every request until
/// dropped (and never longer than five minutes).
pub struct HttpServer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl HttpServer {
    pub fn start(pair: &Pair, addrs: &[IpAddr]) -> Self {
        let listeners: Vec<TcpListener> = pair.server.run_in(|| {
            addrs
                .iter()
                .map(|&a| {
                    let l = TcpListener::bind(SocketAddr::new(a, HTTP_PORT)).expect("bind HTTP");
                    l.set_nonblocking(true).expect("nonblocking");
                    l
                })
                .collect()
        });
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(300);
            while !flag.load(Ordering::Relaxed) && Instant::now() < deadline {
                let mut served = false;
                for l in &listeners {
                    if let Ok((mut stream, _)) = l.accept() {
                        let _ = stream.set_nonblocking(false);
                        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                        let mut buf = [0u8; 1024];
                        let _ = stream.read(&mut buf);
                        let _ =
                            stream.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello");
                        served = true;
                    }
                }
                if !served {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `curl` from the client namespace, from `source`, with a hard time limit.
pub fn curl(client: &Netns, source: IpAddr, dest: IpAddr, max_time_s: u32) -> Output {
    let url = match dest {
        IpAddr::V4(a) => format!("http://{a}:{HTTP_PORT}/"),
        IpAddr::V6(a) => format!("http://[{a}]:{HTTP_PORT}/"),
    };
    client
        .command("curl")
        .args([
            "--silent",
            "--show-error",
            "--max-time",
            &max_time_s.to_string(),
            "--interface",
        ])
        .arg(source.to_string())
        .arg(url)
        .output()
        .expect("running curl")
}

/// CLOCK_MONOTONIC in nanoseconds: the clock senders stamp datagrams with and tests time their
/// commands with (one clock for the whole machine, so the two can be compared).
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid out-pointer; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// A thread sending datagrams stamped with their send time from one source address, about one
/// every `interval`, until stopped (and never longer than two minutes).
pub struct StampedSender {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Vec<u64>>>,
}

impl StampedSender {
    pub fn start(client: &Netns, source: IpAddr, dest: IpAddr, interval: Duration) -> Self {
        let socket =
            client.run_in(|| UdpSocket::bind(SocketAddr::new(source, 0)).expect("bind sender"));
        let target = SocketAddr::new(dest, UDP_PORT);
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(120);
            let mut sent = Vec::new();
            while !flag.load(Ordering::Relaxed) && Instant::now() < deadline {
                let stamp = now_ns();
                socket
                    .send_to(&stamp.to_be_bytes(), target)
                    .expect("send_to");
                sent.push(stamp);
                std::thread::sleep(interval);
            }
            sent
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops sending; returns the send time of every datagram sent.
    pub fn stop(mut self) -> Vec<u64> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .expect("running")
            .join()
            .expect("sender thread")
    }
}

impl Drop for StampedSender {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

//! A TCP relay between network namespaces, for tests that run a node in a namespace of its
//! own: it listens on 127.0.0.1 in one namespace and connects each client to a target in
//! another, so a registry on the host's loopback appears on the node's loopback (same port,
//! so image references read the same on both sides) and the node's API server is reachable
//! from the host's kubectl. A socket keeps the namespace of the thread that created it, so
//! each side is made on a thread that entered its namespace. Dropping the relay stops
//! accepting; open connections end with their peers.

use std::fs::File;
use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub struct Relay {
    /// Where clients connect: 127.0.0.1:port in the listening namespace.
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

/// Enter the network namespace of `ns` on this thread.
fn enter(ns: &File) -> io::Result<()> {
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The namespace at `path`, or (`None`) the calling thread's own; opened now, since threads
/// spawned later inherit whatever namespace their spawner entered.
fn namespace(path: Option<&Path>) -> File {
    let path = path.map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("/proc/thread-self/ns/net"));
    File::open(&path).unwrap_or_else(|e| panic!("relay: opening network namespace {}: {e}", path.display()))
}

impl Relay {
    /// Listen on 127.0.0.1:`port` (0: any free port) in `listen_ns` and relay every client to
    /// `target`, connecting from `connect_ns` (`None`: the test process's own namespace).
    pub fn start(listen_ns: Option<&Path>, port: u16, connect_ns: Option<&Path>, target: SocketAddr) -> Relay {
        let listen_ns = namespace(listen_ns);
        let connect_ns = Arc::new(namespace(connect_ns));
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel();
        let stopped = stop.clone();
        std::thread::spawn(move || {
            let listener = enter(&listen_ns).and_then(|()| TcpListener::bind(("127.0.0.1", port)));
            let listener = match listener {
                Ok(l) => l,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            listener.set_nonblocking(true).expect("nonblocking listener");
            let _ = tx.send(Ok(listener.local_addr().expect("local addr")));
            while !stopped.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let connect_ns = connect_ns.clone();
                        std::thread::spawn(move || relay(client, &connect_ns, target));
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(20)),
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        let addr = rx.recv().expect("relay thread").unwrap_or_else(|e| panic!("relay: listening on 127.0.0.1:{port}: {e}"));
        Relay { addr, stop }
    }
}

fn relay(client: TcpStream, connect_ns: &File, target: SocketAddr) {
    let _ = client.set_nonblocking(false);
    let upstream = enter(connect_ns).and_then(|()| TcpStream::connect_timeout(&target, Duration::from_secs(10)));
    let Ok(upstream) = upstream else {
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let (mut c_read, mut c_write) = (client.try_clone().expect("clone"), client);
    let (mut u_read, mut u_write) = (upstream.try_clone().expect("clone"), upstream);
    let up = std::thread::spawn(move || {
        let _ = io::copy(&mut c_read, &mut u_write);
        let _ = u_write.shutdown(Shutdown::Write);
    });
    let _ = io::copy(&mut u_read, &mut c_write);
    let _ = c_write.shutdown(Shutdown::Write);
    let _ = up.join();
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

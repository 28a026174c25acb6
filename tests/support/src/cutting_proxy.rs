//! A loopback TCP proxy that cuts connections mid-transfer, for interrupted-pull tests: put
//! it in front of a [`crate::registry::Registry`] and pull through its `host`.
//!
//! The first `cuts` connections that carry more than `after` bytes from the registry to the
//! client are closed at that point, in the middle of whatever response they carry (a large
//! blob, typically); later connections pass untouched, so a client that retries, or resumes
//! with a Range request, succeeds.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

pub struct CuttingProxy {
    /// `127.0.0.1:PORT`: use in place of the registry's host.
    pub host: String,
    cuts_left: Arc<AtomicUsize>,
    cuts: usize,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl CuttingProxy {
    /// Proxy to `upstream` (`127.0.0.1:PORT`), cutting `cuts` connections after `after` bytes.
    pub fn start(upstream: &str, after: u64, cuts: usize) -> CuttingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let host = listener.local_addr().unwrap().to_string();
        let cuts_left = Arc::new(AtomicUsize::new(cuts));
        let stop = Arc::new(AtomicBool::new(false));
        let upstream = upstream.to_string();
        let thread = {
            let (cuts_left, stop) = (cuts_left.clone(), stop.clone());
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let (Ok(client), Ok(server)) = (conn, TcpStream::connect(&upstream)) else { continue };
                    let cuts_left = cuts_left.clone();
                    std::thread::spawn(move || relay(client, server, after, &cuts_left));
                }
            })
        };
        CuttingProxy { host, cuts_left, cuts, stop, thread: Some(thread) }
    }

    /// How many connections were cut so far.
    pub fn cut(&self) -> usize {
        self.cuts - self.cuts_left.load(Ordering::SeqCst)
    }
}

fn relay(client: TcpStream, server: TcpStream, after: u64, cuts_left: &AtomicUsize) {
    let (Ok(mut c2), Ok(mut s2)) = (client.try_clone(), server.try_clone()) else { return };
    // Client to server, untouched.
    let up = std::thread::spawn(move || {
        let _ = std::io::copy(&mut c2, &mut s2);
        let _ = s2.shutdown(Shutdown::Write);
    });
    let (mut client, mut server) = (client, server);
    let mut sent = 0u64;
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match server.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if sent + n as u64 > after
            && cuts_left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |c| c.checked_sub(1)).is_ok()
        {
            let keep = (after - sent) as usize;
            let _ = client.write_all(&buf[..keep]);
            break;
        }
        if client.write_all(&buf[..n]).is_err() {
            break;
        }
        sent += n as u64;
    }
    let _ = client.shutdown(Shutdown::Both);
    let _ = server.shutdown(Shutdown::Both);
    let _ = up.join();
}

impl Drop for CuttingProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(&self.host);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

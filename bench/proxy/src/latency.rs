//! First-packet latency: a node namespace whose backend programs `count` services, a pod
//! namespace (10.244.0.2, behind a veth) with a real TCP server on 8080, and many new TCP
//! connections from the node to the LAST service (the last rules iptables walks), each one's
//! SYN going through the NAT rules (a new conntrack entry: nothing is cached). The time of
//! `connect()` (SYN out, SYN-ACK back) is recorded; each connection is then reset (linger 0)
//! so no TIME_WAIT or lingering conntrack state builds up.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cni::proxy::BackendOptions;
use nix::sys::socket::{setsockopt, sockopt};

use crate::netns::Netns;
use crate::{backend, state};

const POD: Ipv4Addr = Ipv4Addr::new(10, 244, 0, 2);
const WARMUP: usize = 50;

pub struct Latency {
    pub p50: Duration,
    pub p99: Duration,
    pub failed: usize,
}

pub fn measure(backend_name: &str, count: usize, endpoints: usize, connections: usize) -> Result<Latency, String> {
    let node = Netns::new("node")?;
    let pod = Netns::new("pod")?;
    node.run(&["ip", "link", "add", "pod0", "type", "veth", "peer", "name", "eth0", "netns", &pod.name])?;
    node.run(&["ip", "addr", "add", "10.244.0.1/24", "dev", "pod0"])?;
    node.run(&["ip", "link", "set", "pod0", "up"])?;
    pod.run(&["ip", "addr", "add", "10.244.0.2/24", "dev", "eth0"])?;
    pod.run(&["ip", "link", "set", "eth0", "up"])?;
    pod.run(&["ip", "route", "add", "default", "via", "10.244.0.1"])?;
    // A default route, as a real node has: a cluster IP must be routable before its DNAT.
    node.run(&["ip", "link", "add", "up0", "type", "veth", "peer", "name", "up1"])?;
    node.run(&["ip", "addr", "add", "192.168.99.1/24", "dev", "up0"])?;
    node.run(&["ip", "link", "set", "up0", "up"])?;
    node.run(&["ip", "link", "set", "up1", "up"])?;
    node.run(&["ip", "route", "add", "default", "via", "192.168.99.2"])?;

    let stop = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let server = pod.thread({
        let stop = stop.clone();
        move || serve(&stop, ready_tx)
    });
    ready_rx.recv_timeout(Duration::from_secs(5)).map_err(|_| "the pod's server did not start".to_string())??;

    // The measured service is the last one, with the real pod as its only endpoint.
    let mut desired = state::services(count, endpoints);
    let last = count - 1;
    desired.services.get_mut(&state::name(last)).unwrap().endpoints = vec![state::endpoint(POD, 8080)];
    let mut b = backend(backend_name, BackendOptions { netns: Some(node.name.clone()) })?;
    b.sync(&desired).map_err(|e| e.to_string())?;

    let target = SocketAddr::from((state::cluster_ip(last), 80));
    let samples = node.thread(move || connect_many(target, connections)).join().map_err(|_| "client thread panicked".to_string())??;

    stop.store(true, Ordering::SeqCst);
    // Wakes the server's accept() so it sees the flag.
    let _ = node.thread(move || TcpStream::connect_timeout(&SocketAddr::from((POD, 8080)), Duration::from_secs(1))).join();
    let _ = server.join();
    samples
}

fn serve(stop: &AtomicBool, ready: std::sync::mpsc::Sender<Result<(), String>>) {
    let listener = match TcpListener::bind(("0.0.0.0", 8080)) {
        Ok(l) => l,
        Err(e) => {
            let _ = ready.send(Err(format!("pod server: bind: {e}")));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    for conn in listener.incoming() {
        drop(conn);
        if stop.load(Ordering::SeqCst) {
            return;
        }
    }
}

fn connect_many(target: SocketAddr, connections: usize) -> Result<Latency, String> {
    // The service must answer at all before anything is timed.
    TcpStream::connect_timeout(&target, Duration::from_secs(2)).map_err(|e| format!("{target} (the measured service): {e}"))?;
    let mut samples = Vec::with_capacity(connections);
    let mut failed = 0;
    for i in 0..WARMUP + connections {
        let start = Instant::now();
        match TcpStream::connect_timeout(&target, Duration::from_secs(2)) {
            Ok(stream) => {
                let elapsed = start.elapsed();
                let _ = setsockopt(&stream, sockopt::Linger, &libc::linger { l_onoff: 1, l_linger: 0 });
                if i >= WARMUP {
                    samples.push(elapsed);
                }
            }
            Err(_) => failed += 1,
        }
    }
    if samples.is_empty() {
        return Err(format!("no connection to {target} succeeded"));
    }
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    Ok(Latency { p50: at(0.50), p99: at(0.99), failed })
}

//! Benchmark driver for bench/proxy.sh (run as root): the service proxy's backends side by
//! side in one run, each in network namespaces of its own (`krs-bp<pid>-*`), never the
//! host's rules:
//!   - time to program N services with E endpoints each: a fresh backend's first (full)
//!     sync, then one service's endpoints changed and synced again; median of R runs;
//!   - first-packet latency to a service at 10 and at 10,000 services: p50/p99 of the
//!     `connect()` time of many new TCP connections from the node to the last service,
//!     whose endpoint is a real server in a pod namespace.
//!
//! It prints Markdown tables.

mod latency;
mod netns;
mod programming;
mod state;

use std::time::Duration;

use clap::Parser;
use cni::proxy::iptables::Iptables;
use cni::proxy::{Backend, BackendOptions};

#[derive(Parser)]
struct Args {
    /// Backends to compare, in order.
    #[arg(long, value_delimiter = ',', default_value = "nftables,iptables")]
    backends: Vec<String>,
    /// Service counts for the programming times.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    program: Vec<usize>,
    /// Service counts for the first-packet latency.
    #[arg(long, value_delimiter = ',', default_value = "10,10000")]
    latency: Vec<usize>,
    /// Endpoints per service.
    #[arg(long, default_value_t = 5)]
    endpoints: usize,
    /// Timed runs of each programming measure (the median is shown).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Timed connections per latency measure.
    #[arg(long, default_value_t = 2000)]
    connections: usize,
    /// Print the iptables backend's complete `iptables-restore` input for this many
    /// services and exit (to time or inspect iptables-restore alone).
    #[arg(long)]
    dump_restore: Option<usize>,
}

/// The backend under test, by name.
fn backend(name: &str, options: BackendOptions) -> Result<Box<dyn Backend>, String> {
    match name {
        "iptables" => Ok(Box::new(Iptables::new(options))),
        "nftables" => Ok(Box::new(cni::proxy::nftables::Nftables::new(options))),
        other => Err(format!("unknown backend {other:?}: expected nftables or iptables")),
    }
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

fn main() {
    let args = Args::parse();
    if let Some(count) = args.dump_restore {
        print!("{}", cni::proxy::iptables::render_restore(&state::services(count, args.endpoints)));
        return;
    }
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("krs-bench-proxy: needs root (it makes network namespaces and rules in them)");
        std::process::exit(2);
    }
    let mut failed = false;

    println!("### Programming {} endpoints per service (median of {} runs)\n", args.endpoints, args.runs);
    println!("| backend | services | full sync | one-service change |");
    println!("|---|---:|---:|---:|");
    for count in &args.program {
        for name in &args.backends {
            match programming::measure(name, *count, args.endpoints, args.runs) {
                Ok(p) => println!("| {name} | {count} | {} | {} |", ms(p.full), ms(p.one_change)),
                Err(e) => {
                    failed |= !e.ends_with("not built in");
                    println!("| {name} | {count} | {e} | |");
                }
            }
        }
    }

    println!("\n### First-packet latency: TCP connect to the last service, {} new connections\n", args.connections);
    println!("| backend | services | p50 | p99 | failed |");
    println!("|---|---:|---:|---:|---:|");
    for count in &args.latency {
        for name in &args.backends {
            match latency::measure(name, *count, args.endpoints, args.connections) {
                Ok(l) => println!("| {name} | {count} | {} | {} | {} |", us(l.p50), us(l.p99), l.failed),
                Err(e) => {
                    failed |= !e.ends_with("not built in");
                    println!("| {name} | {count} | {e} | | |");
                }
            }
        }
    }
    if failed {
        std::process::exit(1);
    }
}

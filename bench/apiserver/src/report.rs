//! The figures as Markdown tables (for BENCHMARKS.md) and as JSON.

use std::fmt::Write;

use serde_json::json;

use crate::rss::Memory;
use crate::stats::Samples;
use crate::workload::{Config, Report};
use crate::{Kind, Target};

fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "–".into(), |v| if v.abs() >= 100.0 { format!("{v:.0}") } else { format!("{v:.2}") })
}

fn p50_p99(s: &Samples) -> String {
    format!("{} / {}", ms(s.p50()), ms(s.p99()))
}

fn p50_max(s: &Samples) -> String {
    format!("{} ({})", ms(s.p50()), ms(s.percentile(100.0)))
}

fn mib(m: Memory) -> String {
    format!("{:.1}", m.rss_kib as f64 / 1024.0)
}

fn process_name(target: &Target, index: usize) -> &'static str {
    match (&target.kind, index) {
        (Kind::ApiServer { .. }, 0) => "apiserver-lite",
        (Kind::ApiServer { .. }, _) | (Kind::Etcd { .. }, _) => "etcd",
    }
}

pub fn tables(config: &Config, results: &[(Target, String, Report)]) -> String {
    let mut out = String::new();
    let n = config.creates;
    let _ = writeln!(out, "\n{n} pods, {} concurrent clients for creates and gets; {} lists; watch: {} creates one at a time\n", config.concurrency, config.lists, config.watch_events);
    let _ = writeln!(
        out,
        "| target | protocol | creates/s | create p50 / p99 ms | gets/s | get p50 / p99 ms | list of {n}, ms, p50 (max) | list by {} ({} pages), ms, p50 (max) | watch, create ack → event p50 / p99 ms | watch, create sent → event p50 / p99 ms |",
        config.page,
        results.first().map_or(0, |r| r.2.pages)
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|");
    for (target, protocol, r) in results {
        let _ = writeln!(
            out,
            "| {} | {protocol} | {:.0} | {} | {:.0} | {} | {} | {} | {} | {} |",
            target.name,
            r.creates.per_second(),
            p50_p99(&r.creates.latency),
            r.gets.per_second(),
            p50_p99(&r.gets.latency),
            p50_max(&r.list_all),
            p50_max(&r.list_paged),
            p50_p99(&r.watch_ack_to_event),
            p50_p99(&r.watch_send_to_event),
        );
    }
    let _ = writeln!(out, "\nResident memory (VmRSS), MiB; peak is VmHWM over the whole run:\n");
    let _ = writeln!(out, "| target | process | at rest | with {n} pods | after the run, {} s idle ({} pods) | peak |", config.idle.as_secs(), n + config.watch_events);
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    for (target, _, r) in results {
        for (i, m) in r.memory.iter().enumerate() {
            let _ = writeln!(out, "| {} | {} | {} | {} | {} | {:.1} |", target.name, process_name(target, i), mib(m.at_rest), mib(m.with_pods), mib(m.idle), m.idle.peak_kib as f64 / 1024.0);
        }
    }
    out
}

pub fn json(config: &Config, results: &[(Target, String, Report)]) -> serde_json::Value {
    let samples = |s: &Samples| json!({"p50_ms": s.p50(), "p99_ms": s.p99(), "samples_ms": s.as_slice()});
    let targets: Vec<_> = results
        .iter()
        .map(|(target, protocol, r)| {
            json!({
                "name": target.name,
                "protocol": protocol,
                "creates": {"per_second": r.creates.per_second(), "wall_s": r.creates.wall.as_secs_f64(), "latency": samples(&r.creates.latency)},
                "gets": {"per_second": r.gets.per_second(), "wall_s": r.gets.wall.as_secs_f64(), "latency": samples(&r.gets.latency)},
                "list_all": samples(&r.list_all),
                "list_paged": samples(&r.list_paged),
                "pages": r.pages,
                "watch_ack_to_event": samples(&r.watch_ack_to_event),
                "watch_send_to_event": samples(&r.watch_send_to_event),
                "memory": r.memory.iter().enumerate().map(|(i, m)| json!({
                    "process": process_name(target, i), "pid": m.pid,
                    "at_rest": m.at_rest, "with_pods": m.with_pods, "idle": m.idle,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "creates": config.creates, "concurrency": config.concurrency, "lists": config.lists,
        "page": config.page, "watch_events": config.watch_events, "idle_s": config.idle.as_secs(),
        "targets": targets,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millisecond_formatting() {
        assert_eq!(ms(Some(1.234)), "1.23");
        assert_eq!(ms(Some(-0.5)), "-0.50");
        assert_eq!(ms(Some(1234.4)), "1234");
        assert_eq!(ms(None), "–");
        assert_eq!(p50_max(&Samples::from_millis(vec![3.0, 1.0, 2.0])), "2.00 (3.00)");
    }
}

//! Logging in runc's format, because tools that drive runc (containerd's shim, CRI-O) read
//! it: text (`time="..." level=error msg="..."`) or JSON lines
//! (`{"level":"error","msg":"...","time":"..."}`), to `--log` or stderr.

use std::fmt::Write as _;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;

use crate::cli::LogFormat;

struct Sink {
    out: Mutex<Box<dyn Write + Send>>,
    format: LogFormat,
    level: Level,
}

#[derive(Default)]
struct Fields {
    msg: String,
    extra: Vec<(String, String)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.msg = value.to_string();
        } else {
            self.extra.push((field.name().to_string(), value.to_string()));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.msg = format!("{value:?}");
        } else {
            self.extra.push((field.name().to_string(), format!("{value:?}")));
        }
    }
}

fn level_name(l: &Level) -> &'static str {
    match *l {
        Level::ERROR => "error",
        Level::WARN => "warning",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    }
}

/// Render one record. Values are quoted as JSON strings, which is how logrus quotes them.
pub fn render(format: LogFormat, level: &str, time: &str, msg: &str, extra: &[(String, String)]) -> String {
    let q = |s: &str| serde_json::to_string(s).unwrap_or_default();
    match format {
        LogFormat::Text => {
            let mut line = format!("time={} level={} msg={}", q(time), level, q(msg));
            for (k, v) in extra {
                let _ = write!(line, " {k}={}", q(v));
            }
            line
        }
        LogFormat::Json => {
            let mut obj = serde_json::Map::new();
            obj.insert("level".into(), level.into());
            obj.insert("msg".into(), msg.into());
            obj.insert("time".into(), time.into());
            for (k, v) in extra {
                obj.insert(k.clone(), v.clone().into());
            }
            serde_json::Value::Object(obj).to_string()
        }
    }
}

impl<S: Subscriber> Layer<S> for Sink {
    fn enabled(&self, meta: &tracing::Metadata<'_>, _: Context<'_, S>) -> bool {
        *meta.level() <= self.level
    }

    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let time = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        let line = render(self.format, level_name(event.metadata().level()), &time, &fields.msg, &fields.extra);
        if let Ok(mut out) = self.out.lock() {
            let _ = writeln!(out, "{line}");
        }
    }
}

/// Install the logger. Returns whether logs go to stderr (then errors are not printed twice).
pub fn init(log: Option<&Path>, format: LogFormat, debug: bool) -> bool {
    let (out, to_stderr): (Box<dyn Write + Send>, bool) = match log {
        Some(path) if path != Path::new("/dev/stderr") => match OpenOptions::new().create(true).append(true).open(path) {
            Ok(f) => (Box::new(f), false),
            Err(e) => {
                eprintln!("runtime-rs: cannot open log file {}: {e}; logging to stderr", path.display());
                (Box::new(std::io::stderr()), true)
            }
        },
        _ => (Box::new(std::io::stderr()), true),
    };
    let sink = Sink { out: Mutex::new(out), format, level: if debug { Level::DEBUG } else { Level::WARN } };
    let _ = tracing_subscriber::registry().with(sink).try_init();
    to_stderr
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_matches_logrus() {
        assert_eq!(
            render(LogFormat::Text, "error", "2026-11-23T09:17:46Z", "container does not exist", &[]),
            r#"time="2026-11-23T09:17:46Z" level=error msg="container does not exist""#
        );
        assert_eq!(
            render(LogFormat::Text, "warning", "t", "say \"hi\"", &[("id".into(), "c1".into())]),
            r#"time="t" level=warning msg="say \"hi\"" id="c1""#
        );
    }

    #[test]
    fn json_has_level_msg_time() {
        let line = render(LogFormat::Json, "error", "t", "boom", &[]);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["level"], "error");
        assert_eq!(v["msg"], "boom");
        assert_eq!(v["time"], "t");
    }
}

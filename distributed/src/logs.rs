//! Log lines for pods: text on a terminal, JSON lines (what Cloud Logging reads: `severity`,
//! `message`, `timestamp`) otherwise, with the process's context fields (`rank`, `run_id`)
//! on every line. Every binary of the workspace sets its logs up here (`init`, feature
//! `cli`).

use std::io::IsTerminal;
use std::str::FromStr;
use std::sync::RwLock;

#[cfg(feature = "cli")]
use tracing::field::{Field, Visit};
#[cfg(feature = "cli")]
use tracing::{Event, Level, Subscriber};
#[cfg(feature = "cli")]
use tracing_subscriber::fmt::format::Writer;
#[cfg(feature = "cli")]
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
#[cfg(feature = "cli")]
use tracing_subscriber::registry::LookupSpan;

/// The variable that chooses the format when no flag does.
pub const LOG_FORMAT_ENV: &str = "DATAFLUX_LOG_FORMAT";

/// How log lines look (a clap value with feature `cli`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum LogFormat {
    /// Text for a person.
    Text,
    /// One JSON object per line.
    Json,
    /// Text when stderr is a terminal, JSON lines otherwise (a pod).
    #[default]
    Auto,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            "auto" | "" => Ok(LogFormat::Auto),
            other => Err(format!("{other:?}: expected text, json or auto")),
        }
    }
}

impl LogFormat {
    /// `DATAFLUX_LOG_FORMAT`, or auto.
    pub fn from_env() -> Self {
        std::env::var(LOG_FORMAT_ENV)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_default()
    }

    /// Text or JSON, auto decided.
    pub fn resolved(self) -> LogFormat {
        match self {
            LogFormat::Auto if std::io::stderr().is_terminal() => LogFormat::Text,
            LogFormat::Auto => LogFormat::Json,
            other => other,
        }
    }
}

static CONTEXT: RwLock<Vec<(&'static str, serde_json::Value)>> = RwLock::new(Vec::new());
static JSON: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Writes `message` for the person or the log collector whatever `RUST_LOG` filters: as is
/// in text mode, as one JSON line (severity `NOTICE`, with the context fields) in JSON mode,
/// so that nothing unstructured reaches Cloud Logging.
pub fn say(message: &str) {
    if JSON.load(std::sync::atomic::Ordering::Relaxed) {
        let mut line = serde_json::Map::new();
        line.insert("severity".into(), "NOTICE".into());
        line.insert("message".into(), message.into());
        line.insert(
            "timestamp".into(),
            chrono::Utc::now()
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
                .into(),
        );
        for (k, v) in CONTEXT.read().map(|c| c.clone()).unwrap_or_default() {
            line.insert(k.into(), v);
        }
        eprintln!("{}", serde_json::Value::Object(line));
    } else {
        eprintln!("{message}");
    }
}

/// Adds (or replaces) a field written on every line from now on (`rank`, `run_id`).
pub fn set_field(key: &'static str, value: impl Into<serde_json::Value>) {
    if let Ok(mut c) = CONTEXT.write() {
        let value = value.into();
        match c.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => c.push((key, value)),
        }
    }
}

/// Sends `tracing` events to stderr in `format`, filtered by `RUST_LOG`, else at
/// `default_level` (feature `cli`).
#[cfg(feature = "cli")]
pub fn init(default_level: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let json = format.resolved() == LogFormat::Json;
    JSON.store(json, std::sync::atomic::Ordering::Relaxed);
    // A second set-up in one process (tests) keeps the first.
    let _ = tracing_subscriber::fmt()
        .with_writer(|| Stderr)
        .with_env_filter(filter)
        .event_format(Lines { json })
        .try_init();
}

/// Where log lines go instead of straight to stderr while a live display owns the terminal.
type StderrHook = std::sync::Arc<dyn Fn(&[u8]) + Send + Sync>;

static STDERR_HOOK: RwLock<Option<StderrHook>> = RwLock::new(None);

/// Routes every log line through `hook` (for example a progress display that clears itself,
/// prints the line and redraws), or straight to stderr again with `None`.
pub fn set_stderr_hook(hook: Option<StderrHook>) {
    if let Ok(mut h) = STDERR_HOOK.write() {
        *h = hook;
    }
}

/// The log writer: stderr, or the hook of [`set_stderr_hook`]. The formatter writes each line
/// with one `write_all`, so a hook sees whole lines.
#[cfg(feature = "cli")]
struct Stderr;

#[cfg(feature = "cli")]
impl std::io::Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let hook = STDERR_HOOK.read().ok().and_then(|h| h.clone());
        match hook {
            Some(hook) => {
                hook(buf);
                Ok(buf.len())
            }
            None => std::io::stderr().write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// The one event format, text or JSON.
#[cfg(feature = "cli")]
struct Lines {
    json: bool,
}

#[cfg(feature = "cli")]
#[derive(Default)]
struct Fields(serde_json::Map<String, serde_json::Value>);

#[cfg(feature = "cli")]
impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_string(), format!("{value:?}").into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_string(), value.into());
    }
}

#[cfg(feature = "cli")]
/// Cloud Logging's severity names.
fn severity(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "ERROR",
        Level::WARN => "WARNING",
        Level::INFO => "INFO",
        _ => "DEBUG",
    }
}

#[cfg(feature = "cli")]
impl<S, N> FormatEvent<S, N> for Lines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let message = fields.0.remove("message").unwrap_or_default();
        let timestamp = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let meta = event.metadata();
        let context = CONTEXT.read().map(|c| c.clone()).unwrap_or_default();
        if self.json {
            let mut line = serde_json::Map::new();
            line.insert("severity".into(), severity(meta.level()).into());
            line.insert("message".into(), message);
            line.insert("timestamp".into(), timestamp.into());
            for (k, v) in context {
                line.insert(k.into(), v);
            }
            line.insert("target".into(), meta.target().into());
            for (k, v) in fields.0 {
                line.entry(k).or_insert(v);
            }
            writeln!(writer, "{}", serde_json::Value::Object(line))
        } else {
            write!(writer, "{timestamp} {:>5}", meta.level())?;
            for (k, v) in &context {
                write!(writer, " {k}={}", plain(v))?;
            }
            write!(writer, " {}: {}", meta.target(), plain(&message))?;
            for (k, v) in &fields.0 {
                write!(writer, " {k}={}", plain(v))?;
            }
            writeln!(writer)
        }
    }
}

#[cfg(feature = "cli")]
fn plain(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse_and_auto_resolves() {
        assert_eq!("JSON".parse::<LogFormat>(), Ok(LogFormat::Json));
        assert_eq!("text".parse::<LogFormat>(), Ok(LogFormat::Text));
        assert!("xml".parse::<LogFormat>().is_err());
        assert_ne!(LogFormat::Auto.resolved(), LogFormat::Auto);
    }

    #[cfg(feature = "cli")]
    #[test]
    fn severities_are_cloud_loggings() {
        assert_eq!(severity(&Level::WARN), "WARNING");
    }

    #[test]
    fn context_fields_are_set_once_each() {
        set_field("rank", 3);
        set_field("rank", 4);
        let c = CONTEXT.read().unwrap().clone();
        assert_eq!(c.iter().filter(|(k, _)| *k == "rank").count(), 1);
        assert_eq!(c.iter().find(|(k, _)| *k == "rank").unwrap().1, 4);
    }
}

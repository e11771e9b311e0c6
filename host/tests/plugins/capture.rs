//! Captures the `tracing` events that carry a `plugin` field, process-wide,
//! so tests can assert that a failure was logged (each test uses its own
//! plugin name, so parallel tests do not see each other's lines).

use std::sync::{Mutex, OnceLock};

use tracing::field::{Field, Visit};
use tracing_subscriber::{Layer, layer::Context, prelude::*};

#[derive(Debug, Clone)]
pub struct Line {
    pub level: tracing::Level,
    pub plugin: String,
    pub text: String,
}

static LINES: Mutex<Vec<Line>> = Mutex::new(Vec::new());

struct Capture;

#[derive(Default)]
struct Fields {
    plugin: Option<String>,
    text: String,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let value = format!("{value:?}");
        if field.name() == "plugin" {
            self.plugin = Some(value.trim_matches('"').to_owned());
        }
        self.text.push_str(&format!(" {}={}", field.name(), value));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "plugin" {
            self.plugin = Some(value.to_owned());
        }
        self.text.push_str(&format!(" {}={}", field.name(), value));
    }
}

impl<S: tracing::Subscriber> Layer<S> for Capture {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        if let Some(plugin) = fields.plugin {
            LINES.lock().unwrap().push(Line { level: *event.metadata().level(), plugin, text: fields.text });
        }
    }
}

/// Installs the capture (once), warnings and errors written to the test's
/// own output (shown when it fails: a 500's cause, say), and the metrics
/// recorder.
pub fn install() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let _ = tracing_subscriber::registry()
            .with(Capture.with_filter(tracing_subscriber::filter::LevelFilter::INFO))
            .with(tracing_subscriber::fmt::layer().with_test_writer().with_filter(tracing_subscriber::filter::LevelFilter::WARN))
            .try_init();
    });
    weft::telemetry::metrics_handle();
}

/// The lines logged for `plugin` so far.
pub fn lines(plugin: &str) -> Vec<Line> {
    LINES.lock().unwrap().iter().filter(|line| line.plugin == plugin).cloned().collect()
}

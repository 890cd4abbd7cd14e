//! What the code under test logged (as filtered by [`crate::init_tracing`]), for tests
//! that assert a failure was reported.

use std::fmt::Write as _;
use std::sync::Mutex;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

static LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Records every event it is given as one line: level, message, then the fields.
pub struct CaptureLayer;

struct Line(String);

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, " {value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            let _ = write!(self.0, " {value}");
        } else {
            let _ = write!(self.0, " {}={value}", field.name());
        }
    }
}

impl<S: Subscriber> Layer<S> for CaptureLayer {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let level = *event.metadata().level();
        let mut line = Line(level.to_string());
        event.record(&mut line);
        LINES.lock().expect("log capture poisoned").push(line.0);
    }
}

/// Captured lines containing every one of `needles`.
pub fn matching(needles: &[&str]) -> Vec<String> {
    LINES
        .lock()
        .expect("log capture poisoned")
        .iter()
        .filter(|line| needles.iter().all(|needle| line.contains(needle)))
        .cloned()
        .collect()
}

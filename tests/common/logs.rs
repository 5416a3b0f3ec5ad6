//! Captures this test process's warnings and errors (the `log` records of in-process
//! servers), so a test can count what a server reported. Tests of one binary share it:
//! filter by a text unique to the test (a temp path, a port).

use std::sync::{Mutex, OnceLock};

struct Capture(Mutex<Vec<String>>);

impl log::Log for Capture {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::Level::Warn
    }
    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) {
            if let Ok(mut v) = self.0.lock() {
                v.push(r.args().to_string());
            }
        }
    }
    fn flush(&self) {}
}

/// Starts capturing (idempotent) and returns the lines so far that contain `containing`.
pub fn logged(containing: &str) -> Vec<String> {
    static CAPTURE: OnceLock<&'static Capture> = OnceLock::new();
    let c = CAPTURE.get_or_init(|| {
        let c: &'static Capture = Box::leak(Box::new(Capture(Mutex::new(Vec::new()))));
        let _ = log::set_logger(c);
        log::set_max_level(log::LevelFilter::Warn);
        c
    });
    let v = c.0.lock().unwrap_or_else(|p| p.into_inner());
    v.iter()
        .filter(|l| l.contains(containing))
        .cloned()
        .collect()
}

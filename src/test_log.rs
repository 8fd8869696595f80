//! What the code logs during a test, as the JSON lines `--log-format json` writes, for tests
//! that check a log line.

use std::sync::{Arc, Mutex};

/// The lines logged through [`JsonLog::subscriber`], kept in memory.
#[derive(Clone, Default)]
pub(crate) struct JsonLog(Arc<Mutex<Vec<u8>>>);

impl JsonLog {
    /// A subscriber writing one flattened JSON object per event into this log; an `Arc`, so
    /// one test can install it around several calls.
    pub(crate) fn subscriber(&self) -> Arc<impl tracing::Subscriber + Send + Sync + 'static> {
        let writer = self.clone();
        Arc::new(
            tracing_subscriber::fmt()
                .json()
                .flatten_event(true)
                .with_writer(move || writer.clone())
                .finish(),
        )
    }

    /// Everything logged so far.
    pub(crate) fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

impl std::io::Write for JsonLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

//! Structured logs on stderr (text or JSON), with every registered secret masked.

use std::io::Write;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// Each log event is written through `redact` before it reaches stderr.
struct Redacting;

struct RedactingWriter(Vec<u8>);

impl Write for RedactingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for RedactingWriter {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.0);
        let _ = std::io::stderr().write_all(crate::secrets::redact(&text).as_bytes());
    }
}

impl<'a> MakeWriter<'a> for Redacting {
    type Writer = RedactingWriter;
    fn make_writer(&'a self) -> Self::Writer {
        RedactingWriter(Vec::new())
    }
}

/// Logs go to stderr. A run's lines carry its `run` span (pipeline and run id): in text as the
/// `run{pipeline=.. run_id=..}:` prefix, in JSON as the `span` object of every line.
pub fn init(json: bool, filter: &str) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(Redacting)
        .with_target(false)
        .with_ansi(colours_wanted());
    let _ = if json {
        builder.json().with_span_list(false).try_init()
    } else {
        builder.try_init()
    };
}

/// Colours only for a person at a terminal: escape codes in a file, a pipe or journald are
/// noise (and `NO_COLOR`, https://no-color.org, turns them off everywhere).
fn colours_wanted() -> bool {
    use std::io::IsTerminal as _;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

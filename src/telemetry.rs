//! Logging: `RUST_LOG` filters (default `info`), text or JSON lines, always
//! on stderr so that stdout carries only what a command prints for people
//! and scripts (a token, the `--dev` banner).
//!
//! A log line is one line, whatever the values in it: JSON lines are
//! escaped by construction, and text lines go through [`OneLine`], which
//! escapes line breaks and other control characters a client-supplied value
//! could carry. Lines that clients can cause at will (refused handshakes
//! and requests) go through [`refusals`], a budget that keeps a flood of
//! them from flooding the log.

use std::io::{IsTerminal, Write};
use std::num::NonZeroU32;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use governor::{DefaultDirectRateLimiter, Quota};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::cli::LogFormat;

/// Lines about refused clients written per second at most, after a burst
/// of [`REFUSAL_LINES_BURST`].
const REFUSAL_LINES_PER_SECOND: u32 = 20;
const REFUSAL_LINES_BURST: u32 = 200;

pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::stderr().is_terminal();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(OneLine { ansi });
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
    // A second initialisation (tests) keeps the first subscriber.
    let _ = result;
}

/// Writes each formatted event to stderr as one line: a line break or a
/// control character inside it is written as an escape (`\n`, `\u{1b}`),
/// so that no value can forge a line of its own. With `ansi`, the escape
/// character of the formatter's own colours is kept.
#[derive(Clone, Copy)]
struct OneLine {
    ansi: bool,
}

impl<'a> MakeWriter<'a> for OneLine {
    type Writer = OneLine;

    fn make_writer(&'a self) -> Self::Writer {
        *self
    }
}

impl Write for OneLine {
    /// The formatter hands over a whole event, ending in a newline.
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let (body, end) = match buf.strip_suffix(b"\n") {
            Some(body) => (body, "\n"),
            None => (buf, ""),
        };
        let text = String::from_utf8_lossy(body);
        let line = escape_controls(&text, self.ansi);
        let mut err = std::io::stderr().lock();
        err.write_all(line.as_bytes())?;
        err.write_all(end.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

fn escape_controls(text: &str, keep_escape: bool) -> std::borrow::Cow<'_, str> {
    let needs = |c: char| {
        (c.is_control() && c != '\t' && !(keep_escape && c == '\u{1b}'))
            || matches!(c, '\u{2028}' | '\u{2029}')
    };
    if !text.chars().any(needs) {
        return text.into();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if needs(c) => out.push_str(&c.escape_unicode().to_string()),
            c => out.push(c),
        }
    }
    out.into()
}

/// Whether a line about a refused client may be written now: `Some(n)`,
/// with `n` the lines left out since the last one written (to be logged
/// with it), or `None` past the budget (the line is counted, not written).
pub fn refusals() -> Option<u64> {
    static BUDGET: OnceLock<DefaultDirectRateLimiter> = OnceLock::new();
    static SUPPRESSED: AtomicU64 = AtomicU64::new(0);
    let budget = BUDGET.get_or_init(|| {
        let rate = NonZeroU32::new(REFUSAL_LINES_PER_SECOND).expect("non-zero");
        let burst = NonZeroU32::new(REFUSAL_LINES_BURST).expect("non-zero");
        DefaultDirectRateLimiter::direct(Quota::per_second(rate).allow_burst(burst))
    });
    match budget.check() {
        Ok(()) => Some(SUPPRESSED.swap(0, Ordering::Relaxed)),
        Err(_) => {
            SUPPRESSED.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_cannot_break_a_line() {
        assert_eq!(escape_controls("plain text", false), "plain text");
        assert_eq!(
            escape_controls("alice\n INFO fake line", false),
            "alice\\n INFO fake line"
        );
        assert_eq!(escape_controls("a\r\u{1b}[31mb", false), "a\\r\\u{1b}[31mb");
        assert_eq!(escape_controls("a\u{1b}[31mb", true), "a\u{1b}[31mb");
        assert_eq!(escape_controls("a\u{2028}b\tc", false), "a\\u{2028}b\tc");
    }
}

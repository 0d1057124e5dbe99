//! Logging: `RUST_LOG` filters (default `info`), text or JSON lines, always
//! on stderr so that stdout carries only what a command prints for people
//! and scripts (a token, the `--dev` banner). Text lines are coloured only
//! when stderr is a terminal and `NO_COLOR` is unset.
//!
//! A log line is one line, whatever the values in it: JSON lines are
//! escaped by construction, and text lines go through [`OneLine`], which
//! escapes line breaks and other control characters a client-supplied value
//! could carry. Lines that clients can cause at will (refused handshakes
//! and requests, connections past a cap) go through a [`LogBudget`], so
//! that a flood of them does not flood the log.

use std::io::{IsTerminal, Write};
use std::num::NonZeroU32;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::config::LogFormat;

pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = colours(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    );
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

/// Whether text lines carry ANSI colours: on a terminal, unless `NO_COLOR`
/// is set to anything but the empty string (no-color.org).
fn colours(terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
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

/// A budget of log lines for what clients can cause at will: `lines` at
/// once, refilled at `lines` per `period` (a token bucket), counting the
/// lines it held back so that the next line written can say how many
/// occurrences it stands for.
pub struct LogBudget {
    lines: DefaultDirectRateLimiter,
    held_back: AtomicU64,
}

impl LogBudget {
    pub fn new(lines: u32, period: Duration) -> Self {
        let lines = NonZeroU32::new(lines).unwrap_or(NonZeroU32::MIN);
        let every = (period / lines.get()).max(Duration::from_nanos(1));
        let quota = Quota::with_period(every)
            .expect("a positive period")
            .allow_burst(lines);
        Self {
            lines: DefaultDirectRateLimiter::direct(quota),
            held_back: AtomicU64::new(0),
        }
    }

    /// Records one occurrence: `Some(n)` when its line should be written,
    /// `n` being the occurrences held back since the last line written;
    /// `None` past the budget.
    pub fn admit(&self) -> Option<u64> {
        match self.lines.check() {
            Ok(()) => Some(self.held_back.swap(0, Ordering::Relaxed)),
            Err(_) => {
                self.held_back.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }
}

/// The budget of lines about refused credentials (handshakes and HTTP
/// requests): each is logged, up to 200 at once and 20 a second.
pub fn refused_credentials() -> &'static LogBudget {
    static BUDGET: LazyLock<LogBudget> =
        LazyLock::new(|| LogBudget::new(200, Duration::from_secs(10)));
    &BUDGET
}

/// How often each kind of refusal that only a flood causes (connections
/// past a cap, foreign origins) may be logged: one line per period.
pub const REFUSAL_LOG_PERIOD: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_writes_its_lines_then_counts_those_held_back() {
        let budget = LogBudget::new(1, Duration::from_secs(3600));
        assert_eq!(budget.admit(), Some(0));
        for _ in 0..1000 {
            assert_eq!(budget.admit(), None);
        }
        let budget = LogBudget::new(3, Duration::from_secs(3600));
        assert_eq!(
            (0..4).map(|_| budget.admit()).collect::<Vec<_>>(),
            [Some(0), Some(0), Some(0), None]
        );
    }

    #[test]
    fn colours_only_on_a_terminal_without_no_color() {
        assert!(colours(true, None));
        assert!(colours(true, Some("".as_ref())));
        assert!(!colours(true, Some("1".as_ref())));
        assert!(!colours(false, None));
    }

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

//! An error and its causes on one line, for logs and messages.
//!
//! Errors here keep their causes as `source()` (thiserror's `#[source]`), so
//! each layer says what it was doing and the layer below says why. A log line
//! shows the whole chain through [`Report`], as anyhow's `{:#}` does, instead
//! of each error flattening its cause into a string.

use std::error::Error;
use std::fmt;

/// Displays `error: cause: cause's cause ...`.
pub struct Report<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            let text = cause.to_string();
            // Some layers repeat their cause's message in their own.
            if !text.is_empty() {
                write!(f, ": {text}")?;
            }
            source = cause.source();
        }
        Ok(())
    }
}

impl fmt::Debug for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("reading shard s1")]
    struct Outer(#[source] Inner);

    #[derive(Debug, thiserror::Error)]
    #[error("connection reset")]
    struct Inner;

    #[test]
    fn a_report_shows_every_cause_in_order() {
        assert_eq!(
            Report(&Outer(Inner)).to_string(),
            "reading shard s1: connection reset"
        );
        assert_eq!(Report(&Inner).to_string(), "connection reset");
    }
}

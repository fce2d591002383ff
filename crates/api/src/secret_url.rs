//! URLs that may carry credentials (`http://user:password@host/`), rendered
//! for people without them.
//!
//! Webhook sinks are often addressed with userinfo. Whatever shows a sink's
//! address (logs, metrics, Kubernetes status and Events, the `knativeerrordest`
//! attribute of a dead-lettered event) goes through here, so a password
//! reaches only the sink itself.

use std::borrow::Cow;

use url::Url;

/// What replaces a password wherever a URL is shown.
pub const REDACTED: &str = "redacted";

/// `url` without its userinfo: what may be shown anywhere.
pub fn without_userinfo(url: &Url) -> Url {
    let mut shown = url.clone();
    // Both fail only for URLs that cannot have userinfo at all.
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown
}

/// Whether `url` carries a user name or a password.
pub fn has_userinfo(url: &Url) -> bool {
    !url.username().is_empty() || url.password().is_some()
}

/// Text that was meant as a URL but may not parse, with anything between
/// `://` and the next `@` of its authority replaced: an error message about a
/// malformed sink must not print the password it holds.
pub fn redact_text(text: &str) -> Cow<'_, str> {
    let Some(scheme_end) = text.find("://") else {
        return Cow::Borrowed(text);
    };
    let authority_start = scheme_end + 3;
    let rest = &text[authority_start..];
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_len].rfind('@') {
        Some(at) => Cow::Owned(format!(
            "{}{REDACTED}{}",
            &text[..authority_start],
            &rest[at..]
        )),
        None => Cow::Borrowed(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_is_removed_and_the_rest_kept() {
        let url: Url = "https://user:pa%40ss@sink.example:8443/path?q=1"
            .parse()
            .expect("url");
        assert!(has_userinfo(&url));
        let shown = without_userinfo(&url);
        assert_eq!(shown.as_str(), "https://sink.example:8443/path?q=1");
        assert!(!has_userinfo(&shown));
        let plain: Url = "http://sink/".parse().expect("url");
        assert!(!has_userinfo(&plain));
        assert_eq!(without_userinfo(&plain), plain);
    }

    #[test]
    fn unparseable_text_loses_its_userinfo_too() {
        assert_eq!(
            redact_text("http://user:s3cret@bad host/x@y"),
            "http://redacted@bad host/x@y"
        );
        assert_eq!(redact_text("http://host:99999/"), "http://host:99999/");
        assert_eq!(redact_text("not a url"), "not a url");
        assert_eq!(redact_text("ftp://a:b@c"), "ftp://redacted@c");
    }
}

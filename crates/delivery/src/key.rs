//! The item key rendered as text, for the `subject` and `partitionkey` attributes.
//!
//! Key attributes are rendered `name=value`, sorted by name and joined by `,`,
//! so the same item always gets the same string whatever order the API used.
//! `%`, `,` and `=` inside names and values are percent-encoded so the
//! rendering can be split back unambiguously.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use dynamodb_source_stream::{AttributeValue, Item};

fn escape(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '%' => out.push_str("%25"),
            ',' => out.push_str("%2C"),
            '=' => out.push_str("%3D"),
            c => out.push(c),
        }
    }
}

/// Appends one key attribute's value, escaped.
fn scalar(value: &AttributeValue, out: &mut String) {
    match value {
        AttributeValue::S(s) | AttributeValue::N(s) => escape(s, out),
        AttributeValue::B(b) => escape(&STANDARD.encode(b), out),
        // Key attributes are always S, N or B; anything else still renders
        // deterministically rather than failing the event.
        other => escape(&crate::format::typed_json(other), out),
    }
}

/// Renders a record's key, e.g. `pk=user%2C1,sk=42`.
pub(crate) fn render(keys: &Item) -> String {
    let mut out = String::new();
    render_into(keys, &mut out);
    out
}

/// Appends a record's key to `out`, as [`render`] renders it.
pub(crate) fn render_into(keys: &Item, out: &mut String) {
    for (i, (name, value)) in keys.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        escape(name, out);
        out.push('=');
        scalar(value, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_renders_sorted_by_name() {
        let keys = Item::from([
            ("sk".to_owned(), AttributeValue::N("42".into())),
            ("pk".to_owned(), AttributeValue::S("user#1".into())),
        ]);
        assert_eq!(render(&keys), "pk=user#1,sk=42");
    }

    #[test]
    fn separators_inside_values_are_escaped() {
        let keys = Item::from([("id".to_owned(), AttributeValue::S("a,b=c%".into()))]);
        assert_eq!(render(&keys), "id=a%2Cb%3Dc%25");
    }

    #[test]
    fn binary_keys_render_as_base64() {
        let keys = Item::from([("bin".to_owned(), AttributeValue::B(vec![0, 1, 255]))]);
        assert_eq!(render(&keys), "bin=AAH/");
    }

    #[test]
    fn empty_key_renders_empty() {
        assert_eq!(render(&Item::new()), "");
    }
}

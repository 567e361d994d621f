//! A minimal JSON writer.
//!
//! The collector writes its claims with this instead of serde_json: the output
//! is always the same small, fixed shape, and leaving serde out of the wasm
//! saves several kilobytes on every login page.

use alloc::string::String;

/// Appends JSON tokens to a string; the caller keeps the structure valid.
pub(crate) struct JsonWriter {
    out: String,
    /// Whether the next member or element needs a leading comma.
    need_comma: bool,
}

impl JsonWriter {
    pub(crate) fn new() -> Self {
        Self { out: String::with_capacity(512), need_comma: false }
    }

    pub(crate) fn finish(self) -> String {
        self.out
    }

    fn separator(&mut self) {
        if self.need_comma {
            self.out.push(',');
        }
    }

    pub(crate) fn begin_object(&mut self) {
        self.separator();
        self.out.push('{');
        self.need_comma = false;
    }

    pub(crate) fn end_object(&mut self) {
        self.out.push('}');
        self.need_comma = true;
    }

    pub(crate) fn begin_array(&mut self) {
        self.separator();
        self.out.push('[');
        self.need_comma = false;
    }

    pub(crate) fn end_array(&mut self) {
        self.out.push(']');
        self.need_comma = true;
    }

    /// Writes an object key; the value must follow.
    pub(crate) fn key(&mut self, key: &str) {
        self.separator();
        self.push_string(key);
        self.out.push(':');
        self.need_comma = false;
    }

    pub(crate) fn string(&mut self, value: &str) {
        self.separator();
        self.push_string(value);
        self.need_comma = true;
    }

    pub(crate) fn int(&mut self, value: i64) {
        self.separator();
        // Digits by hand: `core::fmt` would bring its whole machinery into the wasm.
        if value < 0 {
            self.out.push('-');
        }
        // Least significant first, then written in reverse; no indexing, so
        // no bounds check whose panic message would format integers.
        let mut magnitude = value.unsigned_abs();
        let mut digits = [0u8; 20];
        let mut count = 0;
        for slot in &mut digits {
            *slot = b'0' + (magnitude % 10) as u8;
            magnitude /= 10;
            count += 1;
            if magnitude == 0 {
                break;
            }
        }
        digits.iter().take(count).rev().for_each(|&d| self.out.push(char::from(d)));
        self.need_comma = true;
    }

    pub(crate) fn member_bool(&mut self, key: &str, value: bool) {
        self.key(key);
        self.separator();
        self.out.push_str(if value { "true" } else { "false" });
        self.need_comma = true;
    }

    pub(crate) fn member_str(&mut self, key: &str, value: &str) {
        self.key(key);
        self.string(value);
    }

    pub(crate) fn member_int(&mut self, key: &str, value: i64) {
        self.key(key);
        self.int(value);
    }

    fn push_string(&mut self, value: &str) {
        self.out.push('"');
        for c in value.chars() {
            match c {
                '"' => self.out.push_str("\\\""),
                '\\' => self.out.push_str("\\\\"),
                '\n' => self.out.push_str("\\n"),
                '\r' => self.out.push_str("\\r"),
                '\t' => self.out.push_str("\\t"),
                c if (c as u32) < 0x20 => {
                    const HEX: &[u8; 16] = b"0123456789abcdef";
                    self.out.push_str("\\u00");
                    self.out.push(char::from(HEX[(c as usize) >> 4]));
                    self.out.push(char::from(HEX[(c as usize) & 0xf]));
                }
                c => self.out.push(c),
            }
        }
        self.out.push('"');
    }
}

#[cfg(all(test, feature = "serde"))]
#[allow(clippy::unwrap_used, clippy::panic, reason = "tests fail by panicking")]
mod tests {
    use super::JsonWriter;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_string_round_trips_through_serde_json(s in any::<String>(), n in any::<i64>()) {
            // `s` is also a key: it must not be one of the others.
            prop_assume!(s != "n" && s != "list");
            let mut w = JsonWriter::new();
            w.begin_object();
            w.member_str(&s, &s);
            w.member_int("n", n);
            w.key("list");
            w.begin_array();
            w.string(&s);
            w.string("x");
            w.end_array();
            w.end_object();
            let text = w.finish();
            let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| TestCaseError::fail(format!("{e}: {text}")))?;
            prop_assert_eq!(&value[&s], &serde_json::Value::String(s.clone()));
            prop_assert_eq!(&value["n"], &serde_json::json!(n));
            prop_assert_eq!(&value["list"], &serde_json::json!([s, "x"]));
        }
    }
}

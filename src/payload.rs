//! Typed request payloads: decoding with errors that name the field, and
//! the checks every client-supplied text and JSON value passes before it is
//! stored or relayed: no NUL in text (PostgreSQL cannot store it in a text
//! column, so it is refused on every database alike), JSON nested at most
//! [`MAX_JSON_DEPTH`] deep (deeper breaks `JSON.stringify`,
//! `structuredClone` and serde_json readers) and, in JSON kept as the client
//! sent it, no lone UTF-16 surrogates (`"\ud800"`: not Unicode text).

use serde::de::{self, DeserializeOwned, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;

/// A request refused for what it holds; the message names the field.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Invalid {
    /// Malformed: a wrong type, a missing or unknown field, a bad value.
    #[error("{0}")]
    Malformed(String),
    /// Over a size bound.
    #[error("{0}")]
    TooLarge(String),
}

/// The deepest nesting of arrays and objects accepted in client JSON: each
/// array or object is one level (`{}` is 1, `{"a": [1]}` is 2).
pub const MAX_JSON_DEPTH: usize = 64;

/// Decodes `value` into `T`. The error names the offending field
/// (`after_seq: invalid type: string "x", expected i64`).
pub fn parse<T: DeserializeOwned>(value: Value) -> Result<T, Invalid> {
    serde_path_to_error::deserialize(value).map_err(invalid)
}

/// Decodes JSON text, kept as the client sent it, into `T`; the error
/// names the field, as [`parse`]'s does.
pub fn parse_raw<T: DeserializeOwned>(raw: &RawValue) -> Result<T, Invalid> {
    let mut json = serde_json::Deserializer::from_str(raw.get());
    serde_path_to_error::deserialize(&mut json).map_err(invalid)
}

fn invalid(error: serde_path_to_error::Error<serde_json::Error>) -> Invalid {
    let path = error.path().to_string();
    let inner = error.into_inner();
    if path == "." {
        Invalid::Malformed(inner.to_string())
    } else {
        Invalid::Malformed(format!("{path}: {inner}"))
    }
}

/// `limit` within `1..=max`, `default` when absent.
pub fn limit(limit: Option<u64>, default: u64, max: u64) -> Result<u64, Invalid> {
    match limit {
        None => Ok(default),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(n) => Err(Invalid::Malformed(format!(
            "limit: {n} is not between 1 and {max}"
        ))),
    }
}

/// Refuses text that PostgreSQL cannot store (`field` names it).
pub fn check_text(field: &str, text: &str) -> Result<(), Invalid> {
    if text.contains('\0') {
        return Err(Invalid::Malformed(format!(
            "{field}: must not contain the NUL character (U+0000)"
        )));
    }
    Ok(())
}

/// Refuses a JSON value nested deeper than [`MAX_JSON_DEPTH`].
pub fn check_json(field: &str, value: &Value) -> Result<(), Invalid> {
    // Iterative: a value that is deep must not make this deep.
    let mut stack = vec![(value, 1usize)];
    while let Some((value, depth)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match value {
            Value::Array(items) => Box::new(items.iter()),
            Value::Object(map) => Box::new(map.values()),
            _ => continue,
        };
        if depth > MAX_JSON_DEPTH {
            return Err(too_deep(field));
        }
        stack.extend(children.map(|child| (child, depth + 1)));
    }
    Ok(())
}

/// Refuses JSON text, kept as the client sent it, that is nested deeper
/// than [`MAX_JSON_DEPTH`] or holds a string that is not Unicode text (a
/// lone surrogate escape).
pub fn check_raw_json(field: &str, raw: &RawValue) -> Result<(), Invalid> {
    let mut deserializer = serde_json::Deserializer::from_str(raw.get());
    Nested {
        left: MAX_JSON_DEPTH,
    }
    .deserialize(&mut deserializer)
    .map_err(|error| {
        if error.to_string().starts_with(TOO_DEEP) {
            too_deep(field)
        } else {
            Invalid::Malformed(format!("{field}: {error}"))
        }
    })
}

const TOO_DEEP: &str = "nested too deep";

fn too_deep(field: &str) -> Invalid {
    Invalid::Malformed(format!(
        "{field}: arrays and objects nested more than {MAX_JSON_DEPTH} deep"
    ))
}

/// Walks a JSON value, decoding every string, with `left` more levels of
/// arrays and objects allowed.
struct Nested {
    left: usize,
}

impl Nested {
    /// The seed for what a container holds; an error when this value may
    /// not be a container.
    fn inner<E: de::Error>(&self) -> Result<Self, E> {
        match self.left.checked_sub(1) {
            Some(left) => Ok(Self { left }),
            None => Err(E::custom(TOO_DEEP)),
        }
    }
}

impl<'de> DeserializeSeed<'de> for Nested {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Nested {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JSON")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let inner = self.inner::<A::Error>()?;
        while seq
            .next_element_seed(Nested { left: inner.left })?
            .is_some()
        {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let inner = self.inner::<A::Error>()?;
        // Keys are decoded too (`String`), so a lone surrogate in one fails.
        while map.next_key::<String>()?.is_some() {
            map.next_value_seed(Nested { left: inner.left })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    fn nested(depth: usize) -> String {
        format!("{}{}", "[".repeat(depth), "]".repeat(depth))
    }

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_owned()).unwrap()
    }

    #[test]
    fn json_deeper_than_the_limit_is_refused() {
        let ok: Value = serde_json::from_str(&nested(MAX_JSON_DEPTH)).unwrap();
        check_json("data", &ok).unwrap();
        check_raw_json("data", &raw(&nested(MAX_JSON_DEPTH))).unwrap();
        let deep: Value = serde_json::from_str(&nested(MAX_JSON_DEPTH + 1)).unwrap();
        let err = check_json("data", &deep).unwrap_err().to_string();
        assert!(err.starts_with("data: ") && err.contains("64"), "{err}");
        let err = check_raw_json("data", &raw(&nested(MAX_JSON_DEPTH + 1)))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("data: ") && err.contains("64"), "{err}");
        let objects = format!("{}1{}", r#"{"a":"#.repeat(65), "}".repeat(65));
        assert!(check_raw_json("data", &raw(&objects)).is_err());
    }

    #[test]
    fn very_deep_json_is_refused_without_recursing() {
        // Built without serde_json, which stops at 128 levels.
        let mut value = Value::Null;
        for _ in 0..100_000 {
            value = Value::Array(vec![value]);
        }
        assert!(check_json("x", &value).is_err());
        // Dropping it recursively would overflow the test's stack.
        std::mem::forget(value);
        let err = check_raw_json("x", &raw(&nested(100_000))).unwrap_err();
        assert!(err.to_string().contains("64"), "{err}");
    }

    #[test]
    fn lone_surrogates_are_refused_in_raw_json() {
        check_raw_json("data", &raw(r#"{"emoji":"\ud83d\ude00"}"#)).unwrap();
        for text in [r#""\ud800""#, r#"{"a":["x\udc00"]}"#, r#"{"\ud800":1}"#] {
            let err = check_raw_json("data", &raw(text)).unwrap_err().to_string();
            assert!(err.starts_with("data: "), "{text}: {err}");
        }
    }

    #[test]
    fn nul_is_refused_in_text() {
        check_text("title", "plain").unwrap();
        let err = check_text("title", "a\0b").unwrap_err().to_string();
        assert!(err.starts_with("title: "), "{err}");
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Example {
        session_id: String,
        after_seq: Option<i64>,
    }

    #[test]
    fn errors_name_the_field() {
        let err = parse::<Example>(json!({ "session_id": "s", "after_seq": "x" })).unwrap_err();
        assert!(err.to_string().starts_with("after_seq: "), "{err}");
        let err = parse::<Example>(json!({ "after_seq": 1 })).unwrap_err();
        assert!(err.to_string().contains("session_id"), "{err}");
        let err = parse::<Example>(json!({ "session_id": "s", "extra": 1 })).unwrap_err();
        assert!(err.to_string().contains("extra"), "{err}");
    }
}

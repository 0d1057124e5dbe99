//! Typed request payloads: decoding with errors that name the field.

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::ApiError;

/// Decodes `value` into `T`. The error names the offending field
/// (`after_seq: invalid type: string "x", expected i64`).
pub fn parse<T: DeserializeOwned>(value: Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        if path == "." {
            ApiError::InvalidPayload(inner.to_string())
        } else {
            ApiError::InvalidPayload(format!("{path}: {inner}"))
        }
    })
}

/// `limit` within `1..=max`, `default` when absent.
pub fn limit(limit: Option<u64>, default: u64, max: u64) -> Result<u64, ApiError> {
    match limit {
        None => Ok(default),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::InvalidPayload(format!(
            "limit: {n} is not between 1 and {max}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

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

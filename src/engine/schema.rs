//! The JSON Schemas of registered tools' arguments: what a gateway may
//! register, how it is kept, and how arguments are checked against it.
//!
//! - **Bounded.** A tool's `parameters` are at most [`MAX_PARAMETERS_BYTES`]
//!   of JSON nested at most [`MAX_JSON_DEPTH`] deep, with at most
//!   [`MAX_SCHEMA_OBJECTS`] objects and [`MAX_PATTERNS`] regular expressions
//!   (`pattern` values and `patternProperties` keys) of at most
//!   [`MAX_PATTERN_CHARS`] characters; a whole registration holds at most
//!   [`MAX_REGISTRATION_OBJECTS`] objects and [`MAX_REGISTRATION_PATTERNS`]
//!   patterns. Regular expressions compile with size limits, and the
//!   backtracking engine (only used for lookaround and backreferences) with
//!   a backtrack limit, so no pattern costs unbounded memory or time.
//! - **Compact.** A schema is kept as its JSON text: a compiled validator
//!   or a `serde_json::Value` tree costs 10 to 20 times the text. A
//!   validator is compiled when it is needed — once to admit the schema,
//!   then for each check of a call's arguments — and dropped after use.
//! - **Blocking.** Everything here is CPU work to run on a blocking thread
//!   ([`super::compile`]), never on an async worker.
//!
//! [`MAX_JSON_DEPTH`]: crate::payload::MAX_JSON_DEPTH

use serde_json::Value;
use serde_json::value::RawValue;

use super::EngineError;
use crate::payload;
use crate::payload::Invalid;

/// Longest `parameters` of one tool, in bytes of JSON.
pub const MAX_PARAMETERS_BYTES: usize = 64 * 1024;
/// JSON objects (schemas, `properties` maps, …) in one tool's `parameters`.
pub const MAX_SCHEMA_OBJECTS: usize = 2_048;
/// JSON objects in the `parameters` of all tools of one registration.
pub const MAX_REGISTRATION_OBJECTS: usize = 16_384;
/// Regular expressions in one tool's `parameters`.
pub const MAX_PATTERNS: usize = 32;
/// Regular expressions in all tools of one registration.
pub const MAX_REGISTRATION_PATTERNS: usize = 256;
/// Longest regular expression, in characters.
pub const MAX_PATTERN_CHARS: usize = 1_000;
/// The most memory one compiled regular expression may take (the `regex`
/// crate's compiled program size), and its lazy DFA cache.
const REGEX_SIZE_LIMIT: usize = 1024 * 1024;
const REGEX_DFA_SIZE_LIMIT: usize = 1024 * 1024;
/// Steps the backtracking engine may take matching one string.
const REGEX_BACKTRACK_LIMIT: usize = 1_000_000;

/// What the tools of one registration have used of its limits so far.
#[derive(Debug, Default)]
pub struct Budget {
    objects: usize,
    patterns: usize,
}

/// Checks the `parameters` of the tool at `field` (`tools[3]`) against the
/// limits, the JSON Schema meta-schema and the compiler; returns them as
/// compact JSON text. Blocking: it compiles the schema.
pub fn admit(
    field: &str,
    raw: &RawValue,
    budget: &mut Budget,
) -> Result<Box<RawValue>, EngineError> {
    let field = format!("{field}.parameters");
    if raw.get().len() > MAX_PARAMETERS_BYTES {
        return Err(Invalid::TooLarge(format!(
            "{field}: {} bytes of JSON is more than the {MAX_PARAMETERS_BYTES} one tool's \
             schema may have",
            raw.get().len()
        ))
        .into());
    }
    payload::check_raw_json(&field, raw)?;
    let schema: Value = serde_json::from_str(raw.get())
        .map_err(|error| Invalid::Malformed(format!("{field}: {error}")))?;
    if !schema.is_object() {
        return Err(Invalid::Malformed(format!(
            "{field}: must be a JSON Schema object (`{{\"type\": \"object\", …}}`)"
        ))
        .into());
    }
    measure(&field, &schema, budget)?;
    if let Err(error) = jsonschema::meta::validate(&schema) {
        return Err(Invalid::Malformed(format!(
            "{field}: not a valid JSON Schema: {error} (at {})",
            pointer_or_root(&error.instance_path().to_string())
        ))
        .into());
    }
    compile(&schema).map_err(|error| {
        let at = error.instance_path().to_string();
        let hint = if at.ends_with("/pattern") || at.contains("/patternProperties/") {
            format!(
                " (a regular expression must be valid and compile to at most {} MiB)",
                REGEX_SIZE_LIMIT >> 20
            )
        } else {
            String::new()
        };
        Invalid::Malformed(format!(
            "{field}: cannot be used as a JSON Schema: {error} (at {}){hint}",
            pointer_or_root(&at)
        ))
    })?;
    serde_json::value::to_raw_value(&schema).map_err(EngineError::Schema)
}

/// Checks a call's `arguments` against an admitted schema; the error names
/// where they are wrong, for the model to correct. Blocking: it compiles
/// the schema.
pub fn check(schema: &RawValue, arguments: &Value) -> Result<(), String> {
    let validator = serde_json::from_str::<Value>(schema.get())
        .ok()
        .and_then(|schema| compile(&schema).ok())
        .ok_or_else(|| "the tool's schema cannot be used any more".to_owned())?;
    let errors: Vec<String> = validator
        .iter_errors(arguments)
        .take(5)
        .map(|error| {
            format!(
                "{}: {error}",
                pointer_or_root(&error.instance_path().to_string())
            )
        })
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

/// A validator with bounded regular expressions.
fn compile(schema: &Value) -> Result<jsonschema::Validator, jsonschema::ValidationError<'_>> {
    jsonschema::options()
        .with_pattern_options(
            jsonschema::PatternOptions::fancy_regex()
                .size_limit(REGEX_SIZE_LIMIT)
                .dfa_size_limit(REGEX_DFA_SIZE_LIMIT)
                .backtrack_limit(REGEX_BACKTRACK_LIMIT),
        )
        .build(schema)
}

/// Counts the objects and regular expressions of `schema` (every object,
/// whichever keyword holds it: an over-count is the safe side) and checks
/// them and the patterns' lengths against the limits.
fn measure(field: &str, schema: &Value, budget: &mut Budget) -> Result<(), Invalid> {
    let mut objects = 0;
    let mut patterns = 0;
    // Iterative, with each container's JSON pointer for the messages.
    let mut stack = vec![(schema, String::new())];
    while let Some((value, at)) = stack.pop() {
        let children: Vec<(String, &Value)> = match value {
            Value::Object(map) => {
                objects += 1;
                if let Some(Value::String(pattern)) = map.get("pattern") {
                    patterns += 1;
                    check_pattern(field, &format!("{at}/pattern"), pattern)?;
                }
                if let Some(Value::Object(by_pattern)) = map.get("patternProperties") {
                    patterns += by_pattern.len();
                    for pattern in by_pattern.keys() {
                        let at = format!("{at}/patternProperties/{}", escape(pattern));
                        check_pattern(field, &at, pattern)?;
                    }
                }
                map.iter().map(|(k, v)| (escape(k), v)).collect()
            }
            Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, v)| (i.to_string(), v))
                .collect(),
            _ => continue,
        };
        for (key, child) in children {
            if child.is_object() || child.is_array() {
                stack.push((child, format!("{at}/{key}")));
            }
        }
    }
    if objects > MAX_SCHEMA_OBJECTS {
        return Err(Invalid::TooLarge(format!(
            "{field}: {objects} JSON objects is more than the {MAX_SCHEMA_OBJECTS} one tool's \
             schema may have"
        )));
    }
    if patterns > MAX_PATTERNS {
        return Err(Invalid::TooLarge(format!(
            "{field}: {patterns} regular expressions (`pattern`, `patternProperties`) is more \
             than the {MAX_PATTERNS} one tool's schema may have"
        )));
    }
    budget.objects += objects;
    budget.patterns += patterns;
    if budget.objects > MAX_REGISTRATION_OBJECTS {
        return Err(Invalid::TooLarge(format!(
            "tools: the schemas up to {field} hold {} JSON objects, more than the \
             {MAX_REGISTRATION_OBJECTS} one registration may have; register fewer or simpler \
             tools",
            budget.objects
        )));
    }
    if budget.patterns > MAX_REGISTRATION_PATTERNS {
        return Err(Invalid::TooLarge(format!(
            "tools: the schemas up to {field} hold {} regular expressions, more than the \
             {MAX_REGISTRATION_PATTERNS} one registration may have; register fewer tools with \
             patterns",
            budget.patterns
        )));
    }
    Ok(())
}

fn check_pattern(field: &str, at: &str, pattern: &str) -> Result<(), Invalid> {
    let chars = pattern.chars().count();
    if chars > MAX_PATTERN_CHARS {
        return Err(Invalid::TooLarge(format!(
            "{field}: the regular expression at {at} is {chars} characters, more than the \
             {MAX_PATTERN_CHARS} allowed"
        )));
    }
    Ok(())
}

/// A JSON pointer's reference token (RFC 6901).
fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

fn pointer_or_root(pointer: &str) -> &str {
    if pointer.is_empty() { "/" } else { pointer }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn raw(value: &Value) -> Box<RawValue> {
        serde_json::value::to_raw_value(value).unwrap()
    }

    fn admit_one(schema: &Value) -> Result<Box<RawValue>, EngineError> {
        admit("tools[0]", &raw(schema), &mut Budget::default())
    }

    fn with_patterns(count: usize) -> Value {
        let properties: serde_json::Map<String, Value> = (0..count)
            .map(|i| {
                (
                    format!("f{i}"),
                    json!({ "type": "string", "pattern": format!("^a{i}$") }),
                )
            })
            .collect();
        json!({ "type": "object", "properties": properties })
    }

    #[test]
    fn an_ordinary_schema_is_admitted_and_checks_arguments() {
        let schema = json!({
            "type": "object",
            "properties": {
                "path": { "type": "string", "pattern": "^[^\\u0000]+$" },
                "mode": { "enum": ["r", "w"] }
            },
            "required": ["path"],
            "additionalProperties": false
        });
        let kept = admit_one(&schema).unwrap();
        assert_eq!(serde_json::from_str::<Value>(kept.get()).unwrap(), schema);
        check(&kept, &json!({ "path": "a" })).unwrap();
        let why = check(&kept, &json!({ "path": 5, "extra": 1 })).unwrap_err();
        assert!(why.contains("/path"), "{why}");
    }

    #[test]
    fn kept_schemas_are_compact_text() {
        let spaced = RawValue::from_string("{ \"type\" :  \"object\" }".into()).unwrap();
        let kept = admit("tools[0]", &spaced, &mut Budget::default()).unwrap();
        assert_eq!(kept.get(), r#"{"type":"object"}"#);
    }

    #[test]
    fn too_many_or_too_long_patterns_are_refused_naming_the_field() {
        admit_one(&with_patterns(MAX_PATTERNS)).unwrap();
        let err = admit_one(&with_patterns(MAX_PATTERNS + 1)).unwrap_err();
        assert!(
            matches!(err, EngineError::Invalid(Invalid::TooLarge(_))),
            "{err}"
        );
        assert!(
            err.to_string().starts_with("tools[0].parameters: "),
            "{err}"
        );

        let long = "a".repeat(MAX_PATTERN_CHARS + 1);
        let schema = json!({ "properties": { "x": { "pattern": long } } });
        let err = admit_one(&schema).unwrap_err().to_string();
        assert!(err.contains("/properties/x/pattern"), "{err}");
        let schema = json!({ "patternProperties": { long.clone(): {} } });
        let err = admit_one(&schema).unwrap_err().to_string();
        assert!(err.contains("/patternProperties/"), "{err}");
    }

    #[test]
    fn a_registration_has_one_budget_of_patterns_and_objects() {
        let mut budget = Budget::default();
        let schema = raw(&with_patterns(MAX_PATTERNS));
        let per_registration = MAX_REGISTRATION_PATTERNS / MAX_PATTERNS;
        for i in 0..per_registration {
            admit(&format!("tools[{i}]"), &schema, &mut budget).unwrap();
        }
        let err = admit("tools[8]", &schema, &mut budget)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("tools: ") && err.contains("tools[8]"),
            "{err}"
        );

        let many: Vec<Value> = (0..MAX_SCHEMA_OBJECTS).map(|_| json!({})).collect();
        let err = admit_one(&json!({ "allOf": many }))
            .unwrap_err()
            .to_string();
        assert!(err.contains("JSON objects"), "{err}");
    }

    #[test]
    fn big_and_deep_schemas_are_refused() {
        let big = json!({ "description": "x".repeat(MAX_PARAMETERS_BYTES) });
        assert!(matches!(
            admit_one(&big),
            Err(EngineError::Invalid(Invalid::TooLarge(_)))
        ));
        let deep = format!("{}{{}}{}", r#"{"not":"#.repeat(70), "}".repeat(70));
        let deep = RawValue::from_string(deep).unwrap();
        let err = admit("tools[0]", &deep, &mut Budget::default()).unwrap_err();
        assert!(err.to_string().contains("64"), "{err}");
    }

    #[test]
    fn regexes_that_would_compile_too_big_are_refused() {
        // Unicode classes repeated: about 16 MiB of compiled program.
        let schema = json!({ "type": "string", "pattern": "^[\\p{L}\\p{N} ]{1,200}$" });
        let err = admit_one(&schema).unwrap_err();
        assert!(
            matches!(err, EngineError::Invalid(Invalid::Malformed(_))),
            "{err}"
        );
        assert!(err.to_string().contains("/pattern"), "{err}");
    }

    #[test]
    fn schemas_that_reach_outside_are_refused_without_panicking() {
        for schema in [
            json!({ "$ref": "https://example.com/schema.json" }),
            json!({ "$ref": "file:///etc/passwd" }),
            json!({ "$ref": "#/$defs/missing" }),
            json!({ "$schema": "https://example.com/my-meta-schema" }),
        ] {
            assert!(admit_one(&schema).is_err(), "{schema}");
        }
    }

    #[test]
    fn the_deepest_schema_allowed_compiles_on_a_blocking_threads_stack() {
        let deep = format!(
            "{}{}",
            r#"{"not":"#.repeat(payload::MAX_JSON_DEPTH - 1),
            "{}".to_owned() + &"}".repeat(payload::MAX_JSON_DEPTH - 1)
        );
        let deep = RawValue::from_string(deep).unwrap();
        // Tokio's blocking threads have 2 MiB stacks.
        std::thread::Builder::new()
            .stack_size(2 * 1024 * 1024)
            .spawn(move || {
                let kept = admit("tools[0]", &deep, &mut Budget::default()).unwrap();
                check(&kept, &json!({})).unwrap_err();
            })
            .unwrap()
            .join()
            .unwrap();
    }
}

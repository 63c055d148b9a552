//! Tool arguments every model and client can send, one mechanism for every
//! tool, driven by the tool's own input schema:
//!
//! - [`portable_schema`] rewrites a derived input schema so that each
//!   parameter has one JSON type: no `"type": ["integer", "null"]`, no
//!   `anyOf` with a null branch, no `$ref`. Some clients (LangChain's Gemini
//!   adapter, the Inspector's portability check) cannot use those forms.
//! - [`normalize`] checks and repairs the arguments of a call before they
//!   reach the tool: `null` means absent, a number or boolean sent as a
//!   string (`"5000"`, `"true"`) is converted where it parses unambiguously,
//!   and anything else that does not fit is refused with a message naming
//!   the parameter, the JSON type expected and the value received. Unknown
//!   arguments are named back with the list of valid ones.
//!
//! A tool gets both by being listed by [`super::Tools`]; nothing per tool.

use std::fmt::Write as _;

use rmcp::model::JsonObject;
use serde_json::{Map, Value};

/// Rewrites an input schema so that every parameter has a single JSON type
/// and no reference: `$ref`s to `$defs` are inlined, `null` is dropped from
/// `type` arrays and `anyOf`/`oneOf` branches, a `default` of `null` is
/// dropped. Optional parameters are those not listed in `required`.
pub fn portable_schema(schema: &JsonObject) -> JsonObject {
    let defs = schema.get("$defs").and_then(Value::as_object).cloned();
    let mut out = schema.clone();
    out.remove("$defs");
    out.remove("$schema");
    simplify(&mut out, defs.as_ref(), 0);
    out
}

/// Depth past which `$ref`s are left alone (a recursive type).
const MAX_INLINE_DEPTH: usize = 8;

fn simplify(schema: &mut JsonObject, defs: Option<&Map<String, Value>>, depth: usize) {
    // A null branch dropped may leave one branch that is a reference, and
    // a reference inlined may hold null branches: repeat until neither.
    for _ in 0..MAX_INLINE_DEPTH {
        if !(drop_null_branches(schema) | inline_reference(schema, defs, depth)) {
            break;
        }
    }
    if let Some(Value::Array(types)) = schema.get_mut("type") {
        types.retain(|t| t != "null");
        if types.len() == 1 {
            let only = types.remove(0);
            schema.insert("type".to_owned(), only);
        }
    }
    if schema.get("default") == Some(&Value::Null) {
        schema.remove("default");
    }
    schema.remove("nullable");
    // Integers carry no `format`: schemars' `uint`, `int64`… are not JSON
    // Schema formats, and validators such as Claude Code's warn on them.
    if schema.get("type").and_then(Value::as_str) == Some("integer") {
        schema.remove("format");
    }
    for value in schema.values_mut() {
        match value {
            Value::Object(inner) => simplify(inner, defs, depth + 1),
            Value::Array(items) => items
                .iter_mut()
                .filter_map(Value::as_object_mut)
                .for_each(|inner| simplify(inner, defs, depth + 1)),
            _ => {}
        }
    }
}

/// Inlines a `$ref` to `#/$defs/…`; the use site's own keys (description,
/// default) win. Returns whether it did.
fn inline_reference(
    schema: &mut JsonObject,
    defs: Option<&Map<String, Value>>,
    depth: usize,
) -> bool {
    let Some(Value::String(reference)) = schema.get("$ref") else {
        return false;
    };
    let Some(target) = reference
        .strip_prefix("#/$defs/")
        .and_then(|name| defs?.get(name))
        .and_then(Value::as_object)
        .filter(|_| depth < MAX_INLINE_DEPTH)
    else {
        return false;
    };
    let target = target.clone();
    schema.remove("$ref");
    for (key, value) in target {
        schema.entry(key).or_insert(value);
    }
    true
}

/// Drops `null` branches of `anyOf`/`oneOf`; a single branch left is merged
/// into the schema. Returns whether anything changed.
fn drop_null_branches(schema: &mut JsonObject) -> bool {
    let mut changed = false;
    for key in ["anyOf", "oneOf"] {
        let Some(Value::Array(branches)) = schema.get_mut(key) else {
            continue;
        };
        let before = branches.len();
        branches.retain(|b| !is_null_schema(b));
        changed |= branches.len() != before;
        if branches.len() == 1 {
            let Some(Value::Object(only)) = schema
                .remove(key)
                .and_then(|mut b| b.as_array_mut().and_then(Vec::pop))
            else {
                continue;
            };
            for (k, v) in only {
                schema.entry(k).or_insert(v);
            }
            changed = true;
        }
    }
    changed
}

fn is_null_schema(schema: &Value) -> bool {
    schema.get("type").and_then(Value::as_str) == Some("null")
        || schema.get("const") == Some(&Value::Null)
}

/// Arguments that do not fit a tool's input schema, with every fault found
/// (not only the first), worded for a model to fix its next call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render())]
pub struct ArgumentError {
    pub tool: String,
    pub faults: Vec<String>,
}

impl ArgumentError {
    fn render(&self) -> String {
        let mut text = format!("invalid arguments for {}:", self.tool);
        for fault in &self.faults {
            let _ = write!(text, "\n- {fault}");
        }
        text
    }
}

/// Checks `arguments` against the object schema `schema` (as made by
/// [`portable_schema`]) and returns them repaired: `null` members removed,
/// numbers and booleans sent as strings converted, JSON text sent for an
/// object or array parameter parsed.
///
/// # Errors
/// An [`ArgumentError`] listing each unknown argument (with the valid
/// ones), each missing required one, and each value of the wrong type (with
/// the type expected and the value received).
pub fn normalize(
    tool: &str,
    schema: &JsonObject,
    arguments: Option<JsonObject>,
) -> Result<JsonObject, ArgumentError> {
    let mut faults = Vec::new();
    let repaired = normalize_object(schema, arguments.unwrap_or_default(), "", &mut faults);
    if faults.is_empty() {
        Ok(repaired)
    } else {
        Err(ArgumentError {
            tool: tool.to_owned(),
            faults,
        })
    }
}

fn normalize_object(
    schema: &JsonObject,
    object: JsonObject,
    prefix: &str,
    faults: &mut Vec<String>,
) -> JsonObject {
    let empty = Map::new();
    let properties = schema
        .get("properties")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    // A tool's own arguments are a closed set unless its schema says
    // otherwise; a map such as `env` is open, `additionalProperties`
    // typing its members.
    let open = match schema.get("additionalProperties") {
        Some(Value::Bool(allowed)) => *allowed,
        Some(_) => true,
        None => !prefix.is_empty() && !schema.contains_key("properties"),
    };
    let extra = schema
        .get("additionalProperties")
        .and_then(Value::as_object);
    let mut out = Map::new();
    let mut unknown = Vec::new();
    for (name, value) in object {
        let shown = format!("{prefix}{name}");
        if value.is_null() {
            continue;
        }
        let member_schema = match properties.get(&name).and_then(Value::as_object) {
            Some(s) => Some(s),
            None if open => extra,
            None => {
                unknown.push(name);
                continue;
            }
        };
        let repaired = match member_schema {
            Some(s) => coerce(s, value, &shown, faults),
            None => Some(value),
        };
        if let Some(value) = repaired {
            out.insert(name, value);
        }
    }
    if !unknown.is_empty() {
        let valid: Vec<&str> = properties.keys().map(String::as_str).collect();
        for name in unknown {
            let mut fault = format!("unknown argument `{prefix}{name}`");
            if let Some(close) = closest(&name, &valid) {
                let _ = write!(fault, "; did you mean `{prefix}{close}`?");
            }
            let _ = write!(
                fault,
                " Valid arguments: {}",
                if valid.is_empty() {
                    "none".to_owned()
                } else {
                    valid.join(", ")
                }
            );
            faults.push(fault);
        }
    }
    if let Some(Value::Array(required)) = schema.get("required") {
        for name in required.iter().filter_map(Value::as_str) {
            if !out.contains_key(name) {
                let expected = properties
                    .get(name)
                    .and_then(Value::as_object)
                    .map_or_else(|| "a value".to_owned(), expected);
                faults.push(format!(
                    "missing required argument `{prefix}{name}`: expected {expected}"
                ));
            }
        }
    }
    out
}

/// The value repaired to fit `schema`, or `None` with a fault recorded.
fn coerce(
    schema: &JsonObject,
    value: Value,
    name: &str,
    faults: &mut Vec<String>,
) -> Option<Value> {
    let Some(kind) = schema.get("type").and_then(Value::as_str) else {
        return Some(value);
    };
    let repaired = match (kind, value) {
        ("string", Value::String(s)) => Ok(Value::String(s)),
        ("boolean", Value::Bool(b)) => Ok(Value::Bool(b)),
        ("boolean", Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err(Value::String(s)),
        },
        ("integer", value) => integer(&value).map(Value::from).ok_or(value),
        ("number", Value::Number(n)) => Ok(Value::Number(n)),
        ("number", Value::String(s)) => s
            .trim()
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .ok_or(Value::String(s)),
        ("object", Value::Object(o)) => Ok(Value::Object(o)),
        ("array", Value::Array(a)) => Ok(Value::Array(a)),
        // JSON text for a structured parameter is unambiguous: parse it.
        ("object" | "array", Value::String(s)) => match serde_json::from_str::<Value>(&s) {
            Ok(v @ Value::Object(_)) if kind == "object" => Ok(v),
            Ok(v @ Value::Array(_)) if kind == "array" => Ok(v),
            _ => Err(Value::String(s)),
        },
        (_, value) => Err(value),
    };
    let value = match repaired {
        Ok(v) => v,
        Err(received) => {
            faults.push(format!(
                "`{name}` must be {}; received {}",
                expected(schema),
                describe(&received)
            ));
            return None;
        }
    };
    // Bounds and enumerations the schema states.
    let out_of_range = match &value {
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or(0.0);
            let below = schema
                .get("minimum")
                .and_then(Value::as_f64)
                .is_some_and(|m| x < m);
            let above = schema
                .get("maximum")
                .and_then(Value::as_f64)
                .is_some_and(|m| x > m);
            below || above
        }
        Value::String(_) => schema
            .get("enum")
            .and_then(Value::as_array)
            .is_some_and(|options| !options.contains(&value)),
        _ => false,
    };
    if out_of_range {
        faults.push(format!(
            "`{name}` must be {}; received {}",
            expected(schema),
            describe(&value)
        ));
        return None;
    }
    match value {
        Value::Object(o)
            if schema.contains_key("properties") || schema.contains_key("additionalProperties") =>
        {
            Some(Value::Object(normalize_object(
                schema,
                o,
                &format!("{name}."),
                faults,
            )))
        }
        Value::Array(items) => {
            let Some(item_schema) = schema.get("items").and_then(Value::as_object) else {
                return Some(Value::Array(items));
            };
            let before = faults.len();
            let items: Vec<Value> = items
                .into_iter()
                .enumerate()
                .filter_map(|(i, item)| coerce(item_schema, item, &format!("{name}[{i}]"), faults))
                .collect();
            (faults.len() == before).then_some(Value::Array(items))
        }
        other => Some(other),
    }
}

/// A whole number from a JSON number (`5`, `5.0`) or a string (`"5"`).
fn integer(value: &Value) -> Option<serde_json::Number> {
    match value {
        Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.clone()),
        Value::Number(n) => {
            let x = n.as_f64()?;
            (x.fract() == 0.0 && x.abs() < 9.0e15).then(|| serde_json::Number::from(x as i64))
        }
        Value::String(s) => {
            let s = s.trim();
            s.parse::<u64>()
                .map(serde_json::Number::from)
                .or_else(|_| s.parse::<i64>().map(serde_json::Number::from))
                .ok()
        }
        _ => None,
    }
}

/// What a schema asks for, in words: "an integer ≥ 1", "a boolean (true or
/// false)", "one of \"content\", \"count\"".
fn expected(schema: &JsonObject) -> String {
    if let Some(options) = schema.get("enum").and_then(Value::as_array) {
        let options: Vec<String> = options.iter().map(Value::to_string).collect();
        return format!("one of {}", options.join(", "));
    }
    let kind = schema
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("a value");
    let mut text = match kind {
        "integer" => "an integer".to_owned(),
        "number" => "a number".to_owned(),
        "boolean" => "a boolean (true or false)".to_owned(),
        "string" => "a string".to_owned(),
        "array" => "an array".to_owned(),
        "object" => "an object".to_owned(),
        other => other.to_owned(),
    };
    if kind == "object"
        && let Some(values) = schema
            .get("additionalProperties")
            .and_then(Value::as_object)
        && let Some(inner) = values.get("type").and_then(Value::as_str)
    {
        let _ = write!(text, " of {inner} values");
    }
    let min = schema.get("minimum").and_then(Value::as_f64);
    let max = schema.get("maximum").and_then(Value::as_f64);
    match (min, max) {
        (Some(min), Some(max)) => {
            let _ = write!(text, " from {min} to {max}");
        }
        (Some(min), None) => {
            let _ = write!(text, " ≥ {min}");
        }
        (None, Some(max)) => {
            let _ = write!(text, " ≤ {max}");
        }
        (None, None) => {}
    }
    text
}

/// A received value, in words: `the string "maybe"`, `the number -1`.
fn describe(value: &Value) -> String {
    const MAX: usize = 60;
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) if s.chars().count() > MAX => {
            let head: String = s.chars().take(MAX).collect();
            format!("the string {head:?}… ({} characters)", s.chars().count())
        }
        Value::String(s) => format!("the string {s:?}"),
        Value::Array(a) => format!("an array of {} items", a.len()),
        Value::Object(_) => "an object".to_owned(),
    }
}

/// The valid name a mistyped one most likely meant: one that contains it or
/// is contained in it (`timeout` → `timeout_ms`), else one a couple of
/// edits away.
fn closest<'a>(name: &str, valid: &[&'a str]) -> Option<&'a str> {
    let lower = name.to_ascii_lowercase();
    if let Some(hit) = valid.iter().find(|v| {
        v.eq_ignore_ascii_case(&lower)
            || v.contains(lower.as_str())
            || (lower.len() >= 3 && lower.contains(*v))
    }) {
        return Some(hit);
    }
    valid
        .iter()
        .map(|v| (edit_distance(&lower, v), *v))
        .filter(|(d, v)| *d <= 2.max(v.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, v)| v)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn obj(v: Value) -> JsonObject {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn nullable_types_and_refs_become_single_types() {
        let schema = obj(json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": {
                "limit": {"type": ["integer", "null"], "format": "uint", "minimum": 0},
                "mode": {"$ref": "#/$defs/Mode", "default": "a", "description": "how"},
                "maybe": {"anyOf": [{"$ref": "#/$defs/Mode"}, {"type": "null"}], "default": null}
            },
            "$defs": {"Mode": {"type": "string", "enum": ["a", "b"]}}
        }));
        let out = Value::Object(portable_schema(&schema));
        assert_eq!(
            out,
            json!({
                "type": "object",
                "properties": {
                    "limit": {"type": "integer", "minimum": 0},
                    "mode": {"type": "string", "enum": ["a", "b"], "default": "a", "description": "how"},
                    "maybe": {"type": "string", "enum": ["a", "b"]}
                }
            })
        );
    }

    fn schema() -> JsonObject {
        obj(json!({
            "type": "object",
            "properties": {
                "path": {"type": "string"},
                "limit": {"type": "integer", "minimum": 0},
                "hidden": {"type": "boolean"},
                "mode": {"type": "string", "enum": ["content", "count"]},
                "env": {"type": "object", "additionalProperties": {"type": "string"}}
            },
            "required": ["path"]
        }))
    }

    #[test]
    fn null_is_absent_and_strings_of_numbers_and_booleans_are_converted() {
        let args = obj(
            json!({"path": "a", "limit": "5000", "hidden": "true", "mode": null,
            "env": "{\"PORT\": \"8080\"}"}),
        );
        let out = normalize("t", &schema(), Some(args)).unwrap();
        assert_eq!(
            Value::Object(out),
            json!({"path": "a", "limit": 5000, "hidden": true, "env": {"PORT": "8080"}})
        );
    }

    #[test]
    fn faults_name_the_parameter_the_type_and_the_value() {
        let args = obj(json!({"limit": -1, "hidden": "maybe", "mode": "lines", "timeout": 5}));
        let err = normalize("t", &schema(), Some(args))
            .unwrap_err()
            .to_string();
        for expected in [
            "`limit` must be an integer ≥ 0; received the number -1",
            "`hidden` must be a boolean (true or false); received the string \"maybe\"",
            "`mode` must be one of \"content\", \"count\"; received the string \"lines\"",
            "unknown argument `timeout`",
            "Valid arguments: env, hidden, limit, mode, path",
            "missing required argument `path`: expected a string",
        ] {
            assert!(err.contains(expected), "{expected:?} not in:\n{err}");
        }
    }

    #[test]
    fn a_near_miss_is_named() {
        assert_eq!(
            closest("timeout", &["command", "timeout_ms"]),
            Some("timeout_ms")
        );
        assert_eq!(
            closest("case_insensitiv", &["case_insensitive"]),
            Some("case_insensitive")
        );
        assert_eq!(closest("zzz", &["path", "limit"]), None);
    }
}

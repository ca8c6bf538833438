//! A checker of JSON values against the schemas of `openapi.json`, for the subset the document
//! uses: `$ref`, `type`, `properties`, `required`, `items`, `enum`, `nullable`, `minimum`,
//! `maximum`, `additionalProperties`, `allOf` and `oneOf`. It is stricter than JSON Schema in one way:
//! an object whose schema lists properties may hold only those, unless `additionalProperties`
//! allows more, so that a field the server sends and the document forgets is found.

use serde_json::Value;

/// The document the server serves.
pub fn document() -> Value {
    serde_json::from_str(vigil_web::OPENAPI).expect("openapi.json is JSON")
}

/// What is wrong with `value` against `schema`, each as `place: problem`; empty when it fits.
pub fn check(document: &Value, schema: &Value, value: &Value, place: &str) -> Vec<String> {
    let mut problems = Vec::new();
    check_into(document, schema, value, place, &mut problems);
    problems
}

/// The schema a `$ref` points at (`#/components/schemas/Release`).
pub fn resolve<'document>(
    document: &'document Value,
    schema: &'document Value,
) -> &'document Value {
    let Some(reference) = schema.get("$ref").and_then(Value::as_str) else {
        return schema;
    };
    let pointer = reference
        .strip_prefix('#')
        .unwrap_or_else(|| panic!("only local references are used: {reference}"));
    let target = document
        .pointer(pointer)
        .unwrap_or_else(|| panic!("{reference} points at nothing"));
    resolve(document, target)
}

fn check_into(
    document: &Value,
    schema: &Value,
    value: &Value,
    place: &str,
    problems: &mut Vec<String>,
) {
    let schema = resolve(document, schema);
    if value.is_null() && schema.get("nullable") == Some(&Value::Bool(true)) {
        return;
    }
    if let Some(parts) = schema.get("allOf").and_then(Value::as_array) {
        for part in parts {
            check_into(document, part, value, place, problems);
        }
    }
    if let Some(choices) = schema.get("oneOf").and_then(Value::as_array) {
        check_one_of(document, choices, value, place, problems);
        return;
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
        if !allowed.contains(value) {
            problems.push(format!("{place}: {value} is not one of {allowed:?}"));
        }
    }
    let Some(kind) = schema.get("type").and_then(Value::as_str) else {
        return;
    };
    if !has_type(value, kind) {
        problems.push(format!("{place}: {value} is not of type {kind}"));
        return;
    }
    check_bounds(schema, value, place, problems);
    match value {
        Value::Object(object) => check_object(document, schema, object, place, problems),
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (index, item) in items.iter().enumerate() {
                    check_into(
                        document,
                        item_schema,
                        item,
                        &format!("{place}[{index}]"),
                        problems,
                    );
                }
            }
        }
        _ => {}
    }
}

fn check_one_of(
    document: &Value,
    choices: &[Value],
    value: &Value,
    place: &str,
    problems: &mut Vec<String>,
) {
    let fitting = choices
        .iter()
        .filter(|choice| check(document, choice, value, place).is_empty())
        .count();
    if fitting != 1 {
        problems.push(format!(
            "{place}: {value} fits {fitting} of the {} oneOf schemas, not exactly one",
            choices.len()
        ));
    }
}

fn has_type(value: &Value, kind: &str) -> bool {
    match kind {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "boolean" => value.is_boolean(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        other => panic!("openapi.json uses a type the checker does not know: {other}"),
    }
}

fn check_bounds(schema: &Value, value: &Value, place: &str, problems: &mut Vec<String>) {
    let Some(number) = value.as_f64() else {
        return;
    };
    if let Some(minimum) = schema.get("minimum").and_then(Value::as_f64) {
        if number < minimum {
            problems.push(format!("{place}: {number} is below the minimum {minimum}"));
        }
    }
    if let Some(maximum) = schema.get("maximum").and_then(Value::as_f64) {
        if number > maximum {
            problems.push(format!("{place}: {number} is above the maximum {maximum}"));
        }
    }
}

fn check_object(
    document: &Value,
    schema: &Value,
    object: &serde_json::Map<String, Value>,
    place: &str,
    problems: &mut Vec<String>,
) {
    // An object schema that lists no property leaves its content open.
    let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
        return;
    };
    for required in schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        if !object.contains_key(required) {
            problems.push(format!("{place}: required property {required} is missing"));
        }
    }
    let additional = schema.get("additionalProperties");
    for (key, item) in object {
        let item_place = format!("{place}.{key}");
        match (properties.get(key), additional) {
            (Some(item_schema), _) => {
                check_into(document, item_schema, item, &item_place, problems)
            }
            (None, Some(Value::Bool(true))) => {}
            (None, Some(item_schema @ Value::Object(_))) => {
                check_into(document, item_schema, item, &item_place, problems)
            }
            (None, _) => problems.push(format!("{item_place}: not in the schema")),
        }
    }
}

/// One operation of the document, by method and path template.
pub fn operation<'document>(
    document: &'document Value,
    method: &str,
    template: &str,
) -> &'document Value {
    document["paths"]
        .get(template)
        .and_then(|path| path.get(method.to_lowercase()))
        .unwrap_or_else(|| panic!("openapi.json has no {method} {template}"))
}

/// Every operation of the document as `METHOD template`.
pub fn operations(document: &Value) -> std::collections::BTreeSet<String> {
    let paths = document["paths"].as_object().expect("paths");
    let mut found = std::collections::BTreeSet::new();
    for (template, methods) in paths {
        for method in methods.as_object().expect("methods").keys() {
            if ["get", "put", "post", "delete", "patch"].contains(&method.as_str()) {
                found.insert(format!("{} {template}", method.to_uppercase()));
            }
        }
    }
    found
}

/// The JSON schema of an operation's request body, if it takes JSON.
pub fn request_schema<'document>(
    document: &'document Value,
    operation: &'document Value,
) -> Option<&'document Value> {
    let body = resolve(document, operation.get("requestBody")?);
    body.pointer("/content/application~1json/schema")
}

/// The JSON schema an operation documents for an answer of `status`: `Err` when the status is
/// not documented, `Ok(None)` when the answer is documented without a JSON body.
pub fn response_schema<'document>(
    document: &'document Value,
    operation: &'document Value,
    status: u16,
) -> Result<Option<&'document Value>, String> {
    let responses = &operation["responses"];
    let answer = responses
        .get(status.to_string())
        .or_else(|| responses.get("default"))
        .ok_or_else(|| format!("status {status} is not documented"))?;
    let answer = resolve(document, answer);
    Ok(answer.pointer("/content/application~1json/schema"))
}

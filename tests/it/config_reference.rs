//! `docs/configuration.md` is generated from the CRD (`dynamodb_source_api::crd`, the
//! same definition `dynamodb-source crd` prints): every field path of the schema is
//! documented, and the file is current. `make docs` regenerates it
//! (`DYNAMODB_SOURCE_UPDATE_DOCS=1` makes this test write it instead of comparing).

use std::collections::BTreeSet;

use serde_json::{Map, Value};

const DOC: &str = "docs/configuration.md";

fn schema() -> Value {
    let crd = serde_json::to_value(dynamodb_source_api::crd::definition()).expect("CRD as JSON");
    let versions = crd["spec"]["versions"].as_array().expect("versions");
    assert_eq!(versions.len(), 1, "one version documented");
    versions[0]["schema"]["openAPIV3Schema"].clone()
}

/// Every field path under `root` (`spec.sink.ref.name`, `spec.adapterOverrides.env[].name`,
/// `spec.adapterOverrides.resources.limits.*`), by a plain walk of the schema.
fn field_paths(prefix: &str, schema: &Value, out: &mut BTreeSet<String>) {
    if let Some(properties) = schema["properties"].as_object() {
        for (name, sub) in properties {
            let path = format!("{prefix}.{name}");
            out.insert(path.clone());
            field_paths(&path, sub, out);
        }
    }
    if schema.get("items").is_some() {
        field_paths(&format!("{prefix}[]"), &schema["items"], out);
    }
    if schema["additionalProperties"].is_object() {
        field_paths(&format!("{prefix}.*"), &schema["additionalProperties"], out);
    }
}

fn type_name(schema: &Value) -> String {
    if schema["x-kubernetes-int-or-string"] == true {
        return "integer or string".to_owned();
    }
    match schema["type"].as_str().unwrap_or("") {
        "array" => format!("array of {}", type_name(&schema["items"])),
        "object"
            if schema["additionalProperties"].is_object() && schema.get("properties").is_none() =>
        {
            format!("map of {}", type_name(&schema["additionalProperties"]))
        }
        "object" if schema["x-kubernetes-preserve-unknown-fields"] == true => {
            "object (free-form)".to_owned()
        }
        "" => "any".to_owned(),
        other => match schema["format"].as_str() {
            Some(format) => format!("{other} ({format})"),
            None => other.to_owned(),
        },
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

fn code(text: &str) -> String {
    format!("`{}`", text.replace('|', "\\|"))
}

fn constraints(schema: &Value) -> String {
    let mut parts = Vec::new();
    if let Some(values) = schema["enum"].as_array() {
        let values: Vec<String> = values
            .iter()
            .map(|v| {
                code(
                    v.as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| v.to_string())
                        .as_str(),
                )
            })
            .collect();
        parts.push(format!("one of {}", values.join(", ")));
    }
    if let Some(pattern) = schema["pattern"].as_str() {
        parts.push(format!("matches {}", code(pattern)));
    }
    if let Some(minimum) = schema["minimum"].as_f64() {
        parts.push(format!("at least {minimum}"));
    }
    if let Some(maximum) = schema["maximum"].as_f64() {
        parts.push(format!("at most {maximum}"));
    }
    match schema["minLength"].as_u64() {
        Some(1) => parts.push("not empty".to_owned()),
        Some(min_length) => parts.push(format!("at least {min_length} characters")),
        None => {}
    }
    if let Some(default) = schema.get("default") {
        parts.push(format!("default {}", code(&default.to_string())));
    }
    for rule in schema["x-kubernetes-validations"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if let Some(message) = rule["message"].as_str() {
            parts.push(format!("rule: {}", one_line(message)));
        }
    }
    parts.join("; ")
}

/// Rows of one section: path, type, required, constraints, description.
fn rows(prefix: &str, schema: &Value, out: &mut Vec<[String; 5]>) {
    let required: BTreeSet<&str> = schema["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let empty = Map::new();
    for (name, sub) in schema["properties"].as_object().unwrap_or(&empty) {
        let path = format!("{prefix}.{name}");
        out.push([
            code(&path),
            type_name(sub),
            if required.contains(name.as_str()) {
                "yes"
            } else {
                ""
            }
            .to_owned(),
            constraints(sub),
            one_line(sub["description"].as_str().unwrap_or("")),
        ]);
        nested(&path, sub, out);
    }
}

fn nested(path: &str, schema: &Value, out: &mut Vec<[String; 5]>) {
    if schema.get("properties").is_some() {
        rows(path, schema, out);
    }
    let items = &schema["items"];
    if items.is_object() {
        let item_path = format!("{path}[]");
        if items.get("properties").is_some() {
            rows(&item_path, items, out);
        } else if !constraints(items).is_empty() {
            out.push([
                code(&item_path),
                type_name(items),
                String::new(),
                constraints(items),
                one_line(items["description"].as_str().unwrap_or("")),
            ]);
        }
    }
    let values = &schema["additionalProperties"];
    if values.is_object() {
        let value_path = format!("{path}.*");
        // A map's values get a row of their own only when there is more to say than the
        // map's type ("map of string") says.
        if !constraints(values).is_empty() || values.get("description").is_some() {
            out.push([
                code(&value_path),
                type_name(values),
                String::new(),
                constraints(values),
                one_line(values["description"].as_str().unwrap_or("")),
            ]);
        }
        nested(&value_path, values, out);
    }
}

fn render() -> String {
    let schema = schema();
    let mut doc = String::from(
        "# Configuration reference: AWSDynamoDBSource\n\n\
         <!-- Generated from the CRD by `make docs` (tests/it/config_reference.rs); do not edit. -->\n\n\
         `apiVersion: sources.triggermesh.io/v1alpha1`, `kind: AWSDynamoDBSource`, namespaced.\n\
         Every field of the schema the API server enforces, generated from the CRD that\n\
         `dynamodb-source crd` prints (`config/crd/`). `kubectl explain awsdynamodbsource.spec`\n\
         shows the same descriptions. Paths use `[]` for the items of an array and `*` for the\n\
         values of a map. \"rule\" lists the CEL validations checked at admission.\n",
    );
    for section in ["spec", "status"] {
        let part = &schema["properties"][section];
        doc.push_str(&format!(
            "\n## `{section}`\n\n{}\n\n",
            one_line(part["description"].as_str().unwrap_or(""))
        ));
        let top = constraints(part);
        if !top.is_empty() {
            doc.push_str(&format!("Checks on the whole `{section}`: {top}.\n\n"));
        }
        doc.push_str(
            "| field | type | required | constraints | description |\n|---|---|---|---|---|\n",
        );
        let mut table = Vec::new();
        rows(section, part, &mut table);
        for row in table {
            doc.push_str(&format!("| {} |\n", row.join(" | ")));
        }
    }
    doc
}

#[test]
fn the_configuration_reference_documents_every_field_of_the_crd() {
    let rendered = render();
    let path = crate::support::repo_path(DOC);
    if std::env::var_os("DYNAMODB_SOURCE_UPDATE_DOCS").is_some_and(|v| v == "1") {
        std::fs::write(&path, &rendered).expect("write docs/configuration.md");
    }
    let doc = std::fs::read_to_string(&path).unwrap_or_default();

    // Independently of the renderer: every path of the schema appears as a field.
    let schema = schema();
    let mut paths = BTreeSet::new();
    for section in ["spec", "status"] {
        field_paths(section, &schema["properties"][section], &mut paths);
    }
    for required in [
        "spec.arn",
        "spec.auth.credentials.accessKeyID.valueFromSecret.name",
        "spec.sink.ref.apiVersion",
        "spec.adapterOverrides.env[].name",
        "spec.payload.format",
        "status.conditions[].reason",
    ] {
        assert!(
            paths.contains(required),
            "the walk misses {required}: {paths:?}"
        );
    }
    let missing: Vec<&String> = paths
        .iter()
        .filter(|p| !doc.contains(&format!("| `{p}` |")))
        .collect();
    assert!(
        missing.is_empty(),
        "{DOC} does not document {missing:?}: run `make docs`"
    );
    assert!(
        doc == rendered,
        "{DOC} is stale (the CRD changed): run `make docs`"
    );
}

//! ECS from `ecs_flat.yml`: one entry per dotted field name.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::Path;

use saphyr::{LoadableYamlNode, Scalar, Yaml};
use serde_json::Value;

use super::Report;

pub struct Field {
    pub ty: String,
    pub array: bool,
    pub required: bool,
    /// `allowed_values` names, with `expected_event_types` for categories.
    pub allowed: Option<BTreeMap<String, Vec<String>>>,
}

pub struct Schema {
    fields: BTreeMap<String, Field>,
}

fn to_json(y: &Yaml<'_>) -> Value {
    match y {
        Yaml::Value(Scalar::Null) => Value::Null,
        Yaml::Value(Scalar::Boolean(b)) => Value::Bool(*b),
        Yaml::Value(Scalar::Integer(i)) => Value::from(*i),
        Yaml::Value(Scalar::FloatingPoint(f)) => Value::from(f.into_inner()),
        Yaml::Value(Scalar::String(s)) => Value::String(s.to_string()),
        Yaml::Representation(s, _, _) => Value::String(s.to_string()),
        Yaml::Sequence(seq) => Value::Array(seq.iter().map(to_json).collect()),
        Yaml::Mapping(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let key = match to_json(k) {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    (key, to_json(v))
                })
                .collect(),
        ),
        _ => Value::Null,
    }
}

impl Schema {
    pub fn load(path: &Path) -> Self {
        let text = std::fs::read_to_string(path).unwrap();
        let docs = Yaml::load_from_str(&text).unwrap();
        let root = to_json(&docs[0]);
        let mut fields = BTreeMap::new();
        for (name, def) in root.as_object().unwrap() {
            let str_list = |v: &Value| -> Vec<String> {
                v.as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|x| x.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default()
            };
            let allowed = def["allowed_values"].as_array().map(|vals| {
                vals.iter()
                    .map(|v| {
                        (
                            v["name"].as_str().unwrap().to_owned(),
                            str_list(&v["expected_event_types"]),
                        )
                    })
                    .collect()
            });
            fields.insert(
                name.clone(),
                Field {
                    ty: def["type"].as_str().unwrap().to_owned(),
                    array: str_list(&def["normalize"]).iter().any(|n| n == "array"),
                    required: def["required"].as_bool().unwrap_or(false),
                    allowed,
                },
            );
        }
        assert!(fields.len() > 1000, "ecs_flat.yml looks truncated");
        Schema { fields }
    }

    pub fn field_count(&self) -> usize {
        self.fields.len()
    }

    pub fn validate(&self, doc: &Value) -> Report {
        let mut r = Report::default();
        let mut leaves = Vec::new();
        flatten("", doc, &mut leaves);
        let mut seen = BTreeSet::new();
        for (name, value) in &leaves {
            seen.insert(name.clone());
            r.fields.push(name.clone());
            self.check_leaf(name, value, &mut r);
        }
        for (name, f) in &self.fields {
            if f.required && !seen.contains(name) {
                r.errors.push(format!("{name}: required field missing"));
            }
        }
        self.check_categorization(doc, &mut r);
        r
    }

    fn check_leaf(&self, name: &str, value: &Value, r: &mut Report) {
        let Some(field) = self.fields.get(name) else {
            // Inside an `object` field with keyword values (`labels.*`).
            if let Some((parent, _)) = name.rsplit_once('.') {
                if let Some(p) = self.fields.get(parent) {
                    if p.ty == "object" || p.ty == "flattened" {
                        r.values_checked += 1;
                        if !value.is_string() {
                            r.errors
                                .push(format!("{name}: object values must be strings"));
                        }
                        return;
                    }
                }
            }
            r.errors.push(format!("{name}: not an ECS field"));
            return;
        };
        let values: Vec<&Value> = match value {
            Value::Array(items) => {
                if !field.array {
                    r.errors.push(format!(
                        "{name}: array given, ECS does not normalize it to one"
                    ));
                }
                items.iter().collect()
            }
            v => vec![v],
        };
        for v in values {
            r.values_checked += 1;
            if let Err(e) = check_type(&field.ty, v) {
                r.errors
                    .push(format!("{name}: {e} (ECS type {})", field.ty));
            }
            if let (Some(allowed), Some(s)) = (&field.allowed, v.as_str()) {
                if !allowed.contains_key(s) {
                    r.errors
                        .push(format!("{name}: `{s}` is not an allowed value"));
                }
            }
        }
    }

    /// Each `event.type` must be expected for at least one `event.category`.
    fn check_categorization(&self, doc: &Value, r: &mut Report) {
        let Some(cats) = self
            .fields
            .get("event.category")
            .and_then(|f| f.allowed.as_ref())
        else {
            r.errors
                .push("event.category has no allowed values in the schema".into());
            return;
        };
        let list = |v: &Value| -> Vec<String> {
            match v {
                Value::Array(a) => a
                    .iter()
                    .filter_map(|x| x.as_str().map(str::to_owned))
                    .collect(),
                Value::String(s) => vec![s.clone()],
                _ => vec![],
            }
        };
        let categories = list(&doc["event"]["category"]);
        for t in list(&doc["event"]["type"]) {
            let ok = categories
                .iter()
                .any(|c| cats.get(c).is_some_and(|types| types.contains(&t)));
            if !ok {
                r.errors.push(format!(
                    "event.type `{t}` is not expected for categories {categories:?}"
                ));
            }
        }
    }
}

/// Dotted leaf names. Arrays of objects (`process.previous`) flatten into
/// their parent's name, as Elasticsearch maps them.
fn flatten(prefix: &str, v: &Value, out: &mut Vec<(String, Value)>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                let name = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&name, v, out);
            }
        }
        Value::Array(items) if items.iter().any(Value::is_object) => {
            for item in items {
                flatten(prefix, item, out);
            }
        }
        leaf => out.push((prefix.to_owned(), leaf.clone())),
    }
}

fn check_type(ty: &str, v: &Value) -> Result<(), String> {
    let ok = match ty {
        "keyword" | "constant_keyword" | "wildcard" | "match_only_text" | "text" => v.is_string(),
        "long" | "integer" | "short" | "byte" => v.is_i64() || v.is_u64(),
        "float" | "double" | "scaled_float" | "half_float" => v.is_number(),
        "boolean" => v.is_boolean(),
        "ip" => v.as_str().is_some_and(|s| s.parse::<IpAddr>().is_ok()),
        "date" => v.as_str().is_some_and(is_iso8601) || v.is_i64(),
        other => return Err(format!("ECS type `{other}` not expected for a leaf value")),
    };
    if ok {
        Ok(())
    } else {
        Err(format!("value {v} does not fit"))
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.f{1,9}]Z`, what Elasticsearch's default date
/// format accepts (we only ever write UTC).
fn is_iso8601(s: &str) -> bool {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    let base = b.len() >= 20
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19);
    if !base || !s.ends_with('Z') {
        return false;
    }
    let frac = &s[19..s.len() - 1];
    frac.is_empty()
        || (frac.starts_with('.')
            && (2..=10).contains(&frac.len())
            && frac[1..].bytes().all(|d| d.is_ascii_digit()))
}

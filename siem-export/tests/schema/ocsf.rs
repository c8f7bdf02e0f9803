//! OCSF from its schema sources: `dictionary.json`, `categories.json`,
//! `events/**.json` (classes), `objects/*.json`, `profiles/*.json`.
//!
//! Classes and objects are compiled the way the OCSF server does it:
//! attributes are inherited along `extends`, profile attributes are merged
//! in through `$include` (remembering which profile they belong to, unless
//! the including definition says `"profile": null`), and a definition's
//! keys override the inherited ones (enums are merged).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use regex::Regex;
use serde_json::{Map, Value};

use super::Report;

#[derive(Debug, Clone)]
struct Compiled {
    caption: String,
    uid: Option<i64>,
    category: Option<String>,
    attributes: Map<String, Value>,
    constraints: Value,
}

pub struct Schema {
    version: String,
    dictionary: Map<String, Value>,
    types: Map<String, Value>,
    regexes: HashMap<String, Regex>,
    categories: Map<String, Value>,
    profiles: BTreeMap<String, Value>,
    objects: HashMap<String, Compiled>,
    classes: HashMap<i64, Compiled>,
}

fn read(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn json_files(dir: &Path, out: &mut Vec<Value>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            json_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "json") {
            out.push(read(&path));
        }
    }
}

fn by_name(files: Vec<Value>) -> HashMap<String, Value> {
    files
        .into_iter()
        .filter_map(|f| Some((f["name"].as_str()?.to_owned(), f)))
        .collect()
}

/// Merges one attribute definition over what is there (enums united).
fn merge_attr(attrs: &mut Map<String, Value>, name: &str, def: &Value) {
    let entry = attrs
        .entry(name.to_owned())
        .or_insert_with(|| Value::Object(Map::new()));
    let (Some(entry), Some(def)) = (entry.as_object_mut(), def.as_object()) else {
        return;
    };
    for (k, v) in def {
        if k == "enum" {
            let e = entry
                .entry("enum")
                .or_insert_with(|| Value::Object(Map::new()));
            if let (Some(e), Some(v)) = (e.as_object_mut(), v.as_object()) {
                for (id, item) in v {
                    e.insert(id.clone(), item.clone());
                }
            }
        } else {
            entry.insert(k.clone(), v.clone());
        }
    }
}

fn compile(
    files: &HashMap<String, Value>,
    profiles: &BTreeMap<String, Value>,
    name: &str,
) -> Compiled {
    let raw = &files[name];
    let mut c = match raw["extends"].as_str().filter(|p| files.contains_key(*p)) {
        Some(parent) => compile(files, profiles, parent),
        None => Compiled {
            caption: String::new(),
            uid: None,
            category: None,
            attributes: Map::new(),
            constraints: Value::Null,
        },
    };
    c.caption = raw["caption"].as_str().unwrap_or_default().to_owned();
    c.uid = raw["uid"].as_i64();
    if let Some(cat) = raw["category"].as_str() {
        c.category = Some(cat.to_owned());
    }
    if !raw["constraints"].is_null() {
        c.constraints = raw["constraints"].clone();
    }
    let own = raw["attributes"].as_object().cloned().unwrap_or_default();
    for inc in own
        .get("$include")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let inc = inc.as_str().unwrap();
        let profile = inc
            .strip_prefix("profiles/")
            .and_then(|p| p.strip_suffix(".json"))
            .unwrap_or_else(|| panic!("{name}: unexpected include {inc}"));
        let attrs = profiles[profile]["attributes"].as_object().unwrap();
        for (k, def) in attrs {
            let mut def = def.clone();
            if let Some(d) = def.as_object_mut() {
                d.entry("profile")
                    .or_insert_with(|| Value::String(profile.to_owned()));
            }
            merge_attr(&mut c.attributes, k, &def);
        }
    }
    for (k, def) in own.iter().filter(|(k, _)| *k != "$include") {
        merge_attr(&mut c.attributes, k, def);
    }
    c
}

impl Schema {
    pub fn load(dir: &Path) -> Self {
        let version = read(&dir.join("version.json"))["version"]
            .as_str()
            .unwrap()
            .to_owned();
        let dict = read(&dir.join("dictionary.json"));
        let dictionary = dict["attributes"].as_object().unwrap().clone();
        let types = dict["types"]["attributes"].as_object().unwrap().clone();
        let regexes = types
            .iter()
            .filter_map(|(name, t)| {
                let re = t["regex"].as_str()?;
                Some((name.clone(), Regex::new(re).unwrap()))
            })
            .collect();
        let categories = read(&dir.join("categories.json"))["attributes"]
            .as_object()
            .unwrap()
            .clone();

        let mut files = Vec::new();
        json_files(&dir.join("profiles"), &mut files);
        let profiles: BTreeMap<String, Value> = by_name(files).into_iter().collect();

        let mut files = Vec::new();
        json_files(&dir.join("objects"), &mut files);
        let object_files = by_name(files);
        let objects = object_files
            .keys()
            .map(|n| (n.clone(), compile(&object_files, &profiles, n)))
            .collect();

        let mut files = Vec::new();
        json_files(&dir.join("events"), &mut files);
        let event_files = by_name(files);
        let mut classes = HashMap::new();
        for name in event_files.keys() {
            let c = compile(&event_files, &profiles, name);
            let (Some(uid), Some(cat)) = (c.uid, &c.category) else {
                continue;
            };
            let Some(cat_uid) = categories.get(cat).and_then(|v| v["uid"].as_i64()) else {
                continue;
            };
            classes.insert(cat_uid * 1000 + uid, c);
        }
        assert!(classes.len() > 50, "OCSF classes missing");
        Schema {
            version,
            dictionary,
            types,
            regexes,
            categories,
            profiles,
            objects,
            classes,
        }
    }

    pub fn validate(&self, doc: &Value) -> Report {
        let mut r = Report::default();
        let Some(class_uid) = doc["class_uid"].as_i64() else {
            r.errors.push("class_uid missing".into());
            return r;
        };
        r.class_uid = class_uid;
        let Some(class) = self.classes.get(&class_uid) else {
            r.errors
                .push(format!("class_uid {class_uid} is not an OCSF class"));
            return r;
        };
        let declared: BTreeSet<String> = doc["metadata"]["profiles"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p.as_str().map(str::to_owned))
            .collect();
        for p in &declared {
            if !self.profiles.contains_key(p) {
                r.errors
                    .push(format!("metadata.profiles: no profile `{p}`"));
            }
        }
        let ctx = Ctx {
            schema: self,
            profiles: &declared,
        };
        ctx.object(class, doc, "", &mut r);
        self.check_ids(class, class_uid, doc, &mut r);
        if doc["metadata"]["version"].as_str() != Some(self.version.as_str()) {
            r.errors
                .push(format!("metadata.version must be {}", self.version));
        }
        r
    }

    /// The numbers and names the schema defines for this class.
    fn check_ids(&self, class: &Compiled, class_uid: i64, doc: &Value, r: &mut Report) {
        let cat_name = class.category.clone().unwrap_or_default();
        let cat = &self.categories[&cat_name];
        let mut expect = |what: &str, got: &Value, want: Value| {
            if got != &want {
                r.errors
                    .push(format!("{what}: got {got}, schema says {want}"));
            }
        };
        expect("category_uid", &doc["category_uid"], cat["uid"].clone());
        expect(
            "category_name",
            &doc["category_name"],
            cat["caption"].clone(),
        );
        expect(
            "class_name",
            &doc["class_name"],
            class.caption.clone().into(),
        );
        let activity = doc["activity_id"].as_i64().unwrap_or(-1);
        expect(
            "type_uid",
            &doc["type_uid"],
            (class_uid * 100 + activity).into(),
        );
        let caption = class.attributes["activity_id"]["enum"][activity.to_string()]["caption"]
            .as_str()
            .unwrap_or("?")
            .to_owned();
        let activity_name = if activity == 99 {
            doc["activity_name"].as_str().unwrap_or("?").to_owned()
        } else {
            caption
        };
        expect(
            "type_name",
            &doc["type_name"],
            format!("{}: {activity_name}", class.caption).into(),
        );
    }
}

struct Ctx<'a> {
    schema: &'a Schema,
    profiles: &'a BTreeSet<String>,
}

fn deprecated(v: &Value) -> bool {
    v.get("@deprecated").is_some()
}

impl Ctx<'_> {
    fn object(&self, def: &Compiled, v: &Value, path: &str, r: &mut Report) {
        let Some(obj) = v.as_object() else {
            r.errors
                .push(format!("{path}: expected an object, got {v}"));
            return;
        };
        let at = |k: &str| {
            if path.is_empty() {
                k.to_owned()
            } else {
                format!("{path}.{k}")
            }
        };
        for (k, value) in obj {
            let p = at(k);
            let Some(attr) = def.attributes.get(k) else {
                r.errors.push(format!("{p}: no such attribute"));
                continue;
            };
            if let Some(profile) = attr["profile"].as_str() {
                if !self.profiles.contains(profile) {
                    r.errors.push(format!(
                        "{p}: belongs to profile `{profile}`, which metadata.profiles does not declare"
                    ));
                }
            }
            let Some(dict) = self.schema.dictionary.get(k) else {
                r.errors.push(format!("{p}: not in the dictionary"));
                continue;
            };
            if deprecated(attr) || deprecated(dict) {
                r.errors.push(format!("{p}: deprecated"));
            }
            let ty = attr["type"]
                .as_str()
                .or(dict["type"].as_str())
                .unwrap_or("?");
            let is_array = attr["is_array"].as_bool().or(dict["is_array"].as_bool()) == Some(true);
            let mut enums = dict["enum"].as_object().cloned().unwrap_or_default();
            if let Some(e) = attr["enum"].as_object() {
                enums.extend(e.clone());
            }
            let items: Vec<&Value> = if is_array {
                match value.as_array() {
                    Some(a) => a.iter().collect(),
                    None => {
                        r.errors.push(format!("{p}: must be an array"));
                        continue;
                    }
                }
            } else {
                vec![value]
            };
            for (i, item) in items.into_iter().enumerate() {
                let ip = if is_array {
                    format!("{p}[{i}]")
                } else {
                    p.clone()
                };
                self.value(ty, item, &ip, r);
                // The compiled schema narrows these three to the class's own
                // values; `check_ids` checks them against the class instead.
                let class_ids = path.is_empty()
                    && matches!(k.as_str(), "category_uid" | "class_uid" | "type_uid");
                if !enums.is_empty() && !class_ids {
                    self.enum_value(&enums, dict, obj, item, &ip, r);
                }
            }
        }
        for (k, attr) in &def.attributes {
            if attr["requirement"] != "required" || obj.contains_key(k) {
                continue;
            }
            let gated = attr["profile"]
                .as_str()
                .is_some_and(|p| !self.profiles.contains(p));
            if !gated {
                r.errors
                    .push(format!("{}: required attribute missing", at(k)));
            }
        }
        let names = |key: &str| -> Vec<String> {
            def.constraints[key]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|n| n.as_str().map(str::to_owned))
                .collect()
        };
        let at_least_one = names("at_least_one");
        if !at_least_one.is_empty() && !at_least_one.iter().any(|n| obj.contains_key(n)) {
            r.errors
                .push(format!("{path}: needs at least one of {at_least_one:?}"));
        }
        let just_one = names("just_one");
        if !just_one.is_empty() && just_one.iter().filter(|n| obj.contains_key(*n)).count() != 1 {
            r.errors
                .push(format!("{path}: needs exactly one of {just_one:?}"));
        }
    }

    fn enum_value(
        &self,
        enums: &Map<String, Value>,
        dict: &Value,
        obj: &Map<String, Value>,
        item: &Value,
        p: &str,
        r: &mut Report,
    ) {
        let key = match item {
            Value::Number(n) => n.to_string(),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let Some(entry) = enums.get(&key) else {
            r.errors.push(format!("{p}: {key} is not an enum value"));
            return;
        };
        let Some(sibling) = dict["sibling"].as_str() else {
            return;
        };
        if key == "99" {
            return;
        }
        if let Some(s) = obj.get(sibling) {
            if s != &entry["caption"] {
                r.errors.push(format!(
                    "{p}: sibling `{sibling}` is {s}, the caption of {key} is {}",
                    entry["caption"]
                ));
            }
        }
    }

    fn value(&self, ty: &str, v: &Value, p: &str, r: &mut Report) {
        r.values_checked += 1;
        if ty == "object" {
            if !v.is_object() {
                r.errors.push(format!("{p}: expected an object"));
            }
            return;
        }
        if let Some(obj) = self.schema.objects.get(ty) {
            self.object(obj, v, p, r);
            return;
        }
        let Some(t) = self.schema.types.get(ty) else {
            r.errors.push(format!("{p}: unknown type `{ty}`"));
            return;
        };
        let base = t["type"].as_str().unwrap_or(ty);
        let base = match base {
            "timestamp_t" => "long_t",
            b => b,
        };
        let ok = match base {
            "string_t" => v.is_string(),
            "integer_t" | "long_t" => v.is_i64() || v.is_u64(),
            "float_t" => v.is_number(),
            "boolean_t" => v.is_boolean(),
            "json_t" => true,
            other => {
                r.errors.push(format!("{p}: unhandled base type {other}"));
                return;
            }
        };
        if !ok {
            r.errors.push(format!("{p}: {v} is not a {ty}"));
            return;
        }
        if let (Some(re), Some(s)) = (self.schema.regexes.get(ty), v.as_str()) {
            if !re.is_match(s) {
                r.errors
                    .push(format!("{p}: `{s}` does not match the {ty} pattern"));
            }
        }
        if let (Some(max), Some(s)) = (t["max_len"].as_u64(), v.as_str()) {
            if s.len() as u64 > max {
                r.errors.push(format!("{p}: longer than {max}"));
            }
        }
        if let (Some(range), Some(n)) = (t["range"].as_array(), v.as_i64()) {
            let lo = range.first().and_then(Value::as_i64).unwrap_or(i64::MIN);
            let hi = range.get(1).and_then(Value::as_i64).unwrap_or(i64::MAX);
            if !(lo..=hi).contains(&n) {
                r.errors.push(format!("{p}: {n} outside {lo}..={hi}"));
            }
        }
    }
}

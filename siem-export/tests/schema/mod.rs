//! Schema loaders and validators for the conformance tests.

pub mod ecs;
pub mod ocsf;
pub mod samples;

/// What a validation found.
#[derive(Debug, Default)]
pub struct Report {
    pub errors: Vec<String>,
    /// Leaf values (ECS fields, OCSF attributes) whose type was checked.
    pub values_checked: usize,
    /// ECS: the dotted names of the fields seen.
    pub fields: Vec<String>,
    /// OCSF: the event's class.
    pub class_uid: i64,
}

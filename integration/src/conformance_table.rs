//! The shared table of cases: the policy files of `integration/conformance/`, embedded, in
//! the order a folder of them loads (sorted by name), so that the evaluator on the host and
//! the daemon in the VM see one and the same policy set. See [`crate::replay_plan`].

use policy_lang::PolicySet;

/// `(file name, text)`, sorted by name.
pub const FILES: &[(&str, &str)] = &[
    ("exec.yaml", include_str!("../conformance/exec.yaml")),
    ("files.yaml", include_str!("../conformance/files.yaml")),
    ("kernel.yaml", include_str!("../conformance/kernel.yaml")),
    ("network.yaml", include_str!("../conformance/network.yaml")),
    ("scoping.yaml", include_str!("../conformance/scoping.yaml")),
];

/// The table as one checked policy set; `Err` has the diagnostics, rendered.
pub fn load() -> Result<PolicySet, String> {
    policy_lang::load_sources(
        FILES
            .iter()
            .map(|(name, text)| (format!("integration/conformance/{name}"), *text)),
    )
    .map_err(|e| e.render())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_of_the_folder_is_embedded_in_order() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/conformance");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".yaml"))
            .collect();
        on_disk.sort();
        let embedded: Vec<&str> = FILES.iter().map(|(n, _)| *n).collect();
        assert_eq!(on_disk, embedded);
    }
}

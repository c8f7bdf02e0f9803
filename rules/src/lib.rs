//! The shipped rule library: policy files under `rules/policies/`, embedded
//! in the binary as the enforcer's default policy set and readable as files.

include!(concat!(env!("OUT_DIR"), "/files.rs"));

/// Every embedded policy file as (path for diagnostics, text).
pub fn files() -> impl Iterator<Item = (&'static str, &'static str)> {
    FILES.iter().copied()
}

/// Policy templates (`rules/templates/`): starting points to copy and fill in, never part
/// of the embedded default set ([`files`]).
pub const TEMPLATES: &[(&str, &str)] = &[(
    "rules/templates/default-deny-namespace.yaml",
    include_str!("../templates/default-deny-namespace.yaml"),
)];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_load_compile_pass_their_tests_and_are_not_loaded_by_default() {
        for (path, text) in TEMPLATES {
            assert!(
                files().all(|(p, _)| p != *path),
                "{path} is in the default set"
            );
            let set = policy_lang::load_sources([(*path, *text)])
                .unwrap_or_else(|e| panic!("{}", e.render()));
            assert!(
                set.warnings.is_empty(),
                "{}",
                policy_lang::render_all(&set.warnings, &set.sources)
            );
            let plan = policy_lang::compile(&set, &policy_lang::KernelFeatures::full())
                .unwrap_or_else(|d| panic!("{}", policy_lang::render_all(&d, &set.sources)));
            let report = policy_lang::run_tests(&set, &plan).unwrap();
            assert_eq!(report.failed(), 0, "{}", report.render(&set.sources));
            assert!(report.passed() >= 5, "{path}: too few tests");
        }
    }

    #[test]
    fn the_library_loads_compiles_and_passes_its_tests() {
        let set = policy_lang::load_sources(files()).unwrap_or_else(|e| panic!("{}", e.render()));
        assert!(
            set.warnings.is_empty(),
            "{}",
            policy_lang::render_all(&set.warnings, &set.sources)
        );
        // Tests state what the policy means: on a kernel with every feature.
        let plan = policy_lang::compile(&set, &policy_lang::KernelFeatures::full())
            .unwrap_or_else(|d| panic!("{}", policy_lang::render_all(&d, &set.sources)));
        let report = policy_lang::run_tests(&set, &plan).unwrap();
        assert_eq!(report.failed(), 0, "{}", report.render(&set.sources));
        assert!(report.passed() > 0);
    }

    #[test]
    fn every_rule_has_a_message_severity_and_attack_tag() {
        for (path, text) in files() {
            // A file has policies with rules, or only lists shared by the others.
            let rules = text.matches("- name:").count();
            assert!(
                rules > 0 || !text.contains("policies:"),
                "{path} has policies without rules"
            );
        }
        let set = policy_lang::load_sources(files()).unwrap();
        for p in &set.policies {
            for r in &p.rules {
                assert!(
                    !r.message.is_empty() && r.message != r.name,
                    "{}/{}: no message",
                    p.name,
                    r.name
                );
                assert!(
                    r.tags.iter().any(|t| t.starts_with('T')),
                    "{}/{}: no ATT&CK tag",
                    p.name,
                    r.name
                );
            }
        }
    }
}

//! Property tests: no input crashes the tool, and the kernel matcher agrees with the
//! documented pattern semantics.

// Test helpers may unwrap: a panic is a failing test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use policy_lang::matcher::{build, PathIndex};
use policy_lang::pattern::PathPattern;
use proptest::prelude::*;

fn component() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("a".to_owned()),
        Just("b".to_owned()),
        Just("a.so".to_owned()),
        Just("b.so".to_owned()),
        Just("x.tar.gz".to_owned()),
        Just(".so".to_owned()),
    ]
}

fn pattern_segment() -> impl Strategy<Value = String> {
    prop_oneof![
        component(),
        Just("*".to_owned()),
        Just("**".to_owned()),
        Just("*.so".to_owned()),
        Just("*.gz".to_owned()),
    ]
}

fn pattern() -> impl Strategy<Value = String> {
    prop::collection::vec(pattern_segment(), 0..5).prop_map(|s| format!("/{}", s.join("/")))
}

fn path() -> impl Strategy<Value = String> {
    prop::collection::vec(component(), 0..6).prop_map(|s| format!("/{}", s.join("/")))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// The automaton the kernel walks matches exactly what the pattern semantics say.
    #[test]
    fn kernel_matcher_agrees_with_patterns(
        pats in prop::collection::vec(pattern(), 1..6),
        paths in prop::collection::vec(path(), 1..12),
    ) {
        let parsed: Vec<PathPattern> = pats
            .iter()
            .filter_map(|p| PathPattern::parse(p).ok())
            .filter(|p| p.kernel_evaluable())
            .collect();
        let pairs: Vec<(&PathPattern, u32)> = parsed.iter().zip(0u32..).collect();
        let index = PathIndex::new(&build(&pairs).unwrap());
        for p in &paths {
            let expected: Vec<u32> = parsed
                .iter()
                .zip(0u32..)
                .filter(|(pat, _)| pat.matches(p))
                .map(|(_, i)| i)
                .collect();
            prop_assert_eq!(index.matches(p), expected, "path {}", p);
        }
    }

    /// Arbitrary text never crashes the loader.
    #[test]
    fn loader_never_panics(text in "\\PC{0,300}") {
        let _ = policy_lang::load_sources([("p.yaml", text)]);
    }

    /// Mutated real policies never crash the loader, compiler or evaluator.
    #[test]
    fn structured_mutations_never_panic(
        cut in 0usize..2000,
        insert in prop::sample::select(vec!["", ":", "- ", "{", "[", "$x", "**", "\n  ", "'", "not ", "(", "10.0.0.0/33", "9-1"]),
    ) {
        let base = include_str!("../../docs/policy-language.md");
        let yaml: String = base
            .split("```yaml\n")
            .skip(1)
            .filter_map(|b| b.split("```").next())
            .next()
            .unwrap_or("")
            .to_owned();
        let at = yaml.char_indices().map(|(i, _)| i).nth(cut % yaml.chars().count().max(1)).unwrap_or(0);
        let mutated = format!("{}{}{}", &yaml[..at], insert, &yaml[at..]);
        if let Ok(set) = policy_lang::load_sources([("p.yaml", mutated)]) {
            if let Ok(plan) = policy_lang::compile(&set, &policy_lang::KernelFeatures::full()) {
                let _ = policy_lang::run_tests(&set, &plan);
            }
        }
    }

    /// Conditions: arbitrary text never crashes the condition parser.
    #[test]
    fn conditions_never_panic(text in "[a-z.()$ =!,'\"0-9/*]{0,80}") {
        let yaml = format!(
            "policies:\n  - name: p\n    select: {{host: true}}\n    mode: enforce\n    rules:\n      - name: r\n        action: alert\n        condition: \"{}\"\n",
            text.replace('\\', "").replace('"', "'")
        );
        let _ = policy_lang::load_sources([("p.yaml", yaml)]);
    }
}

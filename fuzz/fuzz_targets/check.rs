//! Parser, checker, compiler and evaluator on arbitrary input: none may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match policy_lang::load_sources([("fuzz.yaml", text)]) {
        Ok(set) => {
            let _ = policy_lang::render_all(&set.warnings, &set.sources);
            for kernel in [
                policy_lang::KernelFeatures::full(),
                policy_lang::KernelFeatures::default(),
            ] {
                if let Ok(plan) = policy_lang::compile(&set, &kernel) {
                    let _ = policy_lang::explain(&plan);
                    let _ = policy_lang::run_tests(&set, &plan);
                }
            }
        }
        Err(e) => {
            let _ = e.render();
            let _ = e.render_json();
        }
    }
});

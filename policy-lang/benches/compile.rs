//! Loading (parse + check) and compiling a 10,000-rule policy set.
//! Run: `cargo bench -p policy-lang --bench compile`.

use criterion::{criterion_group, criterion_main, Criterion};
use policy_lang::{compile, load_sources, KernelFeatures};
use std::hint::black_box;

#[path = "../tests/support/large.rs"]
mod large;

fn bench(c: &mut Criterion) {
    let files = large::policy_set(10, 1000);
    let mut g = c.benchmark_group("10k_rules");
    g.sample_size(10);
    g.bench_function("load_check_compile", |b| {
        b.iter(|| {
            let Ok(set) = load_sources(black_box(files.clone())) else {
                return;
            };
            let _ = black_box(compile(&set, &KernelFeatures::full()));
        })
    });
    if let Ok(set) = load_sources(files.clone()) {
        g.bench_function("compile_only", |b| {
            b.iter(|| black_box(compile(black_box(&set), &KernelFeatures::full())))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

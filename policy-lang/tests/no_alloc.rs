//! Alert conditions are evaluated without allocating: counted with a global allocator.

// Test helpers may unwrap: a panic is a failing test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use policy_lang::condition::Compiled;
use policy_lang::event::{Operation, OwnedEvent, Pod, Process};
use policy_lang::model::{Match, NetOp, Protocol};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn conditions_do_not_allocate_per_event() {
    let text = r#"
lists:
  shells: [bash, sh, zsh]
macros:
  web: proc.ancestors contains nginx
policies:
  - name: p
    select: {host: true}
    mode: enforce
    rules:
      - name: r
        action: alert
        condition: >-
          (proc.name in $shells and web) or proc.cmdline regex 'curl .*\|\s*sh'
          or (net.addr in (10.0.0.0/8, "fd00::/8") and net.port in (22, 2222))
          or k8s.ns startswith kube- or cgroup.path glob '/kubepods*'
          or not proc.uid != 0 or evt.class = kernel
"#;
    let set = policy_lang::load_sources([("p.yaml", text)]).unwrap();
    let Match::Condition(expr) = &set.policies[0].rules[0].matcher else {
        panic!("not a condition")
    };
    let compiled = Compiled::new(expr).unwrap();
    let ev = OwnedEvent {
        process: Process {
            exe: "/usr/bin/python3".into(),
            cmdline: "python3 -m http.server".into(),
            uid: 1000,
            ancestors: vec!["/usr/bin/containerd-shim".into(), "/sbin/init".into()],
        },
        cgroup: "/system.slice/x.service".into(),
        container_id: Some("abc".into()),
        pod: Some(Pod {
            namespace: "prod".into(),
            ..Pod::default()
        }),
        op: Operation::Network {
            op: NetOp::Connect,
            addr: "192.168.1.1".parse().unwrap(),
            port: 443,
            protocol: Protocol::Tcp,
        },
    };
    // Warm up (regex caches its per-thread scratch space on first use).
    assert!(!compiled.eval(&ev));
    let before = ALLOCS.with(Cell::get);
    for _ in 0..1000 {
        assert!(!compiled.eval(&ev));
    }
    assert_eq!(ALLOCS.with(Cell::get) - before, 0);
}

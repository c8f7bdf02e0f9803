//! Hand-written kernel plans for the tests that drive `bpf_lsm::Loaded::apply` directly
//! (`kernel_plan`, `path_hooks`, `kernel_ops`): a path automaton laid out the way policy-lang's
//! matcher lays it out, a one-policy file plan over it, and loading with the event ring.

use anyhow::{Context, Result};
use bpf_lsm::{
    decode_record, Accept, Action, CgroupPolicies, Edge, EventRing, KernelPlan, KernelPolicy,
    KernelRule, Loaded, Mode, PathMatcherEntries, Record, Wildcard,
};

use super::cgroup::Cgroup;

/// Builds an automaton the way policy-lang's matcher lays it out: state 1 is
/// the start, new states are numbered from 2.
pub struct Auto {
    pub m: PathMatcherEntries,
    states: u32,
}

impl Default for Auto {
    fn default() -> Self {
        Auto {
            m: PathMatcherEntries::default(),
            states: 1,
        }
    }
}

impl Auto {
    pub fn new() -> Self {
        Auto::default()
    }

    pub fn state(&mut self) -> u32 {
        self.states += 1;
        self.states
    }

    /// Literal edges for `/a/b/c` from state 1, reusing existing edges.
    pub fn literal(&mut self, path: &str) -> u32 {
        let mut state = 1;
        for comp in path.split('/').filter(|c| !c.is_empty()) {
            let existing = self
                .m
                .edges
                .iter()
                .find(|e| e.from == state && e.segment == comp.as_bytes())
                .map(|e| e.to);
            state = match existing {
                Some(to) => to,
                None => {
                    let to = self.state();
                    self.m.edges.push(Edge::new(state, comp.as_bytes(), to));
                    to
                }
            };
        }
        state
    }

    pub fn accept(&mut self, state: u32, rules: &[u32]) {
        self.m.accepts.push(Accept {
            state,
            rules: rules.to_vec(),
        });
    }

    /// `/dir/**`: the directory itself and everything below it (an accepting
    /// state that loops on any component).
    pub fn recursive(&mut self, dir: &str, rules: &[u32]) {
        let s = self.literal(dir);
        self.m.wildcards.push(Wildcard { from: s, to: s });
        self.accept(s, rules);
    }
}

/// Policy `policy` in `mode` with allow defaults.
pub fn policy(policy: u32, mode: Mode) -> KernelPolicy {
    KernelPolicy {
        id: policy,
        mode,
        file_default: Action::Allow,
        exec_default: Action::Allow,
    }
}

/// A one-policy plan (`policy` in `mode`) over the file matcher `m`, applied to `cg`.
pub fn file_plan(
    cg: &Cgroup,
    policy_id: u32,
    mode: Mode,
    m: PathMatcherEntries,
    rules: Vec<KernelRule>,
) -> Result<KernelPlan> {
    Ok(KernelPlan {
        cgroup_selectors: Default::default(),
        policies: vec![policy(policy_id, mode)],
        cgroups: vec![CgroupPolicies {
            cgroup_id: cg.id()?,
            policies: vec![policy_id],
        }],
        file_matcher: m,
        rules,
        ..KernelPlan::default()
    })
}

/// Applies `plan`; the loaded programs and their event ring.
pub fn load(plan: &KernelPlan) -> Result<(Loaded, EventRing)> {
    // The error's Display carries the verifier log.
    let mut loaded = Loaded::apply(plan).map_err(|e| anyhow::anyhow!("{e}"))?;
    let ring = loaded.take_events()?;
    Ok((loaded, ring))
}

/// Every record in the ring, decoded.
pub fn records(ring: &mut EventRing) -> Result<Vec<Record>> {
    let mut out = Vec::new();
    while let Some(item) = ring.next() {
        out.push(decode_record(&item).context("decoding a kernel record")?);
    }
    Ok(out)
}

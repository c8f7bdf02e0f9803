//! Enforcement that survives the daemon. Every plan the daemon loads is pinned in bpffs as a
//! generation, `<pin_root>/gen-<n>/` (its links, ring buffer and counters: `bpf_lsm::pins`),
//! with a manifest `<state_dir>/pinned/gen-<n>.json` saying what it enforces and how its
//! records are named (bpffs holds BPF objects only). A daemon that stops (SIGTERM, SIGINT,
//! kill -9) leaves its generation attached; the next `enforcer run` loads and attaches its own
//! plan first, reads the old generation's ring buffer (the verdicts made while no daemon ran),
//! and only then removes the old pins. `enforcer unload` removes every generation.

use crate::exit_code::{self, Failure};
use crate::status::PolicyInfo;
use crate::verdict_log::Names;
use anyhow::Context;
use bpf_lsm::pins::{Contents, PinnedGeneration};
use bpf_lsm::Loaded;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Where generations are pinned unless the config's `pin_root` or `--pin-root` says otherwise.
pub const DEFAULT_PIN_ROOT: &str = "/sys/fs/bpf/enforcer";
/// The environment variable `--pin-root` falls back to.
pub const PIN_ROOT_ENV: &str = "ENFORCER_PIN_ROOT";
const GEN_PREFIX: &str = "gen-";
/// The manifests' directory, in the state directory.
const MANIFEST_DIR: &str = "pinned";

/// The pin root from the flag (or its environment variable), else the config's. Empty means
/// pinning is off: the programs detach when the daemon exits.
pub fn root(flag: Option<&Path>, config: &Path) -> Option<PathBuf> {
    let root = flag.unwrap_or(config);
    (!root.as_os_str().is_empty()).then(|| root.to_path_buf())
}

/// The generation number of a directory name `gen-<n>`.
pub fn generation_of(name: &str) -> Option<u64> {
    let n = name.strip_prefix(GEN_PREFIX)?;
    // `gen-007` is not a name this code writes: refuse it rather than alias `gen-7`.
    if n.starts_with('0') && n != "0" {
        return None;
    }
    n.parse().ok()
}

/// A pinned generation, found under the pin root.
#[derive(Clone, Debug)]
pub struct Generation {
    pub number: u64,
    pub pins: PinnedGeneration,
}

/// The generations pinned under `root`, oldest first. A missing root holds none.
pub fn generations(root: &Path) -> Vec<Generation> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut gens: Vec<Generation> = entries
        .flatten()
        .filter_map(|e| {
            let number = generation_of(&e.file_name().to_string_lossy())?;
            Some(Generation {
                number,
                pins: PinnedGeneration::new(e.path()),
            })
        })
        .collect();
    gens.sort_by_key(|g| g.number);
    gens
}

/// The number the next generation gets: one past the highest pinned (1 when none is).
pub fn next_generation(gens: &[Generation]) -> u64 {
    gens.iter().map(|g| g.number).max().unwrap_or(0) + 1
}

/// What a generation enforces and how its records are named, for the daemon that adopts it
/// and for `enforcer status`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Manifest {
    pub generation: u64,
    /// The enforcer version that pinned it.
    pub daemon_version: String,
    pub daemon_pid: u32,
    /// Seconds since the Unix epoch.
    pub pinned_at: u64,
    pub policies: Vec<PolicyInfo>,
    /// FNV-1a of the policies and rules it enforces: equal hashes, same rules.
    pub plan_hash: String,
    pub hooks: Vec<String>,
    /// The process exec tracepoint is attached (see `run.rs`).
    pub exec_records: bool,
    pub names: Names,
}

fn manifest_path(state_dir: &Path, generation: u64) -> PathBuf {
    state_dir
        .join(MANIFEST_DIR)
        .join(format!("{GEN_PREFIX}{generation}.json"))
}

/// FNV-1a over the policies and the rule labels, in a fixed order.
pub fn plan_hash(names: &Names, policies: &[PolicyInfo]) -> String {
    let mut lines: Vec<String> = policies
        .iter()
        .map(|p| format!("policy {} {} {}", p.name, p.mode, p.rules))
        .collect();
    let mut rules: Vec<String> = names
        .rules
        .iter()
        .map(|(id, r)| format!("rule {id} {}", r.label))
        .collect();
    rules.sort();
    lines.extend(rules);
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in lines.join("\n").bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

impl Manifest {
    pub fn read(state_dir: &Path, generation: u64) -> anyhow::Result<Option<Self>> {
        let path = manifest_path(state_dir, generation);
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text)
                .map(Some)
                .with_context(|| format!("parsing the manifest `{}`", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading `{}`", path.display())),
        }
    }

    fn write(&self, state_dir: &Path) -> anyhow::Result<()> {
        let path = manifest_path(state_dir, self.generation);
        let dir = state_dir.join(MANIFEST_DIR);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating `{}`", dir.display()))?;
        let tmp = dir.join(format!(".{GEN_PREFIX}{}.json.tmp", self.generation));
        let text = serde_json::to_vec_pretty(self).context("encoding the manifest")?;
        std::fs::write(&tmp, text).with_context(|| format!("writing `{}`", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("writing `{}`", path.display()))
    }
}

/// Removes the manifests of generations no longer pinned under `root`.
fn prune_manifests(state_dir: &Path, root: &Path) {
    let Ok(entries) = std::fs::read_dir(state_dir.join(MANIFEST_DIR)) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(n) = name.strip_suffix(".json").and_then(generation_of) else {
            continue;
        };
        if !root.join(format!("{GEN_PREFIX}{n}")).exists() {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Where the daemon pins, and where it keeps the manifests.
#[derive(Clone, Debug)]
pub struct Pins {
    pub root: PathBuf,
    pub state_dir: PathBuf,
}

impl Pins {
    /// Pins `loaded` as the next generation and writes its manifest. Call it before the ring
    /// buffer is taken. On error nothing stays pinned (and `loaded`, dropped by the caller,
    /// detaches): the plan in force before stays in force.
    pub fn pin(
        &self,
        loaded: &mut Loaded,
        names: &Names,
        policies: &[PolicyInfo],
    ) -> anyhow::Result<u64> {
        std::fs::create_dir_all(&self.root).with_context(|| {
            format!(
                "creating the pin root `{}` (it must be on bpffs; set `pin_root` in the config, \
                 or `--pin-root`)",
                self.root.display()
            )
        })?;
        let generation = next_generation(&generations(&self.root));
        let dir = self.root.join(format!("{GEN_PREFIX}{generation}"));
        loaded
            .pin(&dir)
            .with_context(|| format!("pinning generation {generation}"))?;
        let hooks: Vec<String> = loaded.attached().iter().map(|h| h.to_string()).collect();
        let manifest = Manifest {
            generation,
            daemon_version: env!("CARGO_PKG_VERSION").into(),
            daemon_pid: std::process::id(),
            pinned_at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            policies: policies.to_vec(),
            plan_hash: plan_hash(names, policies),
            exec_records: hooks.iter().any(|h| h == "enf_proc_exec"),
            hooks,
            names: names.clone(),
        };
        // Without its manifest a generation is still adopted, its records named by the
        // adopting daemon's rules: a warning, not a failure.
        if let Err(e) = manifest.write(&self.state_dir) {
            tracing::warn!(
                error = format!("{e:#}"),
                generation,
                "writing the manifest failed"
            );
        }
        prune_manifests(&self.state_dir, &self.root);
        Ok(generation)
    }

    /// Removes an adopted generation's pins (its programs detach) and its manifest.
    pub fn remove(&self, g: &Generation) -> Result<Contents, bpf_lsm::pins::PinError> {
        let removed = g.pins.remove()?;
        let _ = std::fs::remove_file(manifest_path(&self.state_dir, g.number));
        Ok(removed)
    }

    /// [`Pins::remove`], returning only once the kernel has detached the generation's
    /// programs (`enforcer unload`: when it says so, nothing is enforced any more).
    pub fn remove_detached(&self, g: &Generation) -> Result<Contents, bpf_lsm::pins::PinError> {
        let removed = g.pins.remove_and_wait(DETACH_TIMEOUT)?;
        let _ = std::fs::remove_file(manifest_path(&self.state_dir, g.number));
        Ok(removed)
    }
}

/// A pinned generation as `enforcer status` shows it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PinnedInfo {
    pub generation: u64,
    pub dir: PathBuf,
    pub links: usize,
    pub policies: Vec<String>,
    pub plan_hash: Option<String>,
}

/// What is pinned under `root`, with what the manifests in `state_dir` say.
pub fn pinned_info(root: &Path, state_dir: &Path) -> Vec<PinnedInfo> {
    generations(root)
        .into_iter()
        .map(|g| {
            let m = Manifest::read(state_dir, g.number).ok().flatten();
            PinnedInfo {
                generation: g.number,
                dir: g.pins.dir().to_path_buf(),
                links: g.pins.contents().links.len(),
                policies: m
                    .as_ref()
                    .map(|m| m.policies.iter().map(|p| p.name.clone()).collect())
                    .unwrap_or_default(),
                plan_hash: m.map(|m| m.plan_hash),
            }
        })
        .collect()
}

#[derive(Debug, clap::Args)]
pub struct UnloadArgs {
    /// The bpffs directory the daemon pins in. Default: the config's `pin_root`, else
    /// /sys/fs/bpf/enforcer.
    #[arg(long, value_name = "DIR", env = PIN_ROOT_ENV)]
    pub pin_root: Option<String>,
    /// The daemon's config file (for `pin_root` and `state_dir`).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The daemon's state directory, whose manifests of removed generations go too.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

/// The config file given (a bad one exits [`exit_code::CONFIG`]), else the defaults: where
/// `status` and `unload` find the state directory and the pin root.
pub fn config_or_default(path: Option<&Path>) -> Result<crate::config::Config, Failure> {
    match path {
        Some(p) => crate::config::Config::load(p).map_err(|e| Failure::new(exit_code::CONFIG, e)),
        None => Ok(crate::config::Config::default()),
    }
}

/// `enforcer unload`: detaches and removes every pinned generation. 0 when nothing is left
/// pinned (also when nothing was), 1 when a pin could not be removed.
/// How long `enforcer unload` waits for the kernel to release a generation's links
/// (milliseconds on hardware; seconds per hook under full emulation).
const DETACH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

pub fn unload(args: UnloadArgs) -> Result<u8, Failure> {
    if !nix::unistd::geteuid().is_root() {
        return Err(Failure::new(
            exit_code::NOT_ROOT,
            anyhow::anyhow!("`enforcer unload` needs root to remove BPF pins: run it with sudo"),
        ));
    }
    let config = config_or_default(args.config.as_deref())?;
    let Some(root) = root(args.pin_root.as_deref().map(Path::new), &config.pin_root) else {
        println!("pinning is off (the pin root is empty): nothing to remove");
        return Ok(exit_code::OK);
    };
    let state_dir = args.state_dir.unwrap_or(config.state_dir);
    let pins = Pins {
        root: root.clone(),
        state_dir,
    };
    let gens = generations(&root);
    if gens.is_empty() {
        println!(
            "nothing is pinned under `{}`: no enforcement to remove",
            root.display()
        );
        return Ok(exit_code::OK);
    }
    for g in &gens {
        let removed = pins
            .remove_detached(g)
            .with_context(|| format!("removing generation {}", g.number))?;
        println!(
            "removed generation {} (`{}`): {} link(s) detached, {} map pin(s) removed",
            g.number,
            g.pins.dir().display(),
            removed.links.len(),
            removed.maps.len()
        );
    }
    // The root goes too once empty; something else in it stays, and so does the root.
    let _ = std::fs::remove_dir(&root);
    println!(
        "enforcement removed: {} generation(s); a daemon still running keeps its own programs \
         attached until it stops",
        gens.len()
    );
    Ok(exit_code::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_names() {
        for (name, want) in [
            ("gen-1", Some(1)),
            ("gen-42", Some(42)),
            ("gen-0", Some(0)),
            ("gen-007", None),
            ("gen-", None),
            ("gen-x", None),
            ("other", None),
        ] {
            assert_eq!(generation_of(name), want, "{name}");
        }
    }

    #[test]
    fn generations_are_listed_oldest_first_and_numbered_on() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(generations(&tmp.path().join("missing")).is_empty());
        assert_eq!(next_generation(&[]), 1);
        for d in ["gen-10", "gen-2", "stray", "gen-3"] {
            std::fs::create_dir(tmp.path().join(d)).unwrap();
        }
        let gens = generations(tmp.path());
        let numbers: Vec<u64> = gens.iter().map(|g| g.number).collect();
        assert_eq!(numbers, [2, 3, 10]);
        assert_eq!(next_generation(&gens), 11);
    }

    #[test]
    fn an_empty_pin_root_turns_pinning_off() {
        let cfg = Path::new(DEFAULT_PIN_ROOT);
        assert_eq!(root(None, cfg), Some(PathBuf::from(DEFAULT_PIN_ROOT)));
        assert_eq!(root(Some(Path::new("/x")), cfg), Some(PathBuf::from("/x")));
        assert_eq!(root(Some(Path::new("")), cfg), None);
        assert_eq!(root(None, Path::new("")), None);
    }

    fn policy(name: &str) -> PolicyInfo {
        PolicyInfo {
            name: name.into(),
            mode: "enforce".into(),
            rules: 1,
        }
    }

    #[test]
    fn the_plan_hash_follows_the_policies() {
        let names = Names::default();
        let a = plan_hash(&names, &[policy("a")]);
        assert_eq!(a, plan_hash(&names, &[policy("a")]));
        assert_ne!(a, plan_hash(&names, &[policy("b")]));
        assert_eq!(a.len(), 16);
    }

    #[test]
    fn manifests_round_trip_and_are_pruned_with_their_generation() {
        let tmp = tempfile::tempdir().unwrap();
        let (root, state) = (tmp.path().join("root"), tmp.path().join("state"));
        std::fs::create_dir_all(root.join("gen-1")).unwrap();
        let mut names = Names::default();
        names.policies.insert(0, "p".into());
        let m = |generation| Manifest {
            generation,
            daemon_version: "0".into(),
            daemon_pid: 1,
            pinned_at: 2,
            policies: vec![policy("p")],
            plan_hash: plan_hash(&names, &[policy("p")]),
            hooks: vec!["enf_file_open".into()],
            exec_records: false,
            names: names.clone(),
        };
        m(1).write(&state).unwrap();
        m(2).write(&state).unwrap();
        let back = Manifest::read(&state, 1).unwrap().unwrap();
        assert_eq!(back.names.policies.get(&0).map(String::as_str), Some("p"));
        assert_eq!(back.hooks, ["enf_file_open"]);
        // gen-2 is not pinned: its manifest goes.
        prune_manifests(&state, &root);
        assert!(Manifest::read(&state, 1).unwrap().is_some());
        assert!(Manifest::read(&state, 2).unwrap().is_none());
        let info = pinned_info(&root, &state);
        assert_eq!(info.len(), 1);
        assert_eq!(info[0].policies, ["p"]);
        assert_eq!(info[0].links, 0);
    }
}

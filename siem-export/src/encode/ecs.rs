//! Elastic Common Schema 9.x: one nested JSON object per event, field
//! mapping in the crate README (`ECS` section). Conformance is checked
//! against the ECS 9.4.0 `ecs_flat.yml` by `tests/conformance.rs`.

use super::tree::{Node, Obj};
use super::{
    basename, blocked, command_line, dirname, text, EncodeError, Encoder, FileKind, Product,
    RecordKind,
};
use crate::event::{
    AddressFamily, EventClass, FileTarget, NetworkTarget, Process, Protocol, SecurityEvent, Target,
    Verdict,
};
use crate::mitre::{attacks, Attack};

/// The ECS version we write (`ecs.version`) and validate against.
pub const ECS_VERSION: &str = "9.4.0";

/// ECS JSON encoder.
#[derive(Debug, Clone, Default)]
pub struct Ecs {
    /// Written to `observer.vendor`, `observer.product`, `observer.version`.
    pub product: Product,
}

impl Encoder for Ecs {
    fn name(&self) -> &'static str {
        "ecs"
    }

    fn record_kind(&self) -> RecordKind {
        RecordKind::JsonObject
    }

    fn encode(&self, ev: &SecurityEvent, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        super::write_json(self.name(), ev, &self.document(ev), out)
    }
}

/// ECS categorisation of one event: `event.kind`, `event.category`,
/// `event.type`, `event.outcome`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Categorization {
    pub kind: &'static str,
    pub category: Vec<&'static str>,
    pub types: Vec<&'static str>,
    pub outcome: &'static str,
}

/// How the event is categorised; see the README's ECS tables.
pub fn categorize(ev: &SecurityEvent) -> Categorization {
    let (category, activity) = activity(ev);
    let mut c = Categorization {
        kind: "event",
        category: vec![category],
        types: vec![activity],
        outcome: if blocked(ev.verdict) {
            "failure"
        } else {
            "success"
        },
    };
    let verdict_type = match ev.verdict {
        Verdict::Denied | Verdict::Killed => Some("denied"),
        Verdict::Alerted => Some("allowed"),
        Verdict::Allowed | Verdict::Audited => None,
    };
    if let Some(t) = verdict_type {
        c.kind = "alert";
        c.category.push("intrusion_detection");
        if !c.types.contains(&t) {
            c.types.push(t);
        }
    }
    c
}

/// `(event.category, event.type)` of the operation itself.
fn activity(ev: &SecurityEvent) -> (&'static str, &'static str) {
    let op = ev.operation.as_str();
    match ev.class {
        EventClass::Exec => ("process", "start"),
        EventClass::Process => match op {
            "ptrace" => ("process", "access"),
            _ => ("process", "info"),
        },
        EventClass::File => {
            let op = match &ev.target {
                Some(Target::File(FileTarget {
                    operation: Some(fop),
                    ..
                })) => fop.as_str(),
                _ => op,
            };
            ("file", file_type(op))
        }
        EventClass::Network => match op {
            "connect" | "accept" | "sendmsg" | "recvmsg" => ("network", "connection"),
            "bind" | "listen" => ("network", "start"),
            _ => ("network", "info"),
        },
        EventClass::Kernel => match op {
            "module_load" | "init_module" | "finit_module" => ("driver", "start"),
            "module_unload" | "delete_module" => ("driver", "end"),
            "ptrace" => ("process", "access"),
            "bpf" | "kexec" | "kexec_load" | "mount" | "umount" | "sysctl" => ("host", "change"),
            _ => ("host", "info"),
        },
    }
}

fn file_type(op: &str) -> &'static str {
    match op {
        "create" | "mkdir" | "mknod" | "link" | "symlink" => "creation",
        "unlink" | "rmdir" | "delete" => "deletion",
        "write" | "truncate" | "rename" | "chmod" | "chown" | "setattr" | "setxattr"
        | "removexattr" | "utimes" => "change",
        "open" | "read" | "exec" | "mmap" | "readlink" => "access",
        _ => "info",
    }
}

impl Ecs {
    fn document(&self, ev: &SecurityEvent) -> Obj {
        let cat = categorize(ev);
        let mut doc = Obj::new();
        doc.str("@timestamp", ev.time.to_rfc3339());
        doc.obj("ecs", {
            let mut o = Obj::new();
            o.str("version", ECS_VERSION);
            o
        });
        if !ev.message.is_empty() {
            doc.str("message", ev.message.clone());
        }
        doc.strs("tags", ev.tags.iter().cloned());
        doc.obj("labels", labels(ev));

        let mut event = Obj::new();
        event
            .str("id", ev.id.to_string())
            .str("kind", cat.kind)
            .strs("category", cat.category)
            .strs("type", cat.types)
            .str("action", ev.operation.clone())
            .str("outcome", cat.outcome)
            .int("severity", ev.severity.ecs_severity())
            .float("risk_score", f64::from(ev.severity.ecs_risk_score()));
        doc.obj("event", event);

        doc.obj("host", {
            let mut o = Obj::new();
            o.str("name", ev.host.name.clone());
            o
        });
        doc.obj("observer", {
            let mut o = Obj::new();
            o.str("vendor", self.product.vendor.clone())
                .str("product", self.product.name.clone())
                .str("version", self.product.version.clone());
            o
        });
        doc.obj("rule", {
            let mut o = Obj::new();
            o.opt_str("name", ev.rule.clone())
                .opt_str("ruleset", ev.policy.clone());
            o
        });
        doc.obj(
            "threat",
            threat(&attacks(ev.tags.iter().map(String::as_str))),
        );
        doc.obj("process", process(ev));
        match &ev.target {
            Some(Target::File(f)) => {
                doc.obj("file", file(f));
            }
            Some(Target::Network(n)) => network(n, &mut doc),
            _ => {}
        }
        if let Some(c) = &ev.container {
            let mut o = Obj::new();
            o.str("id", c.id.clone())
                .opt_str("runtime", c.runtime.clone());
            doc.obj("container", o);
        }
        if let Some(k) = &ev.kubernetes {
            let mut resource = Obj::new();
            resource
                .str("type", "pod")
                .str("name", k.pod_name.clone())
                .opt_str("id", k.pod_uid.clone());
            let mut o = Obj::new();
            o.str("type", "kubernetes")
                .str("namespace", k.namespace.clone())
                .obj("resource", resource);
            doc.obj("orchestrator", o);
        }
        doc
    }
}

/// What ECS has no field for, as `labels` (keyword values).
fn labels(ev: &SecurityEvent) -> Obj {
    let mut o = Obj::new();
    if let Some(c) = &ev.cgroup {
        o.str("cgroup_id", c.id.to_string());
        o.opt_str(
            "cgroup_path",
            c.path.as_ref().map(|p| p.escaped().into_owned()),
        );
    }
    if let Some(q) = ev.kubernetes.as_ref().and_then(|k| k.qos) {
        o.str("pod_qos", q.as_str());
    }
    if ev.process.as_ref().is_some_and(|p| p.argv_truncated) {
        o.str("process_args_truncated", "true");
    }
    match &ev.target {
        Some(Target::File(f)) if f.path_truncated => {
            o.str("file_path_truncated", "true");
        }
        Some(Target::Exec(e)) if e.argv_truncated => {
            o.str("exec_args_truncated", "true");
        }
        Some(Target::Kernel(k)) => {
            o.str("kernel_operation", k.operation.clone());
            o.opt_str("kernel_detail", k.detail.clone());
        }
        _ => {}
    }
    o
}

/// `threat.*` from ATT&CK tags. The `name` and `reference` arrays run
/// parallel to `id`, so names are written only when every entry has one.
fn threat(attacks: &[Attack<'_>]) -> Obj {
    let mut o = Obj::new();
    if attacks.is_empty() {
        return o;
    }
    o.str("framework", "MITRE ATT&CK");

    let mut tactics = Vec::new();
    for a in attacks {
        for t in a.tactics {
            if !tactics.contains(t) {
                tactics.push(*t);
            }
        }
    }
    let mut tactic = Obj::new();
    tactic
        .strs("id", tactics.iter().map(|t| t.id))
        .strs("name", tactics.iter().map(|t| t.name))
        .strs("reference", tactics.iter().map(|t| t.url()));
    o.obj("tactic", tactic);

    let mut techniques: Vec<&Attack<'_>> = Vec::new();
    for a in attacks {
        if !techniques.iter().any(|t| t.technique == a.technique) {
            techniques.push(a);
        }
    }
    let subs: Vec<&Attack<'_>> = attacks
        .iter()
        .filter(|a| a.sub_technique.is_some())
        .collect();

    let mut technique = Obj::new();
    technique.strs("id", techniques.iter().map(|a| a.technique));
    if let Some(names) = all(techniques.iter().map(|a| a.technique_name)) {
        technique.strs("name", names);
    }
    technique.strs("reference", techniques.iter().map(|a| a.technique_url()));
    let mut sub = Obj::new();
    sub.strs("id", subs.iter().filter_map(|a| a.sub_technique));
    if let Some(names) = all(subs.iter().map(|a| a.sub_technique_name)) {
        sub.strs("name", names);
    }
    sub.strs(
        "reference",
        subs.iter().filter_map(|a| a.sub_technique_url()),
    );
    technique.obj("subtechnique", sub);
    o.obj("technique", technique);
    o
}

fn all<T>(items: impl Iterator<Item = Option<T>>) -> Option<Vec<T>> {
    items.collect()
}

/// `process.*`: the acting task; for an exec, the program being executed
/// (ECS's process-start convention), with the image it replaces under
/// `process.previous`.
fn process(ev: &SecurityEvent) -> Obj {
    let mut o = Obj::new();
    let exec = match &ev.target {
        Some(Target::Exec(e)) => Some(e),
        _ => None,
    };
    let Some(p) = &ev.process else {
        if let Some(e) = exec {
            exec_image(&mut o, e.path.as_bytes(), &e.argv, e.argv_truncated);
        }
        return o;
    };
    o.int("pid", p.tgid);
    o.obj("thread", {
        let mut t = Obj::new();
        t.int("id", p.pid);
        t
    });
    match exec {
        Some(e) => {
            exec_image(&mut o, e.path.as_bytes(), &e.argv, e.argv_truncated);
        }
        None => {
            o.opt_str("entity_id", p.exec_id.clone());
            o.str("name", p.comm.escaped().into_owned());
            o.opt_str(
                "executable",
                p.exe.as_ref().map(|x| x.escaped().into_owned()),
            );
            args(&mut o, &p.argv, p.argv_truncated);
            o.opt_str("start", p.start_time.map(|t| t.to_rfc3339()));
        }
    }
    o.opt_str(
        "working_directory",
        p.cwd.as_ref().map(|c| c.escaped().into_owned()),
    );
    o.obj("user", {
        let mut u = Obj::new();
        u.str("id", p.uid.to_string())
            .opt_str("name", p.user.clone());
        u
    });
    o.obj("group", {
        let mut g = Obj::new();
        g.str("id", p.gid.to_string());
        g
    });
    o.obj("parent", parent(p));
    if exec.is_some() {
        let mut prev = Obj::new();
        prev.opt_str(
            "executable",
            p.exe.as_ref().map(|x| x.escaped().into_owned()),
        );
        if !p.argv.is_empty() {
            prev.strs("args", p.argv.iter().map(|a| a.escaped().into_owned()));
            if !p.argv_truncated {
                prev.int("args_count", len_i64(p.argv.len()));
            }
        }
        o.arr("previous", vec![Node::Obj(prev)]);
    }
    o
}

fn exec_image(o: &mut Obj, path: &[u8], argv: &[crate::event::ByteText], truncated: bool) {
    let name = basename(path);
    if !name.is_empty() {
        o.str("name", text(name));
    }
    o.str("executable", text(path));
    args(o, argv, truncated);
}

fn args(o: &mut Obj, argv: &[crate::event::ByteText], truncated: bool) {
    if argv.is_empty() {
        return;
    }
    o.strs("args", argv.iter().map(|a| a.escaped().into_owned()));
    if !truncated {
        o.int("args_count", len_i64(argv.len()));
    }
    o.str("command_line", command_line(argv));
}

fn len_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn parent(p: &Process) -> Obj {
    let mut o = Obj::new();
    let first = p.ancestors.first();
    let pid = p.ppid.or(first.map(|a| a.pid));
    o.opt_int("pid", pid);
    if let Some(a) = first.filter(|a| Some(a.pid) == pid) {
        o.opt_str("entity_id", a.exec_id.clone());
        o.opt_str(
            "executable",
            a.exe.as_ref().map(|x| x.escaped().into_owned()),
        );
    }
    o
}

fn file(f: &FileTarget) -> Obj {
    let path = f.path.as_bytes();
    let mut o = Obj::new();
    o.str("path", f.path.escaped().into_owned());
    let name = basename(path);
    if !name.is_empty() {
        o.str("name", text(name));
    }
    o.opt_str("directory", dirname(path).map(text));
    if let Some(m) = f.mode {
        o.str("mode", format!("{:04o}", m.0 & 0o7777));
        let kind = match FileKind::from_mode(m.0) {
            Some(FileKind::Regular) => Some("file"),
            Some(FileKind::Directory) => Some("dir"),
            Some(FileKind::Symlink) => Some("symlink"),
            _ => None,
        };
        o.opt_str("type", kind);
    }
    o
}

/// IANA keyword and number (ECS `network.transport`, `network.iana_number`).
pub(crate) fn iana(p: Protocol) -> Option<(&'static str, u8)> {
    match p {
        Protocol::Tcp => Some(("tcp", 6)),
        Protocol::Udp => Some(("udp", 17)),
        Protocol::Icmp => Some(("icmp", 1)),
        Protocol::Icmpv6 => Some(("ipv6-icmp", 58)),
        Protocol::Sctp => Some(("sctp", 132)),
        // IPPROTO_RAW is not a transport protocol number.
        Protocol::Raw => None,
    }
}

fn network(n: &NetworkTarget, doc: &mut Obj) {
    let endpoint = |ip: Option<std::net::IpAddr>, port: Option<u16>| {
        let mut o = Obj::new();
        if let Some(ip) = ip {
            o.str("address", ip.to_string()).str("ip", ip.to_string());
        }
        o.opt_int("port", port);
        o
    };
    doc.obj("source", endpoint(n.src_ip, n.src_port));
    let mut dst = endpoint(n.dst_ip, n.dst_port);
    if let Some(p) = &n.unix_path {
        dst.str("address", p.escaped().into_owned());
    }
    doc.obj("destination", dst);
    let mut o = Obj::new();
    if let Some((name, number)) = n.protocol.and_then(iana) {
        o.str("transport", name)
            .str("iana_number", number.to_string());
    }
    match n.family {
        AddressFamily::Ipv4 => {
            o.str("type", "ipv4");
        }
        AddressFamily::Ipv6 => {
            o.str("type", "ipv6");
        }
        AddressFamily::Unix => {}
    }
    o.str("direction", n.direction.as_str());
    doc.obj("network", o);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::tests::{full_event, minimal_event, nasty_event};
    use crate::event::{ByteText, Direction};

    fn encode(ev: &SecurityEvent) -> String {
        let mut out = Vec::new();
        Ecs::default().encode(ev, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn with_version(s: &str) -> String {
        s.replace("0.1.0", env!("CARGO_PKG_VERSION"))
    }

    #[test]
    fn exact_output_for_a_denied_exec_with_nasty_strings() {
        assert_eq!(
            encode(&nasty_event()),
            with_version(
                r#"{"@timestamp":"2024-06-10T06:13:20.999999999Z","ecs":{"version":"9.4.0"},"message":"sh -c \"x|y=z]\" \\ line1\r\nline2","tags":["T1059.004","T1611"],"event":{"id":"01J00CF7Z7000000000000001A","kind":"alert","category":["process","intrusion_detection"],"type":["start","denied"],"action":"exec","outcome":"failure","severity":5,"risk_score":99.0},"host":{"name":"node|a=b"},"observer":{"vendor":"enforcer","product":"enforcer","version":"0.1.0"},"rule":{"name":"r=1","ruleset":"p|1"},"threat":{"framework":"MITRE ATT&CK","tactic":{"id":["TA0002","TA0004"],"name":["Execution","Privilege Escalation"],"reference":["https://attack.mitre.org/tactics/TA0002/","https://attack.mitre.org/tactics/TA0004/"]},"technique":{"id":["T1059","T1611"],"name":["Command and Scripting Interpreter","Escape to Host"],"reference":["https://attack.mitre.org/techniques/T1059/","https://attack.mitre.org/techniques/T1611/"],"subtechnique":{"id":["T1059.004"],"name":["Unix Shell"],"reference":["https://attack.mitre.org/techniques/T1059/004/"]}}},"process":{"pid":7,"thread":{"id":7},"name":"e\\\\vil\n","executable":"/tmp/e\\\\vil\n","args":["sh","-c","a=b | c]"],"args_count":3,"command_line":"sh -c a=b | c]","user":{"id":"0"},"group":{"id":"0"},"previous":[{"executable":"/tmp/\\xff=x"}]}}"#
            )
        );
    }

    #[test]
    fn exact_output_for_a_denied_file_read() {
        assert_eq!(
            encode(&full_event()),
            with_version(
                r#"{"@timestamp":"2024-06-10T06:13:20.123456789Z","ecs":{"version":"9.4.0"},"message":"read of /etc/shadow denied","tags":["T1003.008","credential-access"],"labels":{"cgroup_id":"1234","cgroup_path":"/kubepods.slice/pod1","pod_qos":"BestEffort","process_args_truncated":"true","file_path_truncated":"true"},"event":{"id":"01J00CF73VJ8FPZRABEMWW3PPA","kind":"alert","category":["file","intrusion_detection"],"type":["access","denied"],"action":"open","outcome":"failure","severity":4,"risk_score":73.0},"host":{"name":"node-a"},"observer":{"vendor":"enforcer","product":"enforcer","version":"0.1.0"},"rule":{"name":"no-shadow-read","ruleset":"baseline"},"threat":{"framework":"MITRE ATT&CK","tactic":{"id":["TA0006"],"name":["Credential Access"],"reference":["https://attack.mitre.org/tactics/TA0006/"]},"technique":{"id":["T1003"],"name":["OS Credential Dumping"],"reference":["https://attack.mitre.org/techniques/T1003/"],"subtechnique":{"id":["T1003.008"],"name":["/etc/passwd and /etc/shadow"],"reference":["https://attack.mitre.org/techniques/T1003/008/"]}}},"process":{"pid":4240,"thread":{"id":4242},"entity_id":"bm9kZS1hOjUwMDA6NDI0MA","name":"cat","executable":"/usr/bin/cat","args":["cat","/etc/shadow"],"command_line":"cat /etc/shadow","start":"2024-06-10T06:13:19.000000000Z","working_directory":"/home/alice","user":{"id":"1000","name":"alice"},"group":{"id":"1000"},"parent":{"pid":1,"entity_id":"bm9kZS1hOjE6MQ","executable":"/usr/lib/systemd/systemd"}},"file":{"path":"/etc/shadow","name":"shadow","directory":"/etc","mode":"0640"},"container":{"id":"3f2a","runtime":"containerd"},"orchestrator":{"type":"kubernetes","namespace":"default","resource":{"type":"pod","name":"web-0","id":"c0ffee"}}}"#
            )
        );
    }

    #[test]
    fn categorization_by_verdict() {
        let mut ev = minimal_event();
        let cases = [
            (
                Verdict::Allowed,
                "event",
                &["process"][..],
                &["start"][..],
                "success",
            ),
            (
                Verdict::Audited,
                "event",
                &["process"],
                &["start"],
                "success",
            ),
            (
                Verdict::Denied,
                "alert",
                &["process", "intrusion_detection"],
                &["start", "denied"],
                "failure",
            ),
            (
                Verdict::Killed,
                "alert",
                &["process", "intrusion_detection"],
                &["start", "denied"],
                "failure",
            ),
            (
                Verdict::Alerted,
                "alert",
                &["process", "intrusion_detection"],
                &["start", "allowed"],
                "success",
            ),
        ];
        for (verdict, kind, category, types, outcome) in cases {
            ev.verdict = verdict;
            let c = categorize(&ev);
            assert_eq!(c.kind, kind, "{verdict}");
            assert_eq!(c.category, category, "{verdict}");
            assert_eq!(c.types, types, "{verdict}");
            assert_eq!(c.outcome, outcome, "{verdict}");
        }
    }

    #[test]
    fn categorization_by_operation() {
        let mut ev = minimal_event();
        let cases = [
            (EventClass::File, "unlink", ("file", "deletion")),
            (EventClass::File, "create", ("file", "creation")),
            (EventClass::File, "chmod", ("file", "change")),
            (EventClass::File, "open", ("file", "access")),
            (EventClass::File, "splice", ("file", "info")),
            (EventClass::Network, "connect", ("network", "connection")),
            (EventClass::Network, "listen", ("network", "start")),
            (EventClass::Kernel, "module_load", ("driver", "start")),
            (EventClass::Kernel, "bpf", ("host", "change")),
            (EventClass::Kernel, "ptrace", ("process", "access")),
            (EventClass::Kernel, "perf_event_open", ("host", "info")),
            (EventClass::Process, "ptrace", ("process", "access")),
        ];
        for (class, op, want) in cases {
            ev.class = class;
            ev.operation = op.into();
            assert_eq!(activity(&ev), want, "{class} {op}");
        }
        // The file-level operation wins over the hook's.
        let ev = full_event();
        assert_eq!(ev.operation, "open");
        assert_eq!(categorize(&ev).types, ["access", "denied"]);
    }

    #[test]
    fn network_fields() {
        let mut ev = minimal_event();
        ev.class = EventClass::Network;
        ev.operation = "connect".into();
        ev.target = Some(Target::Network(NetworkTarget {
            family: AddressFamily::Ipv6,
            protocol: Some(Protocol::Icmpv6),
            direction: Direction::Egress,
            src_ip: None,
            src_port: None,
            dst_ip: Some("2001:db8::1".parse().unwrap()),
            dst_port: None,
            unix_path: None,
        }));
        let v: serde_json::Value = serde_json::from_str(&encode(&ev)).unwrap();
        assert_eq!(
            v["network"],
            serde_json::json!({"transport": "ipv6-icmp", "iana_number": "58", "type": "ipv6", "direction": "egress"})
        );
        assert_eq!(
            v["destination"],
            serde_json::json!({"address": "2001:db8::1", "ip": "2001:db8::1"})
        );
        assert!(v.get("source").is_none());

        ev.target = Some(Target::Network(NetworkTarget {
            family: AddressFamily::Unix,
            protocol: None,
            direction: Direction::Egress,
            src_ip: None,
            src_port: None,
            dst_ip: None,
            dst_port: None,
            unix_path: Some(ByteText::from(&b"\0abs\xff"[..])),
        }));
        let v: serde_json::Value = serde_json::from_str(&encode(&ev)).unwrap();
        assert_eq!(v["destination"]["address"], "\u{0}abs\\xff");
        assert_eq!(v["network"], serde_json::json!({"direction": "egress"}));
    }

    #[test]
    fn file_type_and_mode_split() {
        let mut ev = full_event();
        if let Some(Target::File(f)) = &mut ev.target {
            f.mode = Some(crate::event::FileMode(0o104755));
        }
        let v: serde_json::Value = serde_json::from_str(&encode(&ev)).unwrap();
        assert_eq!(v["file"]["mode"], "4755");
        assert_eq!(v["file"]["type"], "file");
    }

    #[test]
    fn threat_names_only_when_all_are_known() {
        let mut ev = minimal_event();
        ev.tags = vec!["T1059".into(), "T9999.001".into()];
        let v: serde_json::Value = serde_json::from_str(&encode(&ev)).unwrap();
        let t = &v["threat"];
        assert_eq!(t["technique"]["id"], serde_json::json!(["T1059", "T9999"]));
        assert!(t["technique"].get("name").is_none(), "{t}");
        assert_eq!(
            t["technique"]["subtechnique"]["id"],
            serde_json::json!(["T9999.001"])
        );
        assert_eq!(t["tactic"]["id"], serde_json::json!(["TA0002"]));
        ev.tags = vec!["persistence".into()];
        let v: serde_json::Value = serde_json::from_str(&encode(&ev)).unwrap();
        assert!(v.get("threat").is_none());
    }

    #[test]
    fn minimal_event_output() {
        assert_eq!(
            encode(&minimal_event()),
            with_version(
                r#"{"@timestamp":"2024-06-10T06:13:20.000000000Z","ecs":{"version":"9.4.0"},"event":{"id":"01J00CF7000000000000000001","kind":"event","category":["process"],"type":["start"],"action":"exec","outcome":"success","severity":2,"risk_score":21.0},"host":{"name":"node-a"},"observer":{"vendor":"enforcer","product":"enforcer","version":"0.1.0"}}"#
            )
        );
    }
}

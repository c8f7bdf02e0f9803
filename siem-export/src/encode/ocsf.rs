//! OCSF 1.8.0: one JSON object per event, in the class that fits the
//! event (table in the crate README, `OCSF` section), with the
//! `security_control` and `host` profiles (plus `container` when the event
//! has a container). Conformance is checked against the OCSF 1.8.0 schema
//! sources by `tests/conformance.rs`.

use super::tree::{Node, Obj};
use super::{
    basename, blocked, command_line, dirname, text, EncodeError, Encoder, FileKind, Product,
    RecordKind,
};
use crate::event::{
    AddressFamily, ByteText, Direction, EventClass, ExecTarget, FileTarget, NetworkTarget, Process,
    SecurityEvent, Target, Verdict,
};
use crate::mitre::{attacks, Attack};

/// The OCSF version we write (`metadata.version`) and validate against.
pub const OCSF_VERSION: &str = "1.8.0";

/// OCSF JSON encoder.
#[derive(Debug, Clone, Default)]
pub struct Ocsf {
    /// Written to `metadata.product` (`vendor_name`, `name`, `version`).
    pub product: Product,
}

impl Encoder for Ocsf {
    fn name(&self) -> &'static str {
        "ocsf"
    }

    fn record_kind(&self) -> RecordKind {
        RecordKind::JsonObject
    }

    fn encode(&self, ev: &SecurityEvent, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        super::write_json(self.name(), ev, &self.document(ev), out)
    }
}

/// An event's OCSF class and activity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Classification {
    pub category_uid: u32,
    pub category_name: &'static str,
    pub class_uid: u32,
    pub class_name: &'static str,
    pub activity_id: u32,
    /// The OCSF caption, or our operation name for `99` (Other).
    pub activity_name: &'static str,
}

impl Classification {
    /// `class_uid * 100 + activity_id`, as the spec defines it.
    pub fn type_uid(&self) -> u64 {
        u64::from(self.class_uid) * 100 + u64::from(self.activity_id)
    }
}

const OTHER: u32 = 99;

/// Picks the class: `alerted` verdicts are Detection Findings (2004);
/// everything else goes by event class (see the README table).
pub fn classify(ev: &SecurityEvent) -> Classification {
    let system = |class_uid, class_name, (activity_id, activity_name)| Classification {
        category_uid: 1,
        category_name: "System Activity",
        class_uid,
        class_name,
        activity_id,
        activity_name,
    };
    if ev.verdict == Verdict::Alerted {
        return Classification {
            category_uid: 2,
            category_name: "Findings",
            class_uid: 2004,
            class_name: "Detection Finding",
            activity_id: 1,
            activity_name: "Create",
        };
    }
    let op = ev.operation.as_str();
    match ev.class {
        EventClass::Exec => system(1007, "Process Activity", (1, "Launch")),
        EventClass::Process => system(
            1007,
            "Process Activity",
            match op {
                "ptrace" => (3, "Open"),
                "setuid" => (5, "Set User ID"),
                _ => (OTHER, "Other"),
            },
        ),
        EventClass::File => {
            let op = match &ev.target {
                Some(Target::File(FileTarget {
                    operation: Some(fop),
                    ..
                })) => fop.as_str(),
                _ => op,
            };
            system(1001, "File System Activity", file_activity(op))
        }
        EventClass::Network => Classification {
            category_uid: 4,
            category_name: "Network Activity",
            class_uid: 4001,
            class_name: "Network Activity",
            activity_id: 0,
            activity_name: "",
        }
        .with(match op {
            "connect" | "accept" => (1, "Open"),
            "sendmsg" | "recvmsg" => (6, "Traffic"),
            "bind" | "listen" => (7, "Listen"),
            _ => (OTHER, "Other"),
        }),
        EventClass::Kernel => system(1003, "Kernel Activity", (4, "Invoke")),
    }
}

impl Classification {
    fn with(mut self, (id, name): (u32, &'static str)) -> Self {
        self.activity_id = id;
        self.activity_name = name;
        self
    }
}

fn file_activity(op: &str) -> (u32, &'static str) {
    match op {
        "create" | "mkdir" | "mknod" | "link" | "symlink" => (1, "Create"),
        "read" => (2, "Read"),
        "write" | "truncate" => (3, "Update"),
        "unlink" | "rmdir" | "delete" => (4, "Delete"),
        "rename" => (5, "Rename"),
        "setattr" | "setxattr" | "removexattr" | "utimes" => (6, "Set Attributes"),
        "chmod" | "chown" => (7, "Set Security"),
        "getattr" | "stat" | "getxattr" => (8, "Get Attributes"),
        "mount" => (12, "Mount"),
        "umount" => (13, "Unmount"),
        "open" => (14, "Open"),
        _ => (OTHER, "Other"),
    }
}

/// Security-control profile: `(action_id, action, disposition_id, disposition)`.
pub fn security_control(v: Verdict) -> (u32, &'static str, u32, &'static str) {
    match v {
        Verdict::Allowed => (1, "Allowed", 1, "Allowed"),
        Verdict::Denied | Verdict::Killed => (2, "Denied", 2, "Blocked"),
        Verdict::Audited => (3, "Observed", 15, "Detected"),
        Verdict::Alerted => (3, "Observed", 19, "Alert"),
    }
}

fn severity_caption(id: u8) -> &'static str {
    match id {
        1 => "Informational",
        2 => "Low",
        3 => "Medium",
        4 => "High",
        5 => "Critical",
        6 => "Fatal",
        _ => "Unknown",
    }
}

fn ms(t: crate::event::Timestamp) -> i64 {
    t.unix_millis()
}

impl Ocsf {
    fn document(&self, ev: &SecurityEvent) -> Obj {
        let c = classify(ev);
        let finding = c.class_uid == 2004;
        let mut doc = Obj::new();
        let activity_name = if c.activity_id == OTHER {
            ev.operation.as_str()
        } else {
            c.activity_name
        };
        doc.int("activity_id", c.activity_id)
            .str("activity_name", activity_name)
            .int("category_uid", c.category_uid)
            .str("category_name", c.category_name)
            .int("class_uid", c.class_uid)
            .str("class_name", c.class_name)
            .int("type_uid", i64::try_from(c.type_uid()).unwrap_or(0))
            .str("type_name", format!("{}: {}", c.class_name, activity_name));
        let sev = ev.severity.ocsf_severity_id();
        doc.int("severity_id", sev)
            .str("severity", severity_caption(sev))
            .int("time", ms(ev.time));
        if !ev.message.is_empty() {
            doc.str("message", ev.message.clone());
        }
        if finding {
            doc.int("status_id", 1).str("status", "New");
        } else if blocked(ev.verdict) {
            doc.int("status_id", 2).str("status", "Failure");
        } else {
            doc.int("status_id", 1).str("status", "Success");
        }
        let (action_id, action, disposition_id, disposition) = security_control(ev.verdict);
        doc.int("action_id", action_id)
            .str("action", action)
            .int("disposition_id", disposition_id)
            .str("disposition", disposition);
        if matches!(
            ev.verdict,
            Verdict::Alerted | Verdict::Denied | Verdict::Killed
        ) {
            doc.bool("is_alert", true);
        }
        let attacks = attacks(ev.tags.iter().map(String::as_str));
        doc.arr("attacks", attack_nodes(&attacks));
        if let Some(p) = &ev.policy {
            let mut o = Obj::new();
            o.str("name", p.clone()).bool("is_applied", true);
            doc.obj("policy", o);
        }
        doc.obj("metadata", self.metadata(ev));
        doc.obj("device", {
            let mut o = Obj::new();
            o.str("hostname", ev.host.name.clone()).int("type_id", 0);
            o
        });
        let actor = actor(ev);

        if finding {
            doc.obj("actor", actor.clone());
            doc.obj("finding_info", finding_info(ev, &attacks));
            let mut evidence = Obj::new();
            evidence.obj("actor", actor);
            target_into(ev, &mut evidence, true);
            doc.arr("evidences", vec![Node::Obj(evidence)]);
        } else {
            doc.obj("actor", actor);
            target_into(ev, &mut doc, false);
        }
        doc.obj("unmapped", unmapped(ev));
        doc
    }

    fn metadata(&self, ev: &SecurityEvent) -> Obj {
        let mut product = Obj::new();
        product
            .str("name", self.product.name.clone())
            .str("vendor_name", self.product.vendor.clone())
            .str("version", self.product.version.clone());
        let mut profiles = vec!["security_control", "host"];
        if ev.container.is_some() && ev.process.is_some() {
            profiles.push("container");
        }
        let mut o = Obj::new();
        o.str("version", OCSF_VERSION)
            .obj("product", product)
            .str("uid", ev.id.to_string())
            .str("original_time", ev.time.to_rfc3339())
            .strs("profiles", profiles)
            .strs("labels", ev.tags.iter().cloned());
        o
    }
}

fn attack_nodes(attacks: &[Attack<'_>]) -> Vec<Node> {
    let mut out = Vec::new();
    for a in attacks {
        let mut technique = Obj::new();
        technique
            .str("uid", a.technique)
            .opt_str("name", a.technique_name)
            .str("src_url", a.technique_url());
        let sub = a.sub_technique.map(|uid| {
            let mut o = Obj::new();
            o.str("uid", uid)
                .opt_str("name", a.sub_technique_name)
                .opt_str("src_url", a.sub_technique_url());
            o
        });
        // One entry per tactic (OCSF's `tactics` list is deprecated).
        let tactics: Vec<Option<&crate::mitre::Tactic>> = if a.tactics.is_empty() {
            vec![None]
        } else {
            a.tactics.iter().map(Some).collect()
        };
        for t in tactics {
            let mut o = Obj::new();
            o.obj("technique", technique.clone());
            if let Some(sub) = &sub {
                o.obj("sub_technique", sub.clone());
            }
            if let Some(t) = t {
                let mut tactic = Obj::new();
                tactic
                    .str("uid", t.id)
                    .str("name", t.name)
                    .str("src_url", t.url());
                o.obj("tactic", tactic);
            }
            out.push(Node::Obj(o));
        }
    }
    out
}

fn finding_info(ev: &SecurityEvent, attacks: &[Attack<'_>]) -> Obj {
    let mut o = Obj::new();
    o.str("uid", ev.id.to_string());
    let title = match (&ev.rule, ev.message.is_empty()) {
        (_, false) => ev.message.clone(),
        (Some(rule), true) => rule.clone(),
        (None, true) => format!("{} {}", ev.class, ev.operation),
    };
    o.str("title", title);
    if let Some(uid) = qualified_rule(ev) {
        let mut analytic = Obj::new();
        analytic
            .opt_str("name", ev.rule.clone())
            .str("uid", uid)
            .int("type_id", 1)
            .str("type", "Rule");
        o.obj("analytic", analytic);
    }
    o.arr("attacks", attack_nodes(attacks));
    o.strs("types", [ev.class.as_str()]);
    o
}

/// `policy/rule`, or whichever of the two the event has.
pub(crate) fn qualified_rule(ev: &SecurityEvent) -> Option<String> {
    match (&ev.policy, &ev.rule) {
        (Some(p), Some(r)) => Some(format!("{p}/{r}")),
        (None, Some(r)) => Some(r.clone()),
        (Some(p), None) => Some(p.clone()),
        (None, None) => None,
    }
}

fn actor(ev: &SecurityEvent) -> Obj {
    let mut o = Obj::new();
    if let Some(p) = &ev.process {
        o.obj("process", process(p, ev));
        o.obj("user", user(p));
    }
    o
}

fn user(p: &Process) -> Obj {
    let mut o = Obj::new();
    o.str("uid", p.uid.to_string())
        .opt_str("name", p.user.clone());
    o
}

fn file_obj(path: &ByteText, kind: Option<FileKind>) -> Obj {
    let bytes = path.as_bytes();
    let name = basename(bytes);
    let mut o = Obj::new();
    o.str("name", text(if name.is_empty() { bytes } else { name }))
        .str("path", path.escaped().into_owned())
        .opt_str("parent_folder", dirname(bytes).map(text));
    let (type_id, caption) = match kind {
        Some(FileKind::Regular) => (1, "Regular File"),
        Some(FileKind::Directory) => (2, "Folder"),
        Some(FileKind::CharDevice) => (3, "Character Device"),
        Some(FileKind::BlockDevice) => (4, "Block Device"),
        Some(FileKind::Socket) => (5, "Local Socket"),
        Some(FileKind::Fifo) => (6, "Named Pipe"),
        Some(FileKind::Symlink) => (7, "Symbolic Link"),
        None => (0, "Unknown"),
    };
    o.int("type_id", type_id).str("type", caption);
    o
}

/// The acting process (before an exec, the image that called it).
fn process(p: &Process, ev: &SecurityEvent) -> Obj {
    let mut o = Obj::new();
    o.int("pid", p.tgid)
        .int("ptid", p.pid)
        .opt_str("uid", p.exec_id.clone())
        .str("name", p.comm.escaped().into_owned());
    if !p.argv.is_empty() {
        o.str("cmd_line", command_line(&p.argv));
    }
    if let Some(exe) = &p.exe {
        o.obj("file", file_obj(exe, Some(FileKind::Regular)));
    }
    o.opt_int("created_time", p.start_time.map(ms))
        .opt_str(
            "working_directory",
            p.cwd.as_ref().map(|c| c.escaped().into_owned()),
        )
        .obj("user", user(p))
        .obj("parent_process", parent(p));
    let ancestry: Vec<Node> = p
        .ancestors
        .iter()
        .map(|a| {
            let mut o = Obj::new();
            o.int("pid", a.pid)
                .opt_str("uid", a.exec_id.clone())
                .opt_str("path", a.exe.as_ref().map(|x| x.escaped().into_owned()));
            Node::Obj(o)
        })
        .collect();
    o.arr("ancestry", ancestry);
    o.obj("container", container(ev));
    o
}

fn parent(p: &Process) -> Obj {
    let mut o = Obj::new();
    let first = p.ancestors.first();
    let pid = p.ppid.or(first.map(|a| a.pid));
    o.opt_int("pid", pid);
    if let Some(a) = first.filter(|a| Some(a.pid) == pid) {
        o.opt_str("uid", a.exec_id.clone());
        if let Some(exe) = &a.exe {
            let name = basename(exe.as_bytes());
            if !name.is_empty() {
                o.str("name", text(name));
            }
            o.obj("file", file_obj(exe, Some(FileKind::Regular)));
        }
    }
    o
}

/// The image an exec starts: same process (pid, user, parent), new program.
fn exec_process(e: &ExecTarget, ev: &SecurityEvent) -> Obj {
    let mut o = Obj::new();
    if let Some(p) = &ev.process {
        o.int("pid", p.tgid);
    }
    let name = basename(e.path.as_bytes());
    if !name.is_empty() {
        o.str("name", text(name));
    }
    if !e.argv.is_empty() {
        o.str("cmd_line", command_line(&e.argv));
    }
    o.obj("file", file_obj(&e.path, Some(FileKind::Regular)));
    if let Some(p) = &ev.process {
        o.obj("user", user(p)).obj("parent_process", parent(p));
    }
    o.obj("container", container(ev));
    o
}

fn container(ev: &SecurityEvent) -> Obj {
    let mut o = Obj::new();
    if let Some(c) = &ev.container {
        o.str("uid", c.id.clone())
            .opt_str("runtime", c.runtime.clone());
        if let Some(k) = &ev.kubernetes {
            o.str("orchestrator", "Kubernetes");
            o.opt_str("pod_uuid", k.pod_uid.clone().filter(|u| is_uuid(u)));
        }
    }
    o
}

/// `8-4-4-4-12` hex digits, what OCSF's `uuid_t` requires.
fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// The class-specific attributes: `process` (1007), `file` (1001),
/// endpoints and `connection_info` (4001), `kernel` (1003). In a finding
/// they go into the evidence object, where `kernel` has no place and is
/// carried in `data` instead.
fn target_into(ev: &SecurityEvent, o: &mut Obj, evidence: bool) {
    match &ev.target {
        Some(Target::Exec(e)) => {
            o.obj("process", exec_process(e, ev));
            if !evidence {
                o.int("launch_type_id", 3).str("launch_type", "Exec");
            }
        }
        Some(Target::File(f)) => {
            o.obj(
                "file",
                file_obj(&f.path, f.mode.and_then(|m| FileKind::from_mode(m.0))),
            );
        }
        Some(Target::Network(n)) => network(n, o),
        Some(Target::Kernel(k)) => {
            let mut kernel = Obj::new();
            kernel
                .str("name", k.operation.clone())
                .int("type_id", 2)
                .str("type", "System Call");
            if evidence {
                let mut data = Obj::new();
                data.obj("kernel", kernel);
                o.obj("data", data);
            } else {
                o.obj("kernel", kernel);
            }
        }
        None => {
            // Process Activity requires a target process; without one the
            // activity is reflexive (the actor acted on itself).
            if ev.class == EventClass::Process || ev.class == EventClass::Exec {
                if let Some(p) = &ev.process {
                    o.obj("process", process(p, ev));
                }
            }
        }
    }
}

fn network(n: &NetworkTarget, o: &mut Obj) {
    let endpoint = |ip: Option<std::net::IpAddr>, port: Option<u16>| {
        let mut e = Obj::new();
        e.opt_str("ip", ip.map(|i| i.to_string()));
        if ip.is_some() {
            e.opt_int("port", port);
        }
        e
    };
    o.obj("src_endpoint", endpoint(n.src_ip, n.src_port));
    let mut dst = endpoint(n.dst_ip, n.dst_port);
    // A unix socket's endpoint is its path.
    dst.opt_str(
        "name",
        n.unix_path.as_ref().map(|p| p.escaped().into_owned()),
    );
    o.obj("dst_endpoint", dst);
    let mut c = Obj::new();
    let (dir_id, dir) = match n.direction {
        Direction::Ingress => (1, "Inbound"),
        Direction::Egress => (2, "Outbound"),
    };
    c.int("direction_id", dir_id).str("direction", dir);
    if let Some((name, number)) = n.protocol.and_then(super::ecs::iana) {
        c.str("protocol_name", name).int("protocol_num", number);
    }
    match n.family {
        AddressFamily::Ipv4 => {
            c.int("protocol_ver_id", 4)
                .str("protocol_ver", "Internet Protocol version 4 (IPv4)");
        }
        AddressFamily::Ipv6 => {
            c.int("protocol_ver_id", 6)
                .str("protocol_ver", "Internet Protocol version 6 (IPv6)");
        }
        AddressFamily::Unix => {}
    }
    o.obj("connection_info", c);
}

/// Native fields OCSF has no attribute for.
fn unmapped(ev: &SecurityEvent) -> Obj {
    let mut o = Obj::new();
    if let Some(c) = &ev.cgroup {
        let mut cg = Obj::new();
        cg.int("id", i64::try_from(c.id).unwrap_or(i64::MAX))
            .opt_str("path", c.path.as_ref().map(|p| p.escaped().into_owned()));
        o.obj("cgroup", cg);
    }
    if let Some(k) = &ev.kubernetes {
        let mut ko = Obj::new();
        ko.str("namespace", k.namespace.clone())
            .str("pod_name", k.pod_name.clone())
            .opt_str("pod_uid", k.pod_uid.clone())
            .opt_str("qos", k.qos.map(|q| q.as_str()));
        o.obj("kubernetes", ko);
    }
    if ev.process.as_ref().is_some_and(|p| p.argv_truncated) {
        o.bool("process_argv_truncated", true);
    }
    match &ev.target {
        Some(Target::File(f)) => {
            let mut fo = Obj::new();
            fo.opt_int("flags", f.flags)
                .opt_str("mode", f.mode.map(|m| m.to_string()))
                .opt_str("operation", f.operation.clone());
            if f.path_truncated {
                fo.bool("path_truncated", true);
            }
            o.obj("file", fo);
        }
        Some(Target::Exec(e)) if e.argv_truncated => {
            o.bool("exec_argv_truncated", true);
        }
        Some(Target::Kernel(k)) => {
            o.opt_str("kernel_detail", k.detail.clone());
        }
        _ => {}
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::tests::{full_event, minimal_event, nasty_event};
    use crate::event::KernelTarget;

    fn encode(ev: &SecurityEvent) -> String {
        let mut out = Vec::new();
        Ocsf::default().encode(ev, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn value(ev: &SecurityEvent) -> serde_json::Value {
        serde_json::from_str(&encode(ev)).unwrap()
    }

    fn with_version(s: &str) -> String {
        s.replace("\"0.1.0\"", &format!("\"{}\"", env!("CARGO_PKG_VERSION")))
    }

    #[test]
    fn exact_output_for_a_denied_exec_with_nasty_strings() {
        assert_eq!(
            encode(&nasty_event()),
            with_version(
                r#"{"activity_id":1,"activity_name":"Launch","category_uid":1,"category_name":"System Activity","class_uid":1007,"class_name":"Process Activity","type_uid":100701,"type_name":"Process Activity: Launch","severity_id":5,"severity":"Critical","time":1718000000999,"message":"sh -c \"x|y=z]\" \\ line1\r\nline2","status_id":2,"status":"Failure","action_id":2,"action":"Denied","disposition_id":2,"disposition":"Blocked","is_alert":true,"attacks":[{"technique":{"uid":"T1059","name":"Command and Scripting Interpreter","src_url":"https://attack.mitre.org/techniques/T1059/"},"sub_technique":{"uid":"T1059.004","name":"Unix Shell","src_url":"https://attack.mitre.org/techniques/T1059/004/"},"tactic":{"uid":"TA0002","name":"Execution","src_url":"https://attack.mitre.org/tactics/TA0002/"}},{"technique":{"uid":"T1611","name":"Escape to Host","src_url":"https://attack.mitre.org/techniques/T1611/"},"tactic":{"uid":"TA0004","name":"Privilege Escalation","src_url":"https://attack.mitre.org/tactics/TA0004/"}}],"policy":{"name":"p|1","is_applied":true},"metadata":{"version":"1.8.0","product":{"name":"enforcer","vendor_name":"enforcer","version":"0.1.0"},"uid":"01J00CF7Z7000000000000001A","original_time":"2024-06-10T06:13:20.999999999Z","profiles":["security_control","host"],"labels":["T1059.004","T1611"]},"device":{"hostname":"node|a=b","type_id":0},"actor":{"process":{"pid":7,"ptid":7,"name":"a]b\"c","file":{"name":"\\xff=x","path":"/tmp/\\xff=x","parent_folder":"/tmp","type_id":1,"type":"Regular File"},"user":{"uid":"0"}},"user":{"uid":"0"}},"process":{"pid":7,"name":"e\\\\vil\n","cmd_line":"sh -c a=b | c]","file":{"name":"e\\\\vil\n","path":"/tmp/e\\\\vil\n","parent_folder":"/tmp","type_id":1,"type":"Regular File"},"user":{"uid":"0"}},"launch_type_id":3,"launch_type":"Exec"}"#
            )
        );
    }

    #[test]
    fn exact_output_for_a_denied_file_read() {
        assert_eq!(
            encode(&full_event()),
            with_version(
                r#"{"activity_id":2,"activity_name":"Read","category_uid":1,"category_name":"System Activity","class_uid":1001,"class_name":"File System Activity","type_uid":100102,"type_name":"File System Activity: Read","severity_id":4,"severity":"High","time":1718000000123,"message":"read of /etc/shadow denied","status_id":2,"status":"Failure","action_id":2,"action":"Denied","disposition_id":2,"disposition":"Blocked","is_alert":true,"attacks":[{"technique":{"uid":"T1003","name":"OS Credential Dumping","src_url":"https://attack.mitre.org/techniques/T1003/"},"sub_technique":{"uid":"T1003.008","name":"/etc/passwd and /etc/shadow","src_url":"https://attack.mitre.org/techniques/T1003/008/"},"tactic":{"uid":"TA0006","name":"Credential Access","src_url":"https://attack.mitre.org/tactics/TA0006/"}}],"policy":{"name":"baseline","is_applied":true},"metadata":{"version":"1.8.0","product":{"name":"enforcer","vendor_name":"enforcer","version":"0.1.0"},"uid":"01J00CF73VJ8FPZRABEMWW3PPA","original_time":"2024-06-10T06:13:20.123456789Z","profiles":["security_control","host","container"],"labels":["T1003.008","credential-access"]},"device":{"hostname":"node-a","type_id":0},"actor":{"process":{"pid":4240,"ptid":4242,"uid":"bm9kZS1hOjUwMDA6NDI0MA","name":"cat","cmd_line":"cat /etc/shadow","file":{"name":"cat","path":"/usr/bin/cat","parent_folder":"/usr/bin","type_id":1,"type":"Regular File"},"created_time":1717999999000,"working_directory":"/home/alice","user":{"uid":"1000","name":"alice"},"parent_process":{"pid":1,"uid":"bm9kZS1hOjE6MQ","name":"systemd","file":{"name":"systemd","path":"/usr/lib/systemd/systemd","parent_folder":"/usr/lib/systemd","type_id":1,"type":"Regular File"}},"ancestry":[{"pid":1,"uid":"bm9kZS1hOjE6MQ","path":"/usr/lib/systemd/systemd"}],"container":{"uid":"3f2a","runtime":"containerd","orchestrator":"Kubernetes"}},"user":{"uid":"1000","name":"alice"}},"file":{"name":"shadow","path":"/etc/shadow","parent_folder":"/etc","type_id":0,"type":"Unknown"},"unmapped":{"cgroup":{"id":1234,"path":"/kubepods.slice/pod1"},"kubernetes":{"namespace":"default","pod_name":"web-0","pod_uid":"c0ffee","qos":"BestEffort"},"process_argv_truncated":true,"file":{"flags":32768,"mode":"0640","operation":"read","path_truncated":true}}}"#
            )
        );
    }

    #[test]
    fn class_and_activity_choice() {
        let mut ev = minimal_event();
        let cases: Vec<(EventClass, &str, Option<&str>, u32, u32)> = vec![
            (EventClass::Exec, "exec", None, 1007, 1),
            (EventClass::Process, "ptrace", None, 1007, 3),
            (EventClass::Process, "setuid", None, 1007, 5),
            (EventClass::Process, "prctl", None, 1007, 99),
            (EventClass::File, "open", None, 1001, 14),
            (EventClass::File, "open", Some("read"), 1001, 2),
            (EventClass::File, "open", Some("write"), 1001, 3),
            (EventClass::File, "create", None, 1001, 1),
            (EventClass::File, "unlink", None, 1001, 4),
            (EventClass::File, "rename", None, 1001, 5),
            (EventClass::File, "setattr", None, 1001, 6),
            (EventClass::File, "chmod", None, 1001, 7),
            (EventClass::File, "mount", None, 1001, 12),
            (EventClass::File, "mmap", None, 1001, 99),
            (EventClass::Network, "connect", None, 4001, 1),
            (EventClass::Network, "sendmsg", None, 4001, 6),
            (EventClass::Network, "bind", None, 4001, 7),
            (EventClass::Network, "socket", None, 4001, 99),
            (EventClass::Kernel, "bpf", None, 1003, 4),
            (EventClass::Kernel, "module_load", None, 1003, 4),
        ];
        for (class, op, file_op, class_uid, activity_id) in cases {
            ev.class = class;
            ev.operation = op.into();
            ev.target = file_op.map(|o| {
                Target::File(FileTarget {
                    path: "/x".into(),
                    flags: None,
                    mode: None,
                    operation: Some(o.into()),
                    path_truncated: false,
                    second_path: None,
                })
            });
            for verdict in [
                Verdict::Allowed,
                Verdict::Denied,
                Verdict::Audited,
                Verdict::Killed,
            ] {
                ev.verdict = verdict;
                let c = classify(&ev);
                assert_eq!(
                    (c.class_uid, c.activity_id),
                    (class_uid, activity_id),
                    "{class} {op} {file_op:?}"
                );
                assert_eq!(
                    c.type_uid(),
                    u64::from(class_uid) * 100 + u64::from(activity_id)
                );
                assert_eq!(c.category_uid, class_uid / 1000);
            }
            ev.verdict = Verdict::Alerted;
            let c = classify(&ev);
            assert_eq!(
                (c.class_uid, c.activity_id, c.type_uid()),
                (2004, 1, 200401)
            );
        }
    }

    #[test]
    fn other_activities_carry_the_operation_name() {
        let mut ev = minimal_event();
        ev.class = EventClass::File;
        ev.operation = "mmap".into();
        let v = value(&ev);
        assert_eq!(v["activity_id"], 99);
        assert_eq!(v["activity_name"], "mmap");
        assert_eq!(v["type_uid"], 100199);
        assert_eq!(v["type_name"], "File System Activity: mmap");
    }

    #[test]
    fn security_control_by_verdict() {
        let mut ev = minimal_event();
        for (verdict, action, disposition, alert) in [
            (Verdict::Allowed, 1, 1, false),
            (Verdict::Denied, 2, 2, true),
            (Verdict::Killed, 2, 2, true),
            (Verdict::Audited, 3, 15, false),
            (Verdict::Alerted, 3, 19, true),
        ] {
            ev.verdict = verdict;
            let v = value(&ev);
            assert_eq!(v["action_id"], action, "{verdict}");
            assert_eq!(v["disposition_id"], disposition, "{verdict}");
            assert_eq!(v.get("is_alert").is_some(), alert, "{verdict}");
            assert_eq!(
                v["metadata"]["profiles"],
                serde_json::json!(["security_control", "host"])
            );
        }
    }

    #[test]
    fn alerts_are_detection_findings_with_evidence() {
        let mut ev = full_event();
        ev.verdict = Verdict::Alerted;
        let v = value(&ev);
        assert_eq!(v["class_uid"], 2004);
        assert_eq!(v["status_id"], 1);
        assert_eq!(v["finding_info"]["uid"], ev.id.to_string());
        assert_eq!(v["finding_info"]["title"], "read of /etc/shadow denied");
        assert_eq!(
            v["finding_info"]["analytic"],
            serde_json::json!({"name": "no-shadow-read", "uid": "baseline/no-shadow-read", "type_id": 1, "type": "Rule"})
        );
        assert_eq!(v["finding_info"]["attacks"], v["attacks"]);
        assert_eq!(v["evidences"][0]["file"]["path"], "/etc/shadow");
        assert_eq!(v["evidences"][0]["actor"], v["actor"]);
        assert!(v.get("file").is_none());

        ev.target = Some(Target::Kernel(KernelTarget {
            operation: "bpf".into(),
            detail: Some("prog_load".into()),
        }));
        let v = value(&ev);
        assert_eq!(v["evidences"][0]["data"]["kernel"]["name"], "bpf");
        assert_eq!(v["unmapped"]["kernel_detail"], "prog_load");
    }

    #[test]
    fn uuid_shape() {
        assert!(is_uuid("5f1c2b7e-0a44-4c1e-9d2f-6b1a3e9c8d70"));
        assert!(!is_uuid("c0ffee"));
        assert!(!is_uuid("5f1c2b7e-0a44-4c1e-9d2f-6b1a3e9c8d7g"));
    }
}

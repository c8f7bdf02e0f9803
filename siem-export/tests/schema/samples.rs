//! Sample events for the conformance tests: every event class and verdict,
//! every target kind, and strings that stress escaping.

use serde_json::{json, Value};
use siem_export::event::EventId;
use siem_export::{SecurityEvent, Timestamp};

const VERDICTS: [&str; 5] = ["allowed", "denied", "audited", "killed", "alerted"];

fn targets() -> Vec<(&'static str, &'static str, Value)> {
    vec![
        (
            "exec",
            "exec",
            json!({"exec": {"path": "/bin/sh", "argv": ["sh", "-c", "id; echo \"a|b=c]\\\\\""]}}),
        ),
        ("exec", "exec", Value::Null),
        (
            "file",
            "open",
            json!({"file": {"path": "/etc/shadow", "flags": 0, "mode": "100640", "operation": "read"}}),
        ),
        (
            "file",
            "open",
            json!({"file": {"path": "/tmp/.\\xff\\xfe\nhidden", "flags": 577, "mode": "0600", "operation": "write", "path_truncated": true}}),
        ),
        (
            "file",
            "unlink",
            json!({"file": {"path": "/var/log/auth.log"}}),
        ),
        (
            "file",
            "rename",
            json!({"file": {"path": "/usr/bin/ls", "mode": "120777"}}),
        ),
        ("file", "mmap", json!({"file": {"path": "/"}})),
        (
            "network",
            "connect",
            json!({"network": {"family": "ipv4", "protocol": "tcp", "direction": "egress",
                   "src_ip": "10.0.0.5", "src_port": 40000, "dst_ip": "203.0.113.7", "dst_port": 443}}),
        ),
        (
            "network",
            "bind",
            json!({"network": {"family": "ipv6", "protocol": "udp", "direction": "ingress",
                   "src_ip": "2001:db8::1", "dst_ip": "::ffff:10.0.0.1", "dst_port": 53}}),
        ),
        (
            "network",
            "connect",
            json!({"network": {"family": "unix", "direction": "egress", "unix_path": "\\x00abstract"}}),
        ),
        (
            "network",
            "sendmsg",
            json!({"network": {"family": "ipv4", "protocol": "raw", "direction": "egress", "dst_ip": "192.0.2.1"}}),
        ),
        (
            "kernel",
            "module_load",
            json!({"kernel": {"operation": "module_load", "detail": "name=evil\nsigned=no"}}),
        ),
        ("kernel", "bpf", json!({"kernel": {"operation": "bpf"}})),
        ("process", "ptrace", Value::Null),
        ("process", "setuid", Value::Null),
    ]
}

fn process() -> Value {
    json!({
        "pid": 4242, "tgid": 4240, "ppid": 1, "uid": 1000, "gid": 1000, "user": "alice",
        "comm": "ev|l=\"x\"]\\\\", "exe": "/usr/bin/python3\\xff",
        "argv": ["python3", "-c", "print(\"a\nb\") # | = ] \\\\ é"],
        "argv_truncated": true, "cwd": "/home/alice",
        "exec_id": "bm9kZS1hOjUwMDA6NDI0MA",
        "start_time": "2024-06-10T06:13:19.000000000Z",
        "ancestors": [
            {"pid": 1, "exe": "/usr/lib/systemd/systemd", "exec_id": "bm9kZS1hOjE6MQ"},
            {"pid": 0}
        ]
    })
}

pub fn all() -> Vec<SecurityEvent> {
    let mut out = Vec::new();
    let mut n = 0u128;
    for (class, op, target) in targets() {
        for verdict in VERDICTS {
            n += 1;
            let time = Timestamp::from_unix_nanos(1_718_000_000_123_456_789 + n as i64);
            let severity = ["info", "low", "medium", "high", "critical"][(n % 5) as usize];
            let mut ev = json!({
                "schema_version": 1,
                "id": EventId::from_time_and_tail(time, n).to_string(),
                "time": time.to_rfc3339(),
                "host": {"name": "node-a"},
                "verdict": verdict,
                "class": class,
                "operation": op,
                "severity": severity,
                "message": format!("{verdict} {op}: line1\nline2 | = ] \" \\"),
            });
            // Alternate the optional parts so both presence and absence
            // are covered.
            if n.is_multiple_of(2) {
                ev["policy"] = "baseline".into();
                ev["rule"] = "no-shell".into();
                ev["tags"] = json!(["T1059.004", "T1003", "T9999", "execution"]);
                ev["process"] = process();
                ev["cgroup"] = json!({"id": 8842, "path": "/kubepods.slice/x"});
                ev["container"] = json!({"id": "3b1f9c0d2e4a", "runtime": "containerd"});
                ev["kubernetes"] = json!({
                    "namespace": "shop", "pod_name": "web-0",
                    "pod_uid": "5f1c2b7e-0a44-4c1e-9d2f-6b1a3e9c8d70", "qos": "Burstable"
                });
            } else if n.is_multiple_of(3) {
                ev["rule"] = "only-rule".into();
                ev["tags"] = json!(["T1554"]);
                let mut p = process();
                p.as_object_mut().unwrap().remove("ancestors");
                p.as_object_mut().unwrap().remove("argv");
                p["ppid"] = Value::Null;
                p.as_object_mut().unwrap().remove("ppid");
                ev["process"] = p;
                ev["container"] = json!({"id": "abc"});
                ev["kubernetes"] =
                    json!({"namespace": "ns", "pod_name": "p", "pod_uid": "not-a-uuid"});
            } else {
                ev["message"] = "".into();
            }
            if !target.is_null() {
                ev["target"] = target.clone();
            }
            let bytes = serde_json::to_vec(&ev).unwrap();
            out.push(
                SecurityEvent::from_json(&bytes)
                    .unwrap_or_else(|e| panic!("sample {n} invalid: {e}\n{ev}")),
            );
        }
    }
    out
}

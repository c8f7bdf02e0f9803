//! ArcSight Common Event Format (CEF) version 0: one line per event,
//!
//! ```text
//! CEF:0|Vendor|Product|Version|Signature ID|Name|Severity|key=value key=value ...
//! ```
//!
//! Escaping follows the CEF specification exactly:
//!
//! * header fields: `\` becomes `\\` and `|` becomes `\|`; the header has no
//!   escape for line breaks, so CR and LF become a space there;
//! * extension values: `\` becomes `\\`, `=` becomes `\=`, LF becomes `\n`,
//!   CR becomes `\r` (a `|` needs no escape in the extension).
//!
//! A record therefore never contains a raw line break and is safe in
//! [`Framing::Lines`](super::Framing::Lines). Byte strings (paths, argv)
//! first take the native schema's `\xNN` form, and that text is then
//! CEF-escaped (so a byte `0xff` reads `\\xff` on the wire).

use std::fmt::Write as _;

use super::ocsf::qualified_rule;
use super::{basename, command_line, text, EncodeError, Encoder, Product, RecordKind};
use crate::event::{AddressFamily, Direction, SecurityEvent, Target};

/// CEF encoder.
#[derive(Debug, Clone, Default)]
pub struct Cef {
    /// The header's Device Vendor, Device Product and Device Version.
    pub product: Product,
}

impl Encoder for Cef {
    fn name(&self) -> &'static str {
        "cef"
    }

    fn record_kind(&self) -> RecordKind {
        RecordKind::Text
    }

    fn encode(&self, ev: &SecurityEvent, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        out.extend_from_slice(self.record(ev).as_bytes());
        Ok(())
    }
}

/// Appends a header field with `\` and `|` escaped, line breaks as spaces.
pub fn escape_header(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '|' => out.push_str("\\|"),
            '\r' | '\n' => out.push(' '),
            c => out.push(c),
        }
    }
}

/// Appends an extension value with `\`, `=`, LF and CR escaped.
pub fn escape_value(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '=' => out.push_str("\\="),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
}

/// The extension, in a fixed key order.
struct Ext(String);

impl Ext {
    fn put(&mut self, key: &str, value: &str) {
        if !self.0.is_empty() {
            self.0.push(' ');
        }
        self.0.push_str(key);
        self.0.push('=');
        escape_value(value, &mut self.0);
    }

    fn opt(&mut self, key: &str, value: Option<&str>) {
        if let Some(v) = value {
            self.put(key, v);
        }
    }

    /// A `csN`/`cnN` custom field with its label.
    fn custom(&mut self, key: &str, label: &str, value: Option<&str>) {
        if let Some(v) = value {
            self.put(&format!("{key}Label"), label);
            self.put(key, v);
        }
    }
}

impl Cef {
    /// The signature id: `policy/rule` when the event came from a rule,
    /// `class:operation` otherwise.
    pub fn signature_id(ev: &SecurityEvent) -> String {
        qualified_rule(ev).unwrap_or_else(|| format!("{}:{}", ev.class, ev.operation))
    }

    fn record(&self, ev: &SecurityEvent) -> String {
        let mut s = String::with_capacity(512);
        s.push_str("CEF:0|");
        for field in [
            self.product.vendor.as_str(),
            self.product.name.as_str(),
            self.product.version.as_str(),
            Self::signature_id(ev).as_str(),
        ] {
            escape_header(field, &mut s);
            s.push('|');
        }
        if ev.message.is_empty() {
            escape_header(
                &format!("{} {} {}", ev.verdict, ev.class, ev.operation),
                &mut s,
            );
        } else {
            escape_header(&ev.message, &mut s);
        }
        let _ = write!(s, "|{}|", ev.severity.cef_severity());
        s.push_str(&extension(ev).0);
        s
    }
}

fn extension(ev: &SecurityEvent) -> Ext {
    let mut x = Ext(String::new());
    x.put("rt", &ev.time.unix_millis().to_string());
    x.put("externalId", &ev.id.to_string());
    x.put("dvchost", &ev.host.name);
    x.put("act", ev.verdict.as_str());
    x.put(
        "outcome",
        if super::blocked(ev.verdict) {
            "failure"
        } else {
            "success"
        },
    );
    x.put("cat", &format!("{}/{}", ev.class, ev.operation));
    if !ev.message.is_empty() {
        x.put("msg", &ev.message);
    }
    if let Some(p) = &ev.process {
        x.put("spid", &p.tgid.to_string());
        let exe = p.exe.as_ref().map(|e| e.escaped());
        x.put("sproc", exe.as_deref().unwrap_or(&p.comm.escaped()));
        x.put("suid", &p.uid.to_string());
        x.opt("suser", p.user.as_deref());
    }
    match &ev.target {
        Some(Target::File(f)) => {
            x.put("filePath", &f.path.escaped());
            let name = basename(f.path.as_bytes());
            if !name.is_empty() {
                x.put("fname", &text(name));
            }
            x.opt(
                "filePermission",
                f.mode.map(|m| format!("{:04o}", m.0 & 0o7777)).as_deref(),
            );
        }
        Some(Target::Exec(e)) => {
            x.put("dproc", &e.path.escaped());
            if !e.argv.is_empty() {
                x.custom(
                    "flexString1",
                    "targetCommandLine",
                    Some(&command_line(&e.argv)),
                );
            }
        }
        Some(Target::Network(n)) => {
            x.opt("src", n.src_ip.map(|i| i.to_string()).as_deref());
            x.opt("spt", n.src_port.map(|p| p.to_string()).as_deref());
            x.opt("dst", n.dst_ip.map(|i| i.to_string()).as_deref());
            x.opt("dpt", n.dst_port.map(|p| p.to_string()).as_deref());
            x.opt(
                "proto",
                n.protocol
                    .map(|p| p.as_str().to_ascii_uppercase())
                    .as_deref(),
            );
            x.put(
                "deviceDirection",
                match n.direction {
                    Direction::Ingress => "0",
                    Direction::Egress => "1",
                },
            );
            if n.family == AddressFamily::Unix {
                x.opt(
                    "filePath",
                    n.unix_path.as_ref().map(|p| p.escaped()).as_deref(),
                );
            }
        }
        Some(Target::Kernel(k)) => {
            x.opt("reason", k.detail.as_deref());
        }
        None => {}
    }
    x.custom("cs1", "policy", ev.policy.as_deref());
    x.custom("cs2", "rule", ev.rule.as_deref());
    let techniques: Vec<&str> = ev.attack_techniques().collect();
    if !techniques.is_empty() {
        x.custom("cs3", "mitreAttack", Some(&techniques.join(",")));
    }
    x.custom(
        "cs4",
        "containerId",
        ev.container.as_ref().map(|c| c.id.as_str()),
    );
    x.custom(
        "cs5",
        "kubernetesPod",
        ev.kubernetes
            .as_ref()
            .map(|k| format!("{}/{}", k.namespace, k.pod_name))
            .as_deref(),
    );
    x.custom(
        "cs6",
        "execId",
        ev.process.as_ref().and_then(|p| p.exec_id.as_deref()),
    );
    x.custom(
        "cn1",
        "cgroupId",
        ev.cgroup.as_ref().map(|c| c.id.to_string()).as_deref(),
    );
    x
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::tests::{full_event, minimal_event, nasty_event};

    fn encode(ev: &SecurityEvent) -> String {
        let mut out = Vec::new();
        Cef::default().encode(ev, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn with_version(s: &str) -> String {
        s.replacen("|0.1.0|", &format!("|{}|", env!("CARGO_PKG_VERSION")), 1)
    }

    #[test]
    fn exact_output_with_nasty_strings() {
        assert_eq!(
            encode(&nasty_event()),
            with_version(
                r#"CEF:0|enforcer|enforcer|0.1.0|p\|1/r=1|sh -c "x\|y=z]" \\ line1  line2|10|rt=1718000000999 externalId=01J00CF7Z7000000000000001A dvchost=node|a\=b act=denied outcome=failure cat=exec/exec msg=sh -c "x|y\=z]" \\ line1\r\nline2 spid=7 sproc=/tmp/\\xff\=x suid=0 dproc=/tmp/e\\\\vil\n flexString1Label=targetCommandLine flexString1=sh -c a\=b | c] cs1Label=policy cs1=p|1 cs2Label=rule cs2=r\=1 cs3Label=mitreAttack cs3=T1059.004,T1611"#
            )
        );
    }

    #[test]
    fn exact_output_for_a_denied_file_read() {
        assert_eq!(
            encode(&full_event()),
            with_version(
                r#"CEF:0|enforcer|enforcer|0.1.0|baseline/no-shadow-read|read of /etc/shadow denied|8|rt=1718000000123 externalId=01J00CF73VJ8FPZRABEMWW3PPA dvchost=node-a act=denied outcome=failure cat=file/open msg=read of /etc/shadow denied spid=4240 sproc=/usr/bin/cat suid=1000 suser=alice filePath=/etc/shadow fname=shadow filePermission=0640 cs1Label=policy cs1=baseline cs2Label=rule cs2=no-shadow-read cs3Label=mitreAttack cs3=T1003.008 cs4Label=containerId cs4=3f2a cs5Label=kubernetesPod cs5=default/web-0 cs6Label=execId cs6=bm9kZS1hOjUwMDA6NDI0MA cn1Label=cgroupId cn1=1234"#
            )
        );
    }

    #[test]
    fn minimal_output() {
        assert_eq!(
            encode(&minimal_event()),
            with_version("CEF:0|enforcer|enforcer|0.1.0|exec:exec|audited exec exec|3|rt=1718000000000 externalId=01J00CF7000000000000000001 dvchost=node-a act=audited outcome=success cat=exec/exec")
        );
    }

    #[test]
    fn header_escaping() {
        let mut s = String::new();
        escape_header("a|b\\c=d\re\nf]", &mut s);
        assert_eq!(s, "a\\|b\\\\c=d e f]");
    }

    #[test]
    fn extension_escaping() {
        let mut s = String::new();
        escape_value("a|b\\c=d\re\nf] \"", &mut s);
        assert_eq!(s, "a|b\\\\c\\=d\\re\\nf] \"");
    }

    #[test]
    fn product_fields_are_escaped_too() {
        let cef = Cef {
            product: Product {
                vendor: "A|B".into(),
                name: "x\\y".into(),
                version: "1".into(),
            },
        };
        let mut out = Vec::new();
        cef.encode(&minimal_event(), &mut out).unwrap();
        assert!(
            out.starts_with(b"CEF:0|A\\|B|x\\\\y|1|"),
            "{}",
            String::from_utf8_lossy(&out)
        );
    }

    #[test]
    fn records_are_single_lines() {
        for ev in [nasty_event(), full_event(), minimal_event()] {
            let rec = encode(&ev);
            assert!(!rec.contains('\n') && !rec.contains('\r'), "{rec}");
        }
    }
}

//! RFC 5424 syslog messages carrying either the native JSON event or a CEF
//! record as MSG, with the key fields also in a structured-data element:
//!
//! ```text
//! <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [enforcer@PEN k="v" ...] BOM MSG
//! ```
//!
//! * PRI is `facility * 8 + severity`, the severity from the shared table.
//! * TIMESTAMP is UTC with six fractional digits (RFC 5424 allows at most
//!   six; the nanoseconds are truncated, never rounded up).
//! * HOSTNAME, APP-NAME, PROCID and MSGID may only hold printable US-ASCII
//!   (33-126) and are limited to 255, 48, 128 and 32 characters: other
//!   characters become `_`, longer values are cut, and empty values are
//!   written as the NILVALUE `-`.
//! * SD-PARAM values escape `"`, `\` and `]` with a backslash, as the RFC
//!   requires, and nothing else. A value may therefore contain a raw line
//!   break (a file name with a newline): send syslog with octet counting
//!   ([`Framing::OctetCounting`](super::Framing::OctetCounting), RFC 6587),
//!   which carries any byte; line framing refuses such records.
//! * MSG is UTF-8 and so starts with the BOM (`EF BB BF`).

use std::fmt::Write as _;

use super::cef::Cef;
use super::{EncodeError, Encoder, NativeJson, Product, RecordKind};
use crate::event::{SecurityEvent, Target};

/// What the MSG part carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Payload {
    /// The native JSON event (compact).
    #[default]
    Native,
    /// The CEF record, as [`Cef`] writes it.
    Cef,
}

/// A syslog facility code, 0-23.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facility(u8);

impl Facility {
    /// 4, security/authorization messages.
    pub const AUTH: Facility = Facility(4);
    /// 10, security/authorization messages (private).
    pub const AUTHPRIV: Facility = Facility(10);
    /// 13, log audit.
    pub const LOG_AUDIT: Facility = Facility(13);
    /// 14, log alert.
    pub const LOG_ALERT: Facility = Facility(14);
    /// 16, local use 0 (`local1`..`local7` are 17-23).
    pub const LOCAL0: Facility = Facility(16);

    /// `None` unless `code` is 0-23.
    pub fn new(code: u8) -> Option<Self> {
        (code <= 23).then_some(Facility(code))
    }

    pub fn code(self) -> u8 {
        self.0
    }
}

/// IANA private enterprise number 32473, reserved for documentation
/// (RFC 5612). Set your organisation's own number in production.
pub const EXAMPLE_ENTERPRISE_NUMBER: u32 = 32473;

/// RFC 5424 encoder.
#[derive(Debug, Clone)]
pub struct Rfc5424 {
    pub payload: Payload,
    /// APP-NAME, default `enforcer`.
    pub app_name: String,
    /// Default [`Facility::LOG_AUDIT`].
    pub facility: Facility,
    /// HOSTNAME; `None` uses the event's `host.name`.
    pub hostname: Option<String>,
    /// PROCID (e.g. the enforcer's pid); `None` writes the NILVALUE.
    pub procid: Option<String>,
    /// The structured-data id is `enforcer@<enterprise_number>`.
    pub enterprise_number: u32,
    /// For the CEF payload's header.
    pub product: Product,
}

impl Default for Rfc5424 {
    fn default() -> Self {
        Self {
            payload: Payload::Native,
            app_name: "enforcer".into(),
            facility: Facility::LOG_AUDIT,
            hostname: None,
            procid: None,
            enterprise_number: EXAMPLE_ENTERPRISE_NUMBER,
            product: Product::default(),
        }
    }
}

pub const MAX_HOSTNAME: usize = 255;
pub const MAX_APP_NAME: usize = 48;
pub const MAX_PROCID: usize = 128;
pub const MAX_MSGID: usize = 32;
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// A header field: printable US-ASCII only (others become `_`), at most
/// `max` characters, `-` when empty.
pub fn header_field(s: &str, max: usize, out: &mut String) {
    if s.is_empty() {
        out.push('-');
        return;
    }
    for c in s.chars().take(max) {
        out.push(if ('!'..='~').contains(&c) { c } else { '_' });
    }
}

/// Appends an SD-PARAM value with `"`, `\` and `]` escaped.
pub fn escape_param_value(s: &str, out: &mut String) {
    for c in s.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
}

/// Whether `s` is a valid SD-NAME (SD-ID or PARAM-NAME): 1-32 printable
/// US-ASCII characters other than `=`, space, `]` and `"`.
pub fn is_sd_name(s: &str) -> bool {
    (1..=32).contains(&s.len())
        && s.bytes()
            .all(|b| (33..=126).contains(&b) && !matches!(b, b'=' | b']' | b'"'))
}

impl Encoder for Rfc5424 {
    fn name(&self) -> &'static str {
        match self.payload {
            Payload::Native => "syslog-native",
            Payload::Cef => "syslog-cef",
        }
    }

    fn record_kind(&self) -> RecordKind {
        RecordKind::Text
    }

    fn encode(&self, ev: &SecurityEvent, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let start = out.len();
        out.extend_from_slice(self.header(ev).as_bytes());
        out.push(b' ');
        out.extend_from_slice(BOM);
        let res = match self.payload {
            Payload::Native => NativeJson.encode(ev, out),
            Payload::Cef => Cef {
                product: self.product.clone(),
            }
            .encode(ev, out),
        };
        if res.is_err() {
            out.truncate(start);
        }
        res
    }
}

impl Rfc5424 {
    /// The structured-data id, `enforcer@<enterprise number>`.
    pub fn sd_id(&self) -> String {
        format!("enforcer@{}", self.enterprise_number)
    }

    /// Everything before MSG: HEADER SP STRUCTURED-DATA.
    fn header(&self, ev: &SecurityEvent) -> String {
        let mut s = String::with_capacity(256);
        let pri = u32::from(self.facility.code()) * 8 + u32::from(ev.severity.syslog_severity());
        let _ = write!(s, "<{pri}>1 ");
        let ts = ev.time.to_rfc3339();
        // `YYYY-MM-DDTHH:MM:SS.` + 6 of the 9 digits + `Z`.
        s.push_str(ts.get(..26).unwrap_or(&ts));
        s.push_str("Z ");
        header_field(
            self.hostname.as_deref().unwrap_or(&ev.host.name),
            MAX_HOSTNAME,
            &mut s,
        );
        s.push(' ');
        header_field(&self.app_name, MAX_APP_NAME, &mut s);
        s.push(' ');
        header_field(self.procid.as_deref().unwrap_or(""), MAX_PROCID, &mut s);
        s.push(' ');
        header_field(&format!("{}-{}", ev.class, ev.verdict), MAX_MSGID, &mut s);
        s.push(' ');
        s.push('[');
        s.push_str(&self.sd_id());
        for (name, value) in sd_params(ev) {
            s.push(' ');
            s.push_str(name);
            s.push_str("=\"");
            escape_param_value(&value, &mut s);
            s.push('"');
        }
        s.push(']');
        s
    }
}

/// The structured-data parameters, in order. `attack` repeats, once per
/// ATT&CK technique (RFC 5424 allows repeated PARAM-NAMEs).
pub fn sd_params(ev: &SecurityEvent) -> Vec<(&'static str, String)> {
    let mut p: Vec<(&'static str, String)> = vec![
        ("id", ev.id.to_string()),
        ("verdict", ev.verdict.as_str().into()),
        ("class", ev.class.as_str().into()),
        ("operation", ev.operation.clone()),
        ("severity", ev.severity.as_str().into()),
    ];
    if let Some(v) = &ev.policy {
        p.push(("policy", v.clone()));
    }
    if let Some(v) = &ev.rule {
        p.push(("rule", v.clone()));
    }
    for t in ev.attack_techniques() {
        p.push(("attack", t.into()));
    }
    if let Some(proc_) = &ev.process {
        p.push(("pid", proc_.tgid.to_string()));
        p.push(("uid", proc_.uid.to_string()));
        if let Some(exe) = &proc_.exe {
            p.push(("exe", exe.escaped().into_owned()));
        }
    }
    if let Some(c) = &ev.container {
        p.push(("container", c.id.clone()));
    }
    if let Some(k) = &ev.kubernetes {
        p.push(("k8s_namespace", k.namespace.clone()));
        p.push(("k8s_pod", k.pod_name.clone()));
    }
    match &ev.target {
        Some(Target::File(f)) => p.push(("path", f.path.escaped().into_owned())),
        Some(Target::Exec(e)) => p.push(("path", e.path.escaped().into_owned())),
        Some(Target::Network(n)) => {
            if let Some(ip) = n.src_ip {
                p.push(("src_ip", ip.to_string()));
            }
            if let Some(port) = n.src_port {
                p.push(("src_port", port.to_string()));
            }
            if let Some(ip) = n.dst_ip {
                p.push(("dst_ip", ip.to_string()));
            }
            if let Some(port) = n.dst_port {
                p.push(("dst_port", port.to_string()));
            }
            if let Some(path) = &n.unix_path {
                p.push(("unix_path", path.escaped().into_owned()));
            }
        }
        Some(Target::Kernel(k)) => p.push(("kernel_op", k.operation.clone())),
        None => {}
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::Framing;
    use crate::event::tests::{full_event, minimal_event, nasty_event};
    use crate::severity::Severity;

    fn encode(enc: &Rfc5424, ev: &SecurityEvent) -> String {
        let mut out = Vec::new();
        enc.encode(ev, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn with_version(s: &str) -> String {
        s.replace("|0.1.0|", &format!("|{}|", env!("CARGO_PKG_VERSION")))
    }

    #[test]
    fn exact_output_native_payload_with_nasty_strings() {
        assert_eq!(encode(&Rfc5424::default(), &nasty_event()), "<106>1 2024-06-10T06:13:20.999999Z node|a=b enforcer - exec-denied [enforcer@32473 id=\"01J00CF7Z7000000000000001A\" verdict=\"denied\" class=\"exec\" operation=\"exec\" severity=\"critical\" policy=\"p|1\" rule=\"r=1\" attack=\"T1059.004\" attack=\"T1611\" pid=\"7\" uid=\"0\" exe=\"/tmp/\\\\xff=x\" path=\"/tmp/e\\\\\\\\vil\n\"] \u{feff}{\"schema_version\":1,\"id\":\"01J00CF7Z7000000000000001A\",\"time\":\"2024-06-10T06:13:20.999999999Z\",\"host\":{\"name\":\"node|a=b\"},\"verdict\":\"denied\",\"class\":\"exec\",\"operation\":\"exec\",\"severity\":\"critical\",\"policy\":\"p|1\",\"rule\":\"r=1\",\"message\":\"sh -c \\\"x|y=z]\\\" \\\\ line1\\r\\nline2\",\"tags\":[\"T1059.004\",\"T1611\"],\"process\":{\"pid\":7,\"tgid\":7,\"uid\":0,\"gid\":0,\"comm\":\"a]b\\\"c\",\"exe\":\"/tmp/\\\\xff=x\"},\"target\":{\"exec\":{\"path\":\"/tmp/e\\\\\\\\vil\\n\",\"argv\":[\"sh\",\"-c\",\"a=b | c]\"]}}}");
    }

    #[test]
    fn exact_output_cef_payload() {
        let enc = Rfc5424 {
            payload: Payload::Cef,
            ..Rfc5424::default()
        };
        assert_eq!(encode(&enc, &full_event()), with_version("<107>1 2024-06-10T06:13:20.123456Z node-a enforcer - file-denied [enforcer@32473 id=\"01J00CF73VJ8FPZRABEMWW3PPA\" verdict=\"denied\" class=\"file\" operation=\"open\" severity=\"high\" policy=\"baseline\" rule=\"no-shadow-read\" attack=\"T1003.008\" pid=\"4240\" uid=\"1000\" exe=\"/usr/bin/cat\" container=\"3f2a\" k8s_namespace=\"default\" k8s_pod=\"web-0\" path=\"/etc/shadow\"] \u{feff}CEF:0|enforcer|enforcer|0.1.0|baseline/no-shadow-read|read of /etc/shadow denied|8|rt=1718000000123 externalId=01J00CF73VJ8FPZRABEMWW3PPA dvchost=node-a act=denied outcome=failure cat=file/open msg=read of /etc/shadow denied spid=4240 sproc=/usr/bin/cat suid=1000 suser=alice filePath=/etc/shadow fname=shadow filePermission=0640 cs1Label=policy cs1=baseline cs2Label=rule cs2=no-shadow-read cs3Label=mitreAttack cs3=T1003.008 cs4Label=containerId cs4=3f2a cs5Label=kubernetesPod cs5=default/web-0 cs6Label=execId cs6=bm9kZS1hOjUwMDA6NDI0MA cn1Label=cgroupId cn1=1234"));
    }

    #[test]
    fn msg_starts_with_a_bom_after_the_structured_data() {
        let out = encode(&Rfc5424::default(), &minimal_event());
        assert_eq!(
            out,
            "<109>1 2024-06-10T06:13:20.000000Z node-a enforcer - exec-audited [enforcer@32473 id=\"01J00CF7000000000000000001\" verdict=\"audited\" class=\"exec\" operation=\"exec\" severity=\"low\"] \u{feff}{\"schema_version\":1,\"id\":\"01J00CF7000000000000000001\",\"time\":\"2024-06-10T06:13:20.000000000Z\",\"host\":{\"name\":\"node-a\"},\"verdict\":\"audited\",\"class\":\"exec\",\"operation\":\"exec\",\"severity\":\"low\",\"message\":\"\"}"
        );
        let bom = out.find("] ").unwrap() + 2;
        assert_eq!(&out.as_bytes()[bom..bom + 3], b"\xEF\xBB\xBF");
    }

    #[test]
    fn pri_is_facility_times_eight_plus_severity() {
        let mut ev = minimal_event();
        for (facility, sev, pri) in [
            (Facility::LOG_AUDIT, Severity::Info, "<110>"),
            (Facility::LOG_AUDIT, Severity::Critical, "<106>"),
            (Facility::AUTH, Severity::High, "<35>"),
            (Facility::new(0).unwrap(), Severity::Critical, "<2>"),
            (Facility::new(23).unwrap(), Severity::Info, "<190>"),
        ] {
            ev.severity = sev;
            let enc = Rfc5424 {
                facility,
                ..Rfc5424::default()
            };
            assert!(encode(&enc, &ev).starts_with(&format!("{pri}1 ")), "{sev}");
        }
        assert_eq!(Facility::new(24), None);
    }

    #[test]
    fn header_fields_are_sanitized_truncated_or_nil() {
        let enc = Rfc5424 {
            app_name: "my app é".repeat(10),
            hostname: Some(String::new()),
            procid: Some("p".repeat(200)),
            ..Rfc5424::default()
        };
        let out = encode(&enc, &minimal_event());
        let fields: Vec<&str> = out.splitn(7, ' ').collect();
        assert_eq!(fields[2], "-", "empty HOSTNAME is the NILVALUE");
        assert_eq!(fields[3].len(), MAX_APP_NAME);
        assert!(fields[3].starts_with("my_app__my_app"), "{}", fields[3]);
        assert_eq!(fields[4].len(), MAX_PROCID);
        assert_eq!(fields[5], "exec-audited");

        let mut s = String::new();
        header_field(&"h".repeat(300), MAX_HOSTNAME, &mut s);
        assert_eq!(s.len(), 255);
    }

    #[test]
    fn sd_escaping() {
        let mut s = String::new();
        escape_param_value("a\"b\\c]d=e\nf", &mut s);
        assert_eq!(s, "a\\\"b\\\\c\\]d=e\nf");
    }

    #[test]
    fn sd_names_are_valid() {
        assert!(is_sd_name(&Rfc5424::default().sd_id()));
        let mut ev = full_event();
        ev.tags.push("T1059".into());
        let names: Vec<&str> = sd_params(&ev).into_iter().map(|(n, _)| n).collect();
        for ev in [nasty_event(), minimal_event()] {
            for (name, _) in sd_params(&ev) {
                assert!(is_sd_name(name), "{name}");
            }
        }
        for name in names {
            assert!(is_sd_name(name), "{name}");
        }
        for bad in ["", "a=b", "a b", "a]", "a\"", "é", &"x".repeat(33)] {
            assert!(!is_sd_name(bad), "{bad}");
        }
    }

    #[test]
    fn records_with_newlines_need_octet_counting() {
        let enc = Rfc5424::default();
        let evs = [nasty_event()];
        let mut out = Vec::new();
        let res = enc.encode_batch(&evs, Framing::Lines, &mut out);
        assert!(matches!(res[0], Err(EncodeError::NewlineInRecord { .. })));
        let mut out = Vec::new();
        let res = enc.encode_batch(&evs, Framing::OctetCounting, &mut out);
        let range = res[0].as_ref().unwrap().clone();
        assert!(out.starts_with(format!("{} <106>1 ", range.len()).as_bytes()));
    }
}

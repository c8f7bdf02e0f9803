//! rsyslog as a real syslog receiver: RFC 6587 octet counting over TCP,
//! and RFC 5425 over TLS with a CA generated here and a client certificate
//! (rsyslog requires one: mutual TLS). Skipped (with a message) when
//! `rsyslogd` is not installed (Debian: `rsyslog`, `rsyslog-gnutls`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use siem_export::config::{SinkConfig, SinkKind};
use siem_export::encode::syslog::{Payload, Rfc5424};
use siem_export::encode::Encoder;
use siem_export::net::syslog::{SyslogConfig, SyslogPayload};
use siem_export::net::TlsConfig;
use siem_export::secret::SecretSource;
use support::events;

fn rsyslogd() -> Option<PathBuf> {
    let out = Command::new("sh")
        .args(["-c", "command -v rsyslogd"])
        .output()
        .ok()?;
    let p = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (!p.is_empty()).then(|| PathBuf::from(p))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Rsyslog {
    child: Child,
    out: PathBuf,
    port: u16,
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Rsyslog {
    fn start(bin: &Path, dir: &Path, tls: Option<(&Path, &Path, &Path)>) -> Self {
        let port = free_port();
        let out = dir.join("received.log");
        let (global, module) = match tls {
            None => (String::new(), r#"module(load="imtcp")"#.to_owned()),
            Some((ca, cert, key)) => (
                format!(
                    r#"global(DefaultNetstreamDriver="gtls" DefaultNetstreamDriverCAFile="{}" DefaultNetstreamDriverCertFile="{}" DefaultNetstreamDriverKeyFile="{}")"#,
                    ca.display(),
                    cert.display(),
                    key.display()
                ),
                r#"module(load="imtcp" StreamDriver.Name="gtls" StreamDriver.Mode="1" StreamDriver.AuthMode="x509/certvalid")"#
                    .to_owned(),
            ),
        };
        let conf = format!(
            r#"global(workDirectory="{dir}")
{global}
{module}
template(name="raw" type="string" string="%rawmsg%\n")
input(type="imtcp" address="127.0.0.1" port="{port}")
action(type="omfile" file="{out}" template="raw")
"#,
            dir = dir.display(),
            out = out.display()
        );
        let conf_path = dir.join("rsyslog.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = Command::new(bin)
            .arg("-n")
            .arg("-f")
            .arg(&conf_path)
            .arg("-i")
            .arg(dir.join("rsyslog.pid"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let end = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < end, "rsyslogd did not start listening");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, out, port }
    }

    fn wait_lines(&self, n: usize) -> Vec<String> {
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            let text = std::fs::read_to_string(&self.out).unwrap_or_default();
            let lines: Vec<String> = text.lines().map(str::to_owned).collect();
            if lines.len() >= n || Instant::now() > end {
                return lines;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn expected(payload: Payload, n: u64) -> Vec<String> {
    let enc = Rfc5424 {
        payload,
        ..Rfc5424::default()
    };
    events(0..n)
        .iter()
        .map(|e| {
            let mut out = Vec::new();
            enc.encode(e, &mut out).unwrap();
            String::from_utf8(out).unwrap()
        })
        .collect()
}

async fn send_all(cfg: SyslogConfig, n: u64) {
    let sink = SinkConfig {
        name: "syslog".into(),
        kind: SinkKind::Syslog(cfg),
        filter: Default::default(),
        batch: Default::default(),
        retry: Default::default(),
    };
    let mut rt = sink.build().unwrap();
    let evs = events(0..n);
    // Two batches over one connection.
    let half = evs.len() / 2;
    for part in [&evs[..half], &evs[half..]] {
        let r = rt.sink.send(part).await;
        assert!(r.all_delivered(), "{r:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsyslog_over_tcp_with_octet_counting() {
    let Some(bin) = rsyslogd() else {
        println!("skipped: rsyslogd not installed");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let rs = Rsyslog::start(&bin, dir.path(), None);
    let mut cfg = SyslogConfig::new(format!("127.0.0.1:{}", rs.port));
    cfg.payload = SyslogPayload::Cef;
    send_all(cfg, 20).await;
    let got = rs.wait_lines(20);
    assert_eq!(
        got,
        expected(Payload::Cef, 20),
        "records arrive intact and in order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsyslog_over_mutual_tls() {
    let Some(bin) = rsyslogd() else {
        println!("skipped: rsyslogd not installed");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);

    // A CA, a server certificate for localhost, a client certificate.
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "test CA");
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issue = |names: Vec<String>, cn: &str| {
        let mut params = rcgen::CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (srv_cert, srv_key) = issue(vec!["localhost".into()], "localhost");
    let (cli_cert, cli_key) = issue(vec!["enforcer.test".into()], "enforcer");
    std::fs::write(p("ca.pem"), ca.pem()).unwrap();
    std::fs::write(p("server.pem"), srv_cert).unwrap();
    std::fs::write(p("server.key"), srv_key).unwrap();
    std::fs::write(p("client.pem"), cli_cert).unwrap();
    std::fs::write(p("client.key"), cli_key).unwrap();

    let rs = Rsyslog::start(
        &bin,
        dir.path(),
        Some((&p("ca.pem"), &p("server.pem"), &p("server.key"))),
    );
    let mut cfg = SyslogConfig::new(format!("127.0.0.1:{}", rs.port));
    cfg.tls = Some(TlsConfig {
        ca_file: Some(p("ca.pem")),
        only_ca_file: true,
        client_cert: Some(p("client.pem")),
        client_key: Some(SecretSource::File(p("client.key"))),
        server_name: Some("localhost".into()),
    });
    send_all(cfg.clone(), 20).await;
    let got = rs.wait_lines(20);
    assert_eq!(got, expected(Payload::Native, 20));

    // A server certificate the client does not trust is refused.
    let mut wrong = cfg;
    wrong.tls.as_mut().unwrap().server_name = Some("elsewhere.test".into());
    let sink = SinkConfig {
        name: "syslog".into(),
        kind: SinkKind::Syslog(wrong),
        filter: Default::default(),
        batch: Default::default(),
        retry: Default::default(),
    };
    let mut rt = sink.build().unwrap();
    let r = rt.sink.send(&events(0..1)).await;
    assert!(
        matches!(&r.deliveries[0], siem_export::Delivery::Retryable { reason, .. } if reason.contains("tls handshake")),
        "{r:?}"
    );
}

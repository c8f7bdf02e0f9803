//! Syslog over TCP (RFC 6587) or TLS (RFC 5425): RFC 5424 messages with
//! octet-counting framing (`LEN SP MSG`), carrying the native JSON event or
//! a CEF record.
//!
//! Syslog has no acknowledgement: an event counts as delivered once its
//! bytes are written to the connection and flushed. Before each batch the
//! connection is checked (a peer that closed it is noticed and the sink
//! reconnects); a write error drops the connection and the whole batch is
//! retried. Bytes the kernel accepted just before the receiver died can
//! still be lost: that is the limit of the protocol, not of the outbox.

use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::ServerName;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::{rustls, TlsConnector};

use super::TlsConfig;
use crate::encode::syslog::{Facility, Payload, Rfc5424};
use crate::encode::{Encoder, Framing};
use crate::event::SecurityEvent;
use crate::sink::{AsyncSink, BatchReport, Delivery, SendFuture, SinkError};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyslogPayload {
    #[default]
    Native,
    Cef,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogConfig {
    /// `host:port` of the receiver (RFC 6587 plain TCP usually 514 or 601,
    /// RFC 5425 TLS 6514).
    pub address: String,
    /// Use TLS (RFC 5425) with these settings; unset: plain TCP.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// MSG: the native JSON event (default) or a CEF record.
    #[serde(default)]
    pub payload: SyslogPayload,
    /// Facility code 0-23 (default 13, log audit).
    #[serde(default = "default_facility")]
    pub facility: u8,
    /// APP-NAME (default `enforcer`).
    #[serde(default = "default_app_name")]
    pub app_name: String,
    /// HOSTNAME; unset: the event's `host.name`.
    #[serde(default)]
    pub hostname: Option<String>,
    /// IANA private enterprise number for the structured-data id.
    #[serde(default)]
    pub enterprise_number: Option<u32>,
    /// Connect and write timeout, ms (default 10000).
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
}

fn default_facility() -> u8 {
    13
}
fn default_app_name() -> String {
    "enforcer".into()
}
fn default_timeout() -> u64 {
    10_000
}

impl SyslogConfig {
    pub fn new(address: impl Into<String>) -> Self {
        Self {
            address: address.into(),
            tls: None,
            payload: SyslogPayload::Native,
            facility: default_facility(),
            app_name: default_app_name(),
            hostname: None,
            enterprise_number: None,
            timeout_ms: default_timeout(),
        }
    }
}

enum Conn {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Conn {
    fn tcp(&self) -> &TcpStream {
        match self {
            Conn::Plain(s) => s,
            Conn::Tls(s) => s.get_ref().0,
        }
    }

    /// False when the peer closed the connection (or sent something, which
    /// a syslog receiver never does except to say goodbye).
    fn looks_alive(&self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.tcp().try_read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
    }

    async fn write_all(&mut self, data: &[u8]) -> std::io::Result<()> {
        match self {
            Conn::Plain(s) => {
                s.write_all(data).await?;
                s.flush().await
            }
            Conn::Tls(s) => {
                s.write_all(data).await?;
                s.flush().await
            }
        }
    }
}

pub struct SyslogSink {
    address: String,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    encoder: Rfc5424,
    timeout: Duration,
    conn: Option<Conn>,
    last_answer: Option<String>,
}

impl SyslogSink {
    pub fn new(cfg: &SyslogConfig) -> Result<Self, SinkError> {
        let facility = Facility::new(cfg.facility).ok_or_else(|| {
            SinkError::Config(format!("syslog facility {} is not 0-23", cfg.facility))
        })?;
        let host = cfg
            .address
            .rsplit_once(':')
            .map(|(h, _)| h.trim_start_matches('[').trim_end_matches(']'))
            .ok_or_else(|| {
                SinkError::Config(format!("syslog address `{}` is not host:port", cfg.address))
            })?;
        let tls = match &cfg.tls {
            None => None,
            Some(t) => {
                let name = t.server_name.clone().unwrap_or_else(|| host.to_owned());
                let server = ServerName::try_from(name.clone()).map_err(|_| {
                    SinkError::Config(format!("syslog tls server name `{name}` is invalid"))
                })?;
                let cfg: Arc<rustls::ClientConfig> = t.rustls_config()?;
                Some((TlsConnector::from(cfg), server))
            }
        };
        let mut encoder = Rfc5424 {
            payload: match cfg.payload {
                SyslogPayload::Native => Payload::Native,
                SyslogPayload::Cef => Payload::Cef,
            },
            app_name: cfg.app_name.clone(),
            facility,
            hostname: cfg.hostname.clone(),
            ..Rfc5424::default()
        };
        if let Some(pen) = cfg.enterprise_number {
            encoder.enterprise_number = pen;
        }
        Ok(Self {
            address: cfg.address.clone(),
            tls,
            encoder,
            timeout: Duration::from_millis(cfg.timeout_ms),
            conn: None,
            last_answer: None,
        })
    }

    async fn connect(&self) -> Result<Conn, String> {
        let tcp = tokio::time::timeout(self.timeout, TcpStream::connect(&self.address))
            .await
            .map_err(|_| "connect: timed out".to_owned())?
            .map_err(|e| format!("connect: {e}"))?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => Ok(Conn::Plain(tcp)),
            Some((connector, name)) => {
                let s = tokio::time::timeout(self.timeout, connector.connect(name.clone(), tcp))
                    .await
                    .map_err(|_| "tls handshake: timed out".to_owned())?
                    .map_err(|e| format!("tls handshake: {e}"))?;
                Ok(Conn::Tls(Box::new(s)))
            }
        }
    }

    async fn send_batch(&mut self, events: &[SecurityEvent]) -> BatchReport {
        let mut out: Vec<Option<Delivery>> = vec![None; events.len()];
        let mut body = Vec::with_capacity(events.len() * 1200);
        let results = self
            .encoder
            .encode_batch(events, Framing::OctetCounting, &mut body);
        let mut sent = Vec::new();
        for (i, r) in results.into_iter().enumerate() {
            match r {
                Ok(_) => sent.push(i),
                Err(e) => out[i] = Some(Delivery::permanent(e.to_string())),
            }
        }
        if !sent.is_empty() {
            if self.conn.as_ref().is_some_and(|c| !c.looks_alive()) {
                tracing::debug!(address = %self.address, "syslog receiver closed the connection; reconnecting");
                self.conn = None;
            }
            let outcome = match self.conn.take() {
                Some(c) => Ok(c),
                None => self.connect().await,
            };
            let outcome = match outcome {
                Err(e) => Delivery::retryable(e),
                Ok(mut conn) => {
                    match tokio::time::timeout(self.timeout, conn.write_all(&body)).await {
                        Ok(Ok(())) => {
                            self.conn = Some(conn);
                            Delivery::Delivered
                        }
                        Ok(Err(e)) => Delivery::retryable(format!("write: {e}")),
                        Err(_) => Delivery::retryable("write: timed out"),
                    }
                }
            };
            self.last_answer = Some(match &outcome {
                Delivery::Delivered => format!("{} bytes written to {}", body.len(), self.address),
                other => format!("{other:?}"),
            });
            for i in sent {
                out[i] = Some(outcome.clone());
            }
        }
        BatchReport::from_partial(out)
    }
}

impl AsyncSink for SyslogSink {
    fn describe(&self) -> String {
        let proto = if self.tls.is_some() {
            "syslog+tls"
        } else {
            "syslog+tcp"
        };
        format!("{proto}:{}", self.address)
    }

    fn send<'a>(&'a mut self, events: &'a [SecurityEvent]) -> SendFuture<'a> {
        Box::pin(self.send_batch(events))
    }

    fn last_answer(&self) -> Option<String> {
        self.last_answer.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_validation() {
        assert!(SyslogSink::new(&SyslogConfig::new("no-port")).is_err());
        let mut c = SyslogConfig::new("127.0.0.1:6514");
        c.facility = 24;
        assert!(SyslogSink::new(&c).is_err());
        c.facility = 4;
        c.tls = Some(TlsConfig::default());
        let s = SyslogSink::new(&c).unwrap();
        assert_eq!(s.describe(), "syslog+tls:127.0.0.1:6514");
    }
}

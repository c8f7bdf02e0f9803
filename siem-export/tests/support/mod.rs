//! Test helpers: a controllable HTTP/1.1 receiver on loopback, event
//! builders, and a Standard Webhooks verifier written the way a consumer
//! would write it.
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use siem_export::event::{EventClass, Verdict};
use siem_export::{EventId, SecurityEvent, Severity, Timestamp};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A deterministic event: id tail `n`, message `event n`.
pub fn event(n: u64, verdict: Verdict) -> SecurityEvent {
    let t = Timestamp::from_unix_nanos(1_750_000_000_000_000_000 + n as i64 * 1_000_000);
    let mut ev = SecurityEvent::new(
        t,
        "node-a",
        verdict,
        EventClass::File,
        "open",
        Severity::High,
    );
    ev.id = EventId::from_time_and_tail(t, u128::from(n) + 1);
    ev.policy = Some("baseline".into());
    ev.rule = Some("no-shadow-read".into());
    ev.message = format!("event {n}");
    ev
}

pub fn events(range: std::ops::Range<u64>) -> Vec<SecurityEvent> {
    range.map(|n| event(n, Verdict::Denied)).collect()
}

#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
    pub at: Instant,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn ok() -> Self {
        Self::status(200, "{}")
    }
    pub fn status(status: u16, body: &str) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: body.as_bytes().to_vec(),
        }
    }
    pub fn with_header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.into(), v.into()));
        self
    }
}

/// What the receiver does with the next request.
#[derive(Debug, Clone)]
pub enum Action {
    /// Answer this.
    Reply(Response),
    /// Wait, then answer.
    Delay(Duration, Response),
    /// Read the request, then close the connection without answering.
    Drop,
}

pub type Responder = Arc<dyn Fn(&Request) -> Response + Send + Sync>;

#[derive(Default)]
pub struct State {
    /// Consumed first, one per request.
    pub script: VecDeque<Action>,
    /// After the script: computed from the request (default 200 `{}`).
    pub responder: Option<Responder>,
    /// Every request read completely (including dropped ones).
    pub received: Vec<Request>,
    /// Requests that got a 2xx answer written.
    pub accepted: Vec<Request>,
    /// Delay before every default answer.
    pub delay: Duration,
}

pub struct Receiver {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<State>>,
    task: Option<JoinHandle<()>>,
}

impl Receiver {
    pub async fn start() -> Self {
        Self::start_with(Arc::new(Mutex::new(State::default())), 0).await
    }

    async fn start_with(state: Arc<Mutex<State>>, port: u16) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let st = Arc::clone(&state);
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    break;
                };
                conns.spawn(serve(sock, Arc::clone(&st)));
            }
        });
        Self {
            addr,
            state,
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Goes away: the listener and every open connection close.
    /// Goes away: once this returns the port refuses connections (the listener is dropped
    /// with its task, which an abort alone only schedules).
    pub async fn stop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = t.await;
        }
    }

    /// Comes back on the same port, keeping what it received.
    pub async fn restart(&mut self) {
        self.stop().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let again = Self::start_with(Arc::clone(&self.state), self.addr.port()).await;
        *self = again;
    }

    pub fn push(&self, a: Action) {
        self.state.lock().unwrap().script.push_back(a);
    }

    pub fn set_responder(&self, r: impl Fn(&Request) -> Response + Send + Sync + 'static) {
        self.state.lock().unwrap().responder = Some(Arc::new(r));
    }

    pub fn received(&self) -> Vec<Request> {
        self.state.lock().unwrap().received.clone()
    }

    pub fn accepted(&self) -> Vec<Request> {
        self.state.lock().unwrap().accepted.clone()
    }

    /// Event ids in the JSON-array bodies of accepted requests, with
    /// repetitions.
    pub fn accepted_ids(&self) -> Vec<String> {
        self.accepted()
            .iter()
            .flat_map(|r| {
                let v: Vec<serde_json::Value> = serde_json::from_slice(&r.body).unwrap();
                v.into_iter().map(|e| e["id"].as_str().unwrap().to_owned())
            })
            .collect()
    }

    /// Waits until `cond` holds, at most `limit`.
    pub async fn wait_for(&self, limit: Duration, mut cond: impl FnMut(&State) -> bool) -> bool {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if cond(&self.state.lock().unwrap()) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

async fn read_request(sock: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Request> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let mut lines = head.split("\r\n");
            let mut first = lines.next()?.split(' ');
            let method = first.next()?.to_owned();
            let path = first.next()?.to_owned();
            let mut headers = HashMap::new();
            for l in lines {
                let (k, v) = l.split_once(':')?;
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
            }
            let len: usize = headers
                .get("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                let mut chunk = [0u8; 65536];
                let n = sock.read(&mut chunk).await.ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let body = buf[end + 4..end + 4 + len].to_vec();
            buf.drain(..end + 4 + len);
            return Some(Request {
                method,
                path,
                headers,
                body,
                at: Instant::now(),
            });
        }
        let mut chunk = [0u8; 65536];
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn serve(mut sock: TcpStream, state: Arc<Mutex<State>>) {
    let mut buf = Vec::new();
    while let Some(req) = read_request(&mut sock, &mut buf).await {
        let (action, delay) = {
            let mut st = state.lock().unwrap();
            st.received.push(req.clone());
            let action = match st.script.pop_front() {
                Some(a) => a,
                None => Action::Reply(match &st.responder {
                    Some(r) => r(&req),
                    None => Response::ok(),
                }),
            };
            (action, st.delay)
        };
        let resp = match action {
            Action::Drop => return,
            Action::Reply(r) => {
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                r
            }
            Action::Delay(d, r) => {
                tokio::time::sleep(d).await;
                r
            }
        };
        let mut out = format!(
            "HTTP/1.1 {} X\r\ncontent-length: {}\r\n",
            resp.status,
            resp.body.len()
        );
        for (k, v) in &resp.headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&resp.body);
        if sock.write_all(&bytes).await.is_err() {
            return;
        }
        if (200..300).contains(&resp.status) {
            state.lock().unwrap().accepted.push(req);
        }
    }
}

/// Verifies a Standard Webhooks request the way a consumer does: decode
/// the `whsec_` secret, sign `id.timestamp.body`, accept if any `v1`
/// signature matches (constant-time), reject timestamps more than five
/// minutes off.
pub fn verify_webhook(secret: &str, req: &Request) -> Result<(), String> {
    use base64::Engine as _;
    use hmac::{Hmac, Mac};
    let b64 = base64::engine::general_purpose::STANDARD;
    let key = b64
        .decode(secret.strip_prefix("whsec_").ok_or("secret format")?)
        .map_err(|e| e.to_string())?;
    let id = req.header("webhook-id").ok_or("no webhook-id")?;
    let ts = req
        .header("webhook-timestamp")
        .ok_or("no webhook-timestamp")?;
    let sigs = req
        .header("webhook-signature")
        .ok_or("no webhook-signature")?;
    let ts_n: i64 = ts.parse().map_err(|_| "bad timestamp")?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    if (now - ts_n).abs() > 300 {
        return Err("timestamp out of tolerance".into());
    }
    for sig in sigs.split(' ') {
        let Some(v) = sig.strip_prefix("v1,") else {
            continue;
        };
        let Ok(expected) = b64.decode(v) else {
            continue;
        };
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
        mac.update(format!("{id}.{ts}.").as_bytes());
        mac.update(&req.body);
        if mac.verify_slice(&expected).is_ok() {
            return Ok(());
        }
    }
    Err("no signature matches".into())
}

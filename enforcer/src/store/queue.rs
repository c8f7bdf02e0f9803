//! The store writer's bounded queue, with two lanes: deny and kill verdicts
//! in one, every other verdict in the other. Issue #5: when something must
//! give, deny and kill events are kept in preference to audit events.
//!
//! When the queue holds `capacity` events:
//! * a deny or kill evicts the oldest queued allow/audit/alert event and
//!   takes its place; only when the queue holds nothing but deny/kill events
//!   is the new one refused;
//! * any other event is refused.
//!
//! The caller counts what [`Queue::push`] reports as lost. The writer thread
//! takes deny/kill events first.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use siem_export::event::Verdict;
use siem_export::SecurityEvent;

/// What [`Queue::push`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Submitted {
    Queued,
    /// Queued in place of the oldest queued event of lower priority, which
    /// is lost (its verdict).
    Evicted(Verdict),
    /// Not queued: full of events at least as important, or closed.
    Refused,
}

/// Why [`Queue::recv_timeout`] returned no event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Empty {
    Timeout,
    /// Closed and empty.
    Closed,
}

#[derive(Default)]
struct Lanes {
    high: VecDeque<SecurityEvent>,
    low: VecDeque<SecurityEvent>,
    closed: bool,
}

impl Lanes {
    fn len(&self) -> usize {
        self.high.len() + self.low.len()
    }
}

pub(crate) struct Queue {
    lanes: Mutex<Lanes>,
    ready: Condvar,
    capacity: usize,
}

fn is_high(v: Verdict) -> bool {
    matches!(v, Verdict::Denied | Verdict::Killed)
}

impl Queue {
    /// Events waiting for the writer thread.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    pub(crate) fn new(capacity: usize) -> Self {
        Queue {
            lanes: Mutex::new(Lanes::default()),
            ready: Condvar::new(),
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Lanes> {
        self.lanes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `event` without blocking; see the module documentation for a
    /// full queue.
    pub(crate) fn push(&self, event: SecurityEvent) -> Submitted {
        let high = is_high(event.verdict);
        let mut lanes = self.lock();
        if lanes.closed {
            return Submitted::Refused;
        }
        let mut outcome = Submitted::Queued;
        if lanes.len() >= self.capacity {
            if !high {
                return Submitted::Refused;
            }
            match lanes.low.pop_front() {
                Some(old) => outcome = Submitted::Evicted(old.verdict),
                None => return Submitted::Refused,
            }
        }
        if high {
            lanes.high.push_back(event);
        } else {
            lanes.low.push_back(event);
        }
        drop(lanes);
        self.ready.notify_one();
        outcome
    }

    /// No more events are accepted; the receiver still gets what is queued.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }

    /// The next event, deny/kill first, waiting up to `timeout`.
    pub(crate) fn recv_timeout(&self, timeout: Duration) -> Result<SecurityEvent, Empty> {
        let deadline = Instant::now() + timeout;
        let mut lanes = self.lock();
        loop {
            if let Some(ev) = lanes.high.pop_front().or_else(|| lanes.low.pop_front()) {
                return Ok(ev);
            }
            if lanes.closed {
                return Err(Empty::Closed);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Empty::Timeout);
            }
            lanes = self
                .ready
                .wait_timeout(lanes, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::event;

    #[test]
    fn a_deny_evicts_the_oldest_audit_event_of_a_full_queue() {
        let q = Queue::new(3);
        assert_eq!(q.push(event(1, Verdict::Audited)), Submitted::Queued);
        assert_eq!(q.push(event(2, Verdict::Allowed)), Submitted::Queued);
        assert_eq!(q.push(event(3, Verdict::Audited)), Submitted::Queued);
        assert_eq!(q.push(event(4, Verdict::Audited)), Submitted::Refused);
        assert_eq!(
            q.push(event(5, Verdict::Denied)),
            Submitted::Evicted(Verdict::Audited)
        );
        assert_eq!(
            q.push(event(6, Verdict::Killed)),
            Submitted::Evicted(Verdict::Allowed)
        );
        q.close();
        assert_eq!(q.push(event(7, Verdict::Denied)), Submitted::Refused);
        let mut got = Vec::new();
        while let Ok(ev) = q.recv_timeout(Duration::ZERO) {
            got.push(ev.verdict);
        }
        // Deny and kill first, then what is left of the rest.
        assert_eq!(got, [Verdict::Denied, Verdict::Killed, Verdict::Audited]);
        assert_eq!(q.recv_timeout(Duration::ZERO).err(), Some(Empty::Closed));
    }

    #[test]
    fn a_queue_full_of_denies_refuses_the_next_deny() {
        let q = Queue::new(2);
        assert_eq!(q.push(event(1, Verdict::Denied)), Submitted::Queued);
        assert_eq!(q.push(event(2, Verdict::Killed)), Submitted::Queued);
        assert_eq!(q.push(event(3, Verdict::Denied)), Submitted::Refused);
        assert!(q.recv_timeout(Duration::from_millis(1)).is_ok());
        assert_eq!(q.push(event(3, Verdict::Denied)), Submitted::Queued);
    }

    #[test]
    fn recv_times_out_on_an_empty_open_queue() {
        let q = Queue::new(1);
        let t = Instant::now();
        assert_eq!(
            q.recv_timeout(Duration::from_millis(30)).err(),
            Some(Empty::Timeout)
        );
        assert!(t.elapsed() >= Duration::from_millis(30));
    }
}

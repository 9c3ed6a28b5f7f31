//! Destinations and their open connections.
//!
//! A destination is where a route leads: the MX hosts of one domain, or
//! one relay route. Each has its own limit of connections at once
//! (`concurrency_per_destination`), a memory of being unreachable, and
//! idle connections kept for the next message (`connection_reuse_time`),
//! so a burst of mail to one place costs one connection — and one login —
//! per slot, not one per message.
//!
//! A destination whose every address refused or timed out is marked dead
//! for a while: messages for it are deferred at once with the last error
//! instead of each trying again (Postfix's destination throttling).
//! `postern queue flush` forgets it, as `postqueue -f` does.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use smol::lock::Semaphore;

use crate::outbound::Connection;

/// How long a destination that could not be reached is left alone.
pub const DEAD_FOR: Duration = Duration::from_secs(60);

/// One open connection, idle, with what it was opened for.
struct Idle {
    conn: Connection,
    key: ConnKey,
    since: Instant,
}

/// What a pooled connection must match: where, and with what TLS and login.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnKey {
    pub addr: SocketAddr,
    pub tls: crate::route::TlsPolicy,
    pub login: Option<String>,
}

pub struct Destination {
    pub limit: Arc<Semaphore>,
    idle: Mutex<Vec<Idle>>,
    /// Unreachable until then, and why.
    dead: Mutex<Option<(Instant, String)>>,
}

impl Destination {
    fn new(concurrency: usize) -> Destination {
        Destination {
            limit: Arc::new(Semaphore::new(concurrency.max(1))),
            idle: Mutex::new(Vec::new()),
            dead: Mutex::new(None),
        }
    }

    /// An idle connection opened with `key`, if one is still fresh.
    pub fn take(&self, key: &ConnKey, reuse: Duration) -> Option<Connection> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let i = idle.iter().position(|c| {
            c.key == *key && now.duration_since(c.since) < reuse && c.conn.is_open()
        })?;
        Some(idle.swap_remove(i).conn)
    }

    /// Keeps a connection for the next message; returns the ones that
    /// waited too long, for the caller to close.
    pub fn put(&self, key: ConnKey, conn: Connection, reuse: Duration) -> Vec<Connection> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let (keep, stale): (Vec<Idle>, Vec<Idle>) = std::mem::take(&mut *idle)
            .into_iter()
            .partition(|c| now.duration_since(c.since) < reuse);
        *idle = keep;
        if conn.is_open() {
            idle.push(Idle {
                conn,
                key,
                since: now,
            });
        }
        stale.into_iter().map(|c| c.conn).collect()
    }

    /// Connections idle for `reuse` or longer, taken out for closing.
    pub fn expired(&self, reuse: Duration) -> Vec<Connection> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let (keep, stale): (Vec<Idle>, Vec<Idle>) = std::mem::take(&mut *idle)
            .into_iter()
            .partition(|c| now.duration_since(c.since) < reuse);
        *idle = keep;
        stale.into_iter().map(|c| c.conn).collect()
    }

    pub fn idle_count(&self) -> usize {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Why it is unreachable, if it is still considered so.
    pub fn dead(&self) -> Option<String> {
        let d = self.dead.lock().unwrap_or_else(|e| e.into_inner());
        d.as_ref()
            .filter(|(until, _)| Instant::now() < *until)
            .map(|(_, why)| why.clone())
    }

    pub fn mark_dead(&self, why: &str) {
        *self.dead.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((Instant::now() + DEAD_FOR, why.to_string()));
    }

    pub fn mark_alive(&self) {
        *self.dead.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// Every destination by its key (`mx:example.test`, `route:relay-mail01`).
pub struct Destinations {
    map: Mutex<HashMap<String, Arc<Destination>>>,
    per_destination: usize,
}

impl Destinations {
    pub fn new(per_destination: usize) -> Destinations {
        Destinations {
            map: Mutex::new(HashMap::new()),
            per_destination,
        }
    }

    pub fn get(&self, key: &str) -> Arc<Destination> {
        let mut m = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if m.len() > 10_000 {
            // Bounded: forget destinations nobody uses now, with nothing idle.
            m.retain(|_, d| Arc::strong_count(d) > 1 || d.idle_count() > 0 || d.dead().is_some());
        }
        m.entry(key.to_string())
            .or_insert_with(|| Arc::new(Destination::new(self.per_destination)))
            .clone()
    }

    /// Forgets every destination's unreachability (a flush).
    pub fn revive(&self) {
        let all: Vec<Arc<Destination>> = self
            .map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        for d in all {
            d.mark_alive();
        }
    }

    /// Every destination's idle connections past `reuse`.
    pub fn expired(&self, reuse: Duration) -> Vec<Connection> {
        let all: Vec<Arc<Destination>> = self
            .map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        all.iter().flat_map(|d| d.expired(reuse)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flush_revives_dead_destinations() {
        let d = Destinations::new(1);
        d.get("route:filter")
            .mark_dead("connect to 127.0.0.1: Connection refused");
        assert!(d.get("route:filter").dead().is_some());
        d.revive();
        assert_eq!(d.get("route:filter").dead(), None);
    }
}

//! What the running server tells about itself: `postern status` (over the
//! control socket) and systemd's `STATUS=` line.
//!
//! One board per process, written by the parts that know (the listeners
//! at start and reload, the certificate loader, the queue runner after
//! each delivery attempt) and read when someone asks. Writers only take a
//! short lock; nothing here touches the disk.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Mutex, OnceLock};

use crate::clock::now_secs;
use crate::timefmt::rfc3339;

/// How one relay route (or MX destination, pipe transport, filter) fared
/// last.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteHealth {
    pub last_sent: Option<i64>,
    /// Time and text of the last deferral or bounce.
    pub last_error: Option<(i64, String)>,
    /// The last attempt failed.
    pub failing: bool,
}

#[derive(Default)]
struct Inner {
    config: String,
    loaded_at: i64,
    /// "127.0.0.1:25 (starttls)".
    listeners: Vec<String>,
    /// The certificate's file and end of validity.
    cert: Option<(String, i64)>,
    routes: BTreeMap<String, RouteHealth>,
    /// The last delivery error of any route: time, route, text.
    last_error: Option<(i64, String, String)>,
}

pub struct Board {
    started: i64,
    inner: Mutex<Inner>,
}

/// Routes remembered at most (an MX destination each): the oldest
/// quiet ones are forgotten first.
const MAX_ROUTES: usize = 200;

/// The process's board.
pub fn board() -> &'static Board {
    static BOARD: OnceLock<Board> = OnceLock::new();
    BOARD.get_or_init(|| Board {
        started: now_secs(),
        inner: Mutex::new(Inner::default()),
    })
}

impl Board {
    fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        f(&mut self.inner.lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub fn set_config(&self, source: &str) {
        self.with(|i| {
            i.config = source.to_string();
            i.loaded_at = now_secs();
        });
    }

    pub fn set_listeners(&self, listeners: Vec<String>) {
        self.with(|i| i.listeners = listeners);
    }

    pub fn set_certificate(&self, file: Option<(String, i64)>) {
        self.with(|i| i.cert = file);
    }

    /// One delivery attempt's result on `route`.
    pub fn delivery(&self, route: &str, sent: bool, text: &str) {
        let now = now_secs();
        self.with(|i| {
            if !i.routes.contains_key(route) && i.routes.len() >= MAX_ROUTES {
                let quiet = i
                    .routes
                    .iter()
                    .min_by_key(|(_, h)| h.last_sent.max(h.last_error.as_ref().map(|e| e.0)))
                    .map(|(k, _)| k.clone());
                if let Some(k) = quiet {
                    i.routes.remove(&k);
                }
            }
            let h = i.routes.entry(route.to_string()).or_default();
            h.failing = !sent;
            if sent {
                h.last_sent = Some(now);
            } else {
                h.last_error = Some((now, text.to_string()));
                i.last_error = Some((now, route.to_string(), text.to_string()));
            }
        });
    }

    pub fn snapshot(&self, queue: QueueCounts, sync: Option<SyncLine>) -> Snapshot {
        self.with(|i| Snapshot {
            version: env!("CARGO_PKG_VERSION").to_string(),
            pid: std::process::id(),
            started: self.started,
            now: now_secs(),
            config: i.config.clone(),
            loaded_at: i.loaded_at,
            listeners: i.listeners.clone(),
            queue,
            sync,
            routes: i.routes.clone(),
            cert: i.cert.clone(),
            last_error: i.last_error.clone(),
        })
    }

    /// systemd's one-line STATUS=.
    pub fn status_line(&self, queue: QueueCounts) -> String {
        self.with(|i| {
            let mut s = format!(
                "{} queued ({} active, {} deferred), {} held",
                queue.active + queue.deferred,
                queue.active,
                queue.deferred,
                queue.held
            );
            if let Some((t, route, text)) = &i.last_error {
                let _ = write!(
                    s,
                    "; last delivery error {} via {route}: {}",
                    rfc3339(*t),
                    first_line(text, 120)
                );
            }
            s
        })
    }
}

/// Messages in the queue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueCounts {
    /// Being delivered now.
    pub active: usize,
    /// Queued, waiting for their next attempt.
    pub deferred: usize,
    /// On hold.
    pub held: usize,
}

/// The mirror's last sync, as the directory records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncLine {
    pub source: String,
    pub last_success: Option<i64>,
    pub last_attempt: Option<i64>,
    pub last_error: String,
}

/// Everything `postern status` shows.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub version: String,
    pub pid: u32,
    pub started: i64,
    pub now: i64,
    pub config: String,
    pub loaded_at: i64,
    pub listeners: Vec<String>,
    pub queue: QueueCounts,
    pub sync: Option<SyncLine>,
    pub routes: BTreeMap<String, RouteHealth>,
    pub cert: Option<(String, i64)>,
    pub last_error: Option<(i64, String, String)>,
}

fn first_line(s: &str, max: usize) -> String {
    let l = s.lines().next().unwrap_or("");
    if l.chars().count() > max {
        let mut t: String = l.chars().take(max).collect();
        t.push('…');
        t
    } else {
        l.to_string()
    }
}

fn when(t: i64, now: i64) -> String {
    format!("{} ({} ago)", rfc3339(t), crate::import::ago(now - t))
}

impl Snapshot {
    /// For people: one topic per line, the name in a column of its own.
    pub fn text(&self) -> String {
        let now = self.now;
        let mut s = String::new();
        let mut line = |k: &str, v: String| {
            let _ = writeln!(s, "{k:<12}{v}");
        };
        line(
            "version",
            format!("postern {} (pid {})", self.version, self.pid),
        );
        line(
            "uptime",
            format!(
                "{} (since {})",
                crate::import::ago(now - self.started),
                rfc3339(self.started)
            ),
        );
        line(
            "config",
            format!("{} (loaded {})", self.config, rfc3339(self.loaded_at)),
        );
        line(
            "listeners",
            if self.listeners.is_empty() {
                "none".into()
            } else {
                self.listeners.join(", ")
            },
        );
        line(
            "queue",
            format!(
                "{} active, {} deferred, {} held",
                self.queue.active, self.queue.deferred, self.queue.held
            ),
        );
        line(
            "sync",
            match &self.sync {
                None => "not configured".into(),
                Some(y) => {
                    let mut v = match y.last_success {
                        Some(t) => format!("last success {} from {}", when(t, now), y.source),
                        None => format!("never synced from {}", y.source),
                    };
                    if !y.last_error.is_empty() {
                        let at = y
                            .last_attempt
                            .map(|t| format!(" at {}", rfc3339(t)))
                            .unwrap_or_default();
                        let _ = write!(
                            v,
                            "; last attempt{at} failed: {}",
                            first_line(&y.last_error, 160)
                        );
                    }
                    v
                }
            },
        );
        line(
            "certificate",
            match &self.cert {
                None => "no TLS".into(),
                Some((file, t)) if *t < now => format!("{file}: EXPIRED {}", rfc3339(*t)),
                Some((file, t)) => format!(
                    "{file}: valid until {} ({} days left)",
                    rfc3339(*t),
                    (t - now) / 86_400
                ),
            },
        );
        if self.routes.is_empty() {
            line("routes", "no delivery yet".into());
        }
        let mut first = true;
        for (name, h) in &self.routes {
            let mut v = format!("{name}: ");
            match (&h.last_error, h.last_sent) {
                (Some((te, text)), sent) if h.failing => {
                    let _ = write!(
                        v,
                        "last error {}: {}",
                        when(*te, now),
                        first_line(text, 160)
                    );
                    if let Some(ts) = sent {
                        let _ = write!(v, "; last sent {}", when(ts, now));
                    }
                }
                (err, Some(ts)) => {
                    let _ = write!(v, "ok, last sent {}", when(ts, now));
                    if let Some((te, text)) = err {
                        let _ = write!(
                            v,
                            "; earlier error {}: {}",
                            when(*te, now),
                            first_line(text, 160)
                        );
                    }
                }
                (None, None) => v.push_str("no delivery yet"),
                (Some((te, text)), None) => {
                    let _ = write!(
                        v,
                        "last error {}: {}",
                        when(*te, now),
                        first_line(text, 160)
                    );
                }
            }
            line(if first { "routes" } else { "" }, v);
            first = false;
        }
        s
    }

    /// For scripts.
    pub fn json(&self) -> String {
        use crate::control::report::json_str as q;
        let opt = |t: Option<i64>| t.map(|t| q(&rfc3339(t))).unwrap_or_else(|| "null".into());
        let listeners: Vec<String> = self.listeners.iter().map(|l| q(l)).collect();
        let routes: Vec<String> = self
            .routes
            .iter()
            .map(|(name, h)| {
                format!(
                    "{}: {{\"last_sent\": {}, \"last_error_at\": {}, \"last_error\": {}, \"failing\": {}}}",
                    q(name),
                    opt(h.last_sent),
                    opt(h.last_error.as_ref().map(|e| e.0)),
                    h.last_error.as_ref().map(|e| q(&e.1)).unwrap_or_else(|| "null".into()),
                    h.failing
                )
            })
            .collect();
        let sync = match &self.sync {
            None => "null".into(),
            Some(y) => format!(
                "{{\"source\": {}, \"last_success\": {}, \"last_attempt\": {}, \"last_error\": {}}}",
                q(&y.source),
                opt(y.last_success),
                opt(y.last_attempt),
                q(&y.last_error)
            ),
        };
        let cert = match &self.cert {
            None => "null".into(),
            Some((f, t)) => format!("{{\"file\": {}, \"not_after\": {}}}", q(f), q(&rfc3339(*t))),
        };
        format!(
            "{{\"version\": {}, \"pid\": {}, \"started\": {}, \"uptime_seconds\": {}, \"config\": {}, \
             \"listeners\": [{}], \"queue\": {{\"active\": {}, \"deferred\": {}, \"held\": {}}}, \
             \"sync\": {}, \"certificate\": {}, \"routes\": {{{}}}}}\n",
            q(&self.version),
            self.pid,
            q(&rfc3339(self.started)),
            self.now - self.started,
            q(&self.config),
            listeners.join(", "),
            self.queue.active,
            self.queue.deferred,
            self.queue.held,
            sync,
            cert,
            routes.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn board() -> Board {
        Board {
            started: now_secs() - 100,
            inner: Mutex::new(Inner::default()),
        }
    }

    #[test]
    fn a_route_remembers_its_last_error_and_success() {
        let b = board();
        b.delivery("relay-mail01", false, "4.4.1 connect refused\nmore");
        b.delivery("mx:example.test", true, "250 ok");
        let s = b.snapshot(
            QueueCounts {
                active: 1,
                deferred: 2,
                held: 3,
            },
            None,
        );
        let text = s.text();
        assert!(text.contains("relay-mail01: last error"), "{text}");
        assert!(text.contains("4.4.1 connect refused"), "{text}");
        assert!(!text.contains("more"), "{text}");
        assert!(text.contains("mx:example.test: ok, last sent"), "{text}");
        assert!(text.contains("1 active, 2 deferred, 3 held"), "{text}");
        b.delivery("relay-mail01", true, "250 ok");
        let text = b.snapshot(QueueCounts::default(), None).text();
        assert!(text.contains("relay-mail01: ok, last sent"), "{text}");
        assert!(text.contains("earlier error"), "{text}");
        let line = b.status_line(QueueCounts {
            active: 1,
            deferred: 2,
            held: 0,
        });
        assert!(
            line.starts_with("3 queued (1 active, 2 deferred), 0 held; last delivery error"),
            "{line}"
        );
        assert!(
            line.contains("via relay-mail01: 4.4.1 connect refused"),
            "{line}"
        );
    }

    #[test]
    fn routes_are_bounded() {
        let b = board();
        for n in 0..MAX_ROUTES + 10 {
            b.delivery(&format!("mx:d{n}.test"), false, "no");
        }
        assert_eq!(
            b.snapshot(QueueCounts::default(), None).routes.len(),
            MAX_ROUTES
        );
    }

    #[test]
    fn json_is_one_object() {
        let b = board();
        b.set_certificate(Some(("/c.pem".into(), now_secs() + 86_400 * 3)));
        b.delivery("r\"1", false, "bad \"quote\"");
        let j = b
            .snapshot(
                QueueCounts::default(),
                Some(SyncLine {
                    source: "mysql://db".into(),
                    last_success: None,
                    last_attempt: Some(5),
                    last_error: "down".into(),
                }),
            )
            .json();
        assert!(j.starts_with('{') && j.trim_end().ends_with('}'), "{j}");
        assert!(j.contains("\"r\\\"1\": {"), "{j}");
        assert!(j.contains("\"last_success\": null"), "{j}");
    }
}

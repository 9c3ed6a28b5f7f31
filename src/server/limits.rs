//! Connection limits: how many sessions at once in total, and per client
//! address (the seed's default_process_limit and
//! smtpd_client_connection_count_limit). A slot is held by a guard and
//! given back when the session ends, however it ends.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Debug, PartialEq, Eq)]
pub enum LimitHit {
    Total,
    PerClient,
}

pub struct ConnLimits {
    max_total: AtomicUsize,
    max_per_client: AtomicUsize,
    state: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

pub struct ConnGuard {
    limits: Arc<ConnLimits>,
    ip: IpAddr,
}

impl ConnLimits {
    pub fn new(max_total: usize, max_per_client: usize) -> Arc<ConnLimits> {
        Arc::new(ConnLimits {
            max_total: AtomicUsize::new(max_total),
            max_per_client: AtomicUsize::new(max_per_client),
            state: Mutex::new((0, HashMap::new())),
        })
    }

    pub fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Result<ConnGuard, LimitHit> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.0 >= self.max_total.load(Ordering::Relaxed) {
            return Err(LimitHit::Total);
        }
        let n = st.1.entry(ip).or_insert(0);
        if *n >= self.max_per_client.load(Ordering::Relaxed) {
            return Err(LimitHit::PerClient);
        }
        *n += 1;
        st.0 += 1;
        Ok(ConnGuard {
            limits: self.clone(),
            ip,
        })
    }

    /// New limits (a reload); sessions over them keep going.
    pub fn set_limits(&self, max_total: usize, max_per_client: usize) {
        self.max_total.store(max_total, Ordering::Relaxed);
        self.max_per_client.store(max_per_client, Ordering::Relaxed);
    }

    pub fn active(&self) -> usize {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).0
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        let mut st = self.limits.state.lock().unwrap_or_else(|e| e.into_inner());
        st.0 -= 1;
        if let Some(n) = st.1.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                st.1.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_and_release() {
        let l = ConnLimits::new(3, 2);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let g1 = l.try_acquire(a).unwrap();
        let _g2 = l.try_acquire(a).unwrap();
        assert_eq!(l.try_acquire(a).err(), Some(LimitHit::PerClient));
        let _g3 = l.try_acquire(b).unwrap();
        assert_eq!(l.try_acquire(b).err(), Some(LimitHit::Total));
        drop(g1);
        let _g4 = l.try_acquire(a).unwrap();
        assert_eq!(l.active(), 3);
    }
}

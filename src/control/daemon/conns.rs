//! The control connections the daemon serves, and their limits.
//!
//! Each connection is in one of three states: waiting for a request
//! (idle), answering one (busy), or held by a vport client or a capture
//! (a lease, which may stay silent as long as it likes). Limits:
//!
//! - at most `ctl_per_user` connections of one user, except root and the
//!   daemon's own user (the operators);
//! - an idle connection is closed after `ctl_idle`;
//! - at most `ctl_conns` in all. When full, a new connection closes the
//!   connection idle longest to take its place, so idle connections can
//!   never lock an operator out. If none is idle (all are leases or busy),
//!   an operator still gets one of [`SPARE`] extra places, closed after
//!   [`SPARE_IDLE`] without a request; anybody else is refused.
//!
//! A connection closed by a limit is told why in one error line before it
//! is shut down (sent without waiting: a peer that reads nothing loses it).

use std::collections::BTreeMap;
use std::os::unix::net::UnixStream;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::super::limits::Limits;
use super::super::proto::Response;

/// Places beyond the limit kept for operators when nothing can be closed.
pub const SPARE: usize = 16;
/// How long an operator's spare place may stay without a request.
pub const SPARE_IDLE: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Waiting for a request since then.
    Idle(Instant),
    Busy,
    Lease,
}

struct Entry {
    stream: UnixStream,
    uid: u32,
    /// Holds one of the operators' spare places.
    spare: bool,
    state: State,
}

#[derive(Default)]
pub struct Conns {
    table: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    next: u64,
    map: BTreeMap<u64, Entry>,
}

/// Sends `why` as an error line without blocking, then shuts `s` down.
fn close_with(s: &UnixStream, why: &str) {
    crate::sys::res::send_now(s, Response::err(why).to_line().as_bytes());
    let _ = s.shutdown(std::net::Shutdown::Both);
}

impl Table {
    /// The idle connection waiting longest.
    fn idlest(&self) -> Option<u64> {
        self.map
            .iter()
            .filter_map(|(&id, e)| match e.state {
                State::Idle(t) => Some((t, id)),
                _ => None,
            })
            .min()
            .map(|(_, id)| id)
    }
}

impl Conns {
    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes `conn` on, within `l`: its number, or why it is refused (the
    /// caller tells the peer). May close an idle connection to make room.
    pub fn admit(&self, conn: &UnixStream, l: &Limits) -> Result<u64, String> {
        let uid = crate::sys::res::peer_uid(conn).unwrap_or(u32::MAX);
        let operator = uid == 0 || uid == crate::sys::euid();
        let stream = conn.try_clone().map_err(|e| format!("cannot serve: {e}"))?;
        let mut t = self.lock();
        if !operator && t.map.values().filter(|e| e.uid == uid).count() >= l.ctl_per_user {
            return Err(format!(
                "too many control connections from uid {uid} (at most {} per user, --max-ctl-conns-per-user)",
                l.ctl_per_user
            ));
        }
        let mut spare = false;
        if t.map.len() >= l.ctl_conns {
            if let Some(id) = t.idlest() {
                if let Some(e) = t.map.remove(&id) {
                    close_with(
                        &e.stream,
                        &format!(
                            "closed: the daemon is at its limit of {} control connections (--max-ctl-conns) and this one was the idlest",
                            l.ctl_conns
                        ),
                    );
                }
            } else if operator && t.map.values().filter(|e| e.spare).count() < SPARE {
                spare = true;
            } else {
                return Err(format!(
                    "too many control connections (at most {}, --max-ctl-conns, all in use)",
                    l.ctl_conns
                ));
            }
        }
        let id = t.next;
        t.next += 1;
        t.map.insert(
            id,
            Entry {
                stream,
                uid,
                spare,
                state: State::Idle(Instant::now()),
            },
        );
        Ok(id)
    }

    pub fn set(&self, id: u64, state: State) {
        if let Some(e) = self.lock().map.get_mut(&id) {
            e.state = state;
        }
    }

    pub fn remove(&self, id: u64) {
        self.lock().map.remove(&id);
    }

    /// Closes the connections idle for longer than their limit; returns
    /// how many.
    pub fn reap(&self, idle: Duration, now: Instant) -> usize {
        let mut t = self.lock();
        let old: Vec<u64> = t
            .map
            .iter()
            .filter(|(_, e)| match e.state {
                State::Idle(since) => {
                    now.saturating_duration_since(since) >= if e.spare { SPARE_IDLE } else { idle }
                }
                _ => false,
            })
            .map(|(&id, _)| id)
            .collect();
        for id in &old {
            if let Some(e) = t.map.remove(id) {
                let secs = if e.spare { SPARE_IDLE } else { idle }.as_secs_f64();
                close_with(
                    &e.stream,
                    &format!("closed: no request for {secs} s (--ctl-idle-timeout)"),
                );
            }
        }
        old.len()
    }

    /// Connections open.
    #[cfg(test)]
    fn count(&self) -> usize {
        self.lock().map.len()
    }

    /// Shuts every connection down (the daemon is stopping).
    pub fn shutdown_all(&self) {
        for e in std::mem::take(&mut self.lock().map).into_values() {
            let _ = e.stream.shutdown(std::net::Shutdown::Both);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn limits(total: usize) -> Limits {
        Limits {
            ctl_conns: total,
            ..Limits::default()
        }
    }

    #[test]
    fn full_table_closes_the_idlest_and_says_why() {
        let c = Conns::default();
        let l = limits(2);
        let (a, mut a_peer) = UnixStream::pair().unwrap();
        let (b, _b_peer) = UnixStream::pair().unwrap();
        let (n, _n_peer) = UnixStream::pair().unwrap();
        c.admit(&a, &l).unwrap();
        let ib = c.admit(&b, &l).unwrap();
        c.set(ib, State::Busy);
        // Full: the new one takes the idle one's place.
        let _ = c.admit(&n, &l).unwrap();
        assert_eq!(c.count(), 2);
        let mut text = String::new();
        a_peer.read_to_string(&mut text).unwrap();
        assert!(text.contains("--max-ctl-conns"), "{text}");
        // Nothing idle: an operator (we are root or the daemon's user)
        // gets a spare place; it goes after SPARE_IDLE.
        for i in c.lock().map.values_mut() {
            i.state = State::Lease;
        }
        let (o, _o_peer) = UnixStream::pair().unwrap();
        let io_ = c.admit(&o, &l).unwrap();
        assert!(c.lock().map[&io_].spare);
        assert_eq!(c.reap(Duration::from_secs(60), Instant::now()), 0);
        assert_eq!(
            c.reap(Duration::from_secs(60), Instant::now() + SPARE_IDLE),
            1
        );
        c.shutdown_all();
        assert_eq!(c.count(), 0);
    }
}

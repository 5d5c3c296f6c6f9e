//! Worker threads: each polls the incoming queues it owns (a port has one,
//! or several, each owned by one worker) and runs forwarding to completion
//! for what it reads.
//!
//! A worker spins while it finds work. A queue found empty for longer than
//! `idle_after` is retired from the poll list and armed (its backend will
//! signal its descriptor when packets arrive); when every owned queue is
//! retired the worker sleeps in epoll, so an idle switch uses no CPU. While
//! some queues are retired and others busy, the worker checks for signals
//! every few rounds with a zero-timeout epoll. Under light load (a round
//! moves only a few packets) a worker naps for a few microseconds between
//! rounds instead of spinning, so a trickle of traffic costs little CPU,
//! and looks at its retired queues after every nap, so that a reply coming
//! back on one waits one nap at most;
//! `busy-poll` switches never nap or sleep, and keep polling their queues,
//! except idle ones whose polling costs a system call (a TAP's `read`),
//! which retire after 1 ms without packets.
//!
//! A queue's descriptor is in the worker's epoll set only while the queue is
//! retired. A polled queue stays out of it: a descriptor with a waiter makes
//! every signal its producer raises cost a wake-up walk on the producer's
//! core (for an AF_XDP socket, the kernel's receive path on the sending
//! core takes the socket's wait-queue and the epoll locks for each batch).
//! Only the worker adds and removes its queues' descriptors, so registration
//! never races a table change.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::sys::{Epoll, EventFd};

use super::Shared;
use super::forward::Forwarder;
use super::table::{PortEntry, Table};

/// The epoll token of a worker's control doorbell (port tokens are port numbers).
pub(crate) const CTRL_TOKEN: u64 = u64::MAX;

/// How often a busy worker looks for signals from retired ports.
const EPOLL_EVERY_ROUNDS: u32 = 16;

/// How often a busy worker reads the clock.
const CLOCK_EVERY_ROUNDS: u32 = 8;

/// A round that moved fewer packets than this makes the worker nap for
/// `NAP` before the next (unless it busy-polls): at such rates spinning
/// buys nothing but burnt CPU.
const NAP_BELOW: usize = 16;
const NAP: Duration = Duration::from_micros(20);

/// The part of a worker that control and readers see.
pub(crate) struct WorkerShared {
    /// Rung by control after publishing a new table or asking to stop.
    pub bell: EventFd,
    pub epoll: Epoll,
    /// The newest table generation this worker has switched to.
    pub seen_gen: AtomicU64,
    pub packets: AtomicU64,
    pub sleeps: AtomicU64,
    /// Time spent in stretches of rounds that moved packets (measured
    /// between the worker's clock reads): `top`'s busy share.
    pub busy_ns: AtomicU64,
    pub sleeping: AtomicBool,
    pub cpu: Option<usize>,
}

impl WorkerShared {
    pub fn new(cpu: Option<usize>) -> std::io::Result<WorkerShared> {
        let bell = EventFd::new()?;
        let epoll = Epoll::new()?;
        epoll.add(std::os::fd::AsRawFd::as_raw_fd(&bell), CTRL_TOKEN)?;
        Ok(WorkerShared {
            bell,
            epoll,
            seen_gen: AtomicU64::new(0),
            packets: AtomicU64::new(0),
            sleeps: AtomicU64::new(0),
            busy_ns: AtomicU64::new(0),
            sleeping: AtomicBool::new(false),
            cpu,
        })
    }
}

/// An incoming queue this worker polls.
struct Owned {
    entry: Arc<PortEntry>,
    /// Which of the port's incoming queues.
    q: usize,
    last_active: Instant,
    /// Whether the queue can signal (and so may be retired when idle).
    can_sleep: bool,
    /// How long the queue may stay empty before it is retired: the switch's
    /// `idle_after`, or on a busy-polling switch a short time for ports whose
    /// polling costs a system call.
    idle_limit: Option<Duration>,
    /// Whether the port also hands over frames from its own memory
    /// ([`crate::port::Port::receive_direct`]).
    direct: bool,
}

/// How long an idle queue whose polling costs a system call stays polled on
/// a busy-polling switch.
const SYSCALL_QUEUE_IDLE: Duration = Duration::from_millis(1);

impl Owned {
    /// The queue's epoll token: port number and queue index.
    fn token(&self) -> u64 {
        u64::from(self.entry.id.0) | (self.q as u64) << 16
    }
}

pub(crate) fn run(shared: Arc<Shared>, w: usize) {
    let me = &shared.workers[w];
    if let Some(cpu) = me.cpu
        && let Err(e) = crate::sys::pin_current_thread(cpu)
    {
        tracing::warn!("worker {w}: cannot pin to cpu {cpu}: {e}");
    }
    // Naps are short: ask the kernel not to stretch them.
    crate::sys::set_timer_slack(Duration::from_micros(1));
    let mut fwd = Forwarder::new(shared.cfg.batch, w);
    let mut table: Arc<Table> = shared.table();
    let mut active: Vec<Owned> = Vec::new();
    let mut retired: Vec<Owned> = Vec::new();
    let mut events: Vec<(u64, bool)> = Vec::with_capacity(64);
    let idle_after = shared.cfg.idle_after;
    let mut generation = u64::MAX;
    let mut last_tick = Instant::now();
    let mut round: u32 = 0;
    let mut now = Instant::now();
    let mut now_ns = shared.nanos(now);
    // Whether some round since the last clock read moved packets.
    let mut worked = false;
    loop {
        let g = shared.generation.load(Ordering::Acquire);
        if g != generation {
            table = shared.table();
            generation = table.generation;
            regroup(me, &table, w, idle_after, &mut active, &mut retired);
            me.seen_gen.store(generation, Ordering::Release);
        }
        if shared.stop.load(Ordering::Acquire) {
            break;
        }
        // The clock costs more than a small batch: read it every few rounds
        // (a round takes microseconds, or a nap; timestamps and idle timers
        // need no better) and after every sleep.
        if round.is_multiple_of(CLOCK_EVERY_ROUNDS) {
            let t = Instant::now();
            add_busy(me, &mut worked, now, t);
            now = t;
            now_ns = shared.nanos(now);
        }
        let mut work = 0;
        let mut i = 0;
        while i < active.len() {
            let o = &mut active[i];
            if !o.direct {
                o.entry.port.sync_incoming(o.q);
            }
            let mut n = fwd.forward(&table, &o.entry, o.q, now_ns, &shared.packet_in);
            if o.direct {
                // After the ring: what a sibling queued there came first.
                let entry = &o.entry;
                n += entry.port.receive_direct(o.q, &mut |frames, tun, opts| {
                    fwd.forward_frames(
                        &table,
                        entry,
                        frames,
                        (tun, opts),
                        now_ns,
                        &shared.packet_in,
                    );
                });
            }
            work += n;
            if n > 0 {
                o.last_active = now;
            } else if let Some(limit) = o.idle_limit
                && o.can_sleep
                && now.duration_since(o.last_active) >= limit
                && o.entry.port.arm_incoming(o.q, o.entry.rxq[o.q].cursor())
            {
                // Level-triggered: what arrived since `arm_incoming` looked
                // is reported by the first wait after the registration.
                if watch(me, o) {
                    retired.push(active.swap_remove(i));
                    continue;
                }
                o.entry.port.disarm_incoming(o.q);
                o.last_active = now;
            }
            i += 1;
        }
        if work > 0 {
            worked = true;
            me.packets.store(fwd.packets, Ordering::Relaxed);
            crate::ab::count(work as u64);
        }
        if now.duration_since(last_tick) >= Duration::from_secs(1) {
            table.module.tick(now_ns);
            recheck(me, &mut active, &mut retired, now);
            last_tick = now;
        }
        round = round.wrapping_add(1);
        let timeout = if active.is_empty() {
            // Everything is retired: sleep until a port or control signals.
            Some(Duration::from_secs(1))
        } else if !retired.is_empty() && round.is_multiple_of(EPOLL_EVERY_ROUNDS) {
            Some(Duration::ZERO)
        } else {
            if idle_after.is_some() && work < NAP_BELOW {
                // A trickle: nap rather than spin, so light traffic does not
                // cost a whole core; packets gather in the rings meanwhile and
                // the next round takes them as a batch.
                // The work before a nap is busy time; the nap is not.
                add_busy(me, &mut worked, now, Instant::now());
                std::thread::sleep(NAP);
                // A nap lasts far longer than asked (the wake-up: 50-100 us
                // on this VM, with 1 us of timer slack), so after one the
                // clock is read again and retired ports are looked at: a
                // reply arriving on a retired port must not wait out
                // EPOLL_EVERY_ROUNDS naps (it waited ~300 us a crossing).
                round = round.wrapping_sub(round % CLOCK_EVERY_ROUNDS);
                if retired.is_empty() {
                    continue;
                }
                Some(Duration::ZERO)
            } else {
                if work == 0 {
                    std::hint::spin_loop();
                }
                continue;
            }
        };
        events.clear();
        // The work before a sleep is busy time; the sleep is not.
        add_busy(me, &mut worked, now, Instant::now());
        if timeout != Some(Duration::ZERO) {
            me.sleeping.store(true, Ordering::Relaxed);
            me.sleeps.fetch_add(1, Ordering::Relaxed);
        }
        if let Err(e) = me.epoll.wait_flagged(&mut events, timeout) {
            tracing::error!("worker {w}: epoll: {e}");
            std::thread::sleep(Duration::from_millis(10));
        }
        me.sleeping.store(false, Ordering::Relaxed);
        now = Instant::now();
        now_ns = shared.nanos(now);
        for &(tok, failed) in &events {
            if tok == CTRL_TOKEN {
                me.bell.drain();
            } else if let Some(pos) = retired.iter().position(|o| o.token() == tok) {
                let mut o = retired.swap_remove(pos);
                unwatch(me, &o);
                o.entry.port.disarm_incoming(o.q);
                if failed {
                    // An interface that went down or vanished: the backend
                    // quiets its descriptor, or it would wake us for ever.
                    o.entry.port.incoming_error(o.q);
                }
                o.last_active = now;
                active.push(o);
            }
        }
    }
    // Leave nothing armed: the port may be re-attached elsewhere.
    for o in retired {
        unwatch(me, &o);
        o.entry.port.disarm_incoming(o.q);
    }
}

/// Adds `since..until` to the worker's busy time if some round in it moved
/// packets (`worked`, which this clears).
#[inline]
fn add_busy(me: &WorkerShared, worked: &mut bool, since: Instant, until: Instant) {
    if std::mem::take(worked) {
        me.busy_ns.fetch_add(
            until.duration_since(since).as_nanos() as u64,
            Ordering::Relaxed,
        );
    }
}

/// About once a second: ports whose device is down or gone look at it
/// again ([`crate::port::Port::recheck`]), which may bring them back with a
/// new descriptor, so a retired queue leaves the epoll set first and is
/// polled again (it retires again when idle). A healthy port costs an
/// atomic load here (an af_xdp port a look at its interface), or on a
/// busy-polling switch, whose queues never wait
/// in epoll for an error to show, a look for one (a system call or two).
fn recheck(me: &WorkerShared, active: &mut Vec<Owned>, retired: &mut Vec<Owned>, now: Instant) {
    let mut i = 0;
    while i < retired.len() {
        let o = &retired[i];
        if o.q == 0 && o.entry.port.needs_recheck() {
            let mut o = retired.swap_remove(i);
            unwatch(me, &o);
            o.entry.port.disarm_incoming(o.q);
            o.last_active = now;
            active.push(o);
        } else {
            i += 1;
        }
    }
    for o in active.iter().filter(|o| o.q == 0) {
        if o.entry.port.needs_recheck() {
            o.entry.port.recheck();
        } else if o.idle_limit.is_none() && o.can_sleep {
            // Busy-polled: never in the epoll set, so never told of an
            // error there; ask the port to look for one itself.
            o.entry.port.incoming_error(o.q);
        }
    }
}

/// Adds a retired queue's descriptor to the worker's epoll set; false if it
/// cannot be (the queue then stays polled).
fn watch(me: &WorkerShared, o: &Owned) -> bool {
    match o.entry.port.incoming_fd(o.q) {
        Some(fd) => me.epoll.add(fd, o.token()).is_ok(),
        None => false,
    }
}

fn unwatch(me: &WorkerShared, o: &Owned) {
    if let Some(fd) = o.entry.port.incoming_fd(o.q) {
        let _ = me.epoll.delete(fd);
    }
}

/// Rebuilds the poll lists for a new table, keeping what stayed the same.
/// Retired queues stay retired (they are still armed).
fn regroup(
    me: &WorkerShared,
    table: &Table,
    w: usize,
    idle_after: Option<Duration>,
    active: &mut Vec<Owned>,
    retired: &mut Vec<Owned>,
) {
    let keep = |o: &Owned| {
        table.entry(o.entry.id).is_some_and(|e| {
            Arc::ptr_eq(e, &o.entry) && e.rxq.get(o.q).is_some_and(|r| r.owner == w)
        })
    };
    for o in retired.iter().filter(|o| !keep(o)) {
        unwatch(me, o);
        o.entry.port.disarm_incoming(o.q);
    }
    active.retain(keep);
    retired.retain(keep);
    let known: HashSet<u64> = active
        .iter()
        .chain(retired.iter())
        .map(Owned::token)
        .collect();
    let now = Instant::now();
    for e in table.entries() {
        for (q, _) in e.rxq.iter().enumerate().filter(|(_, r)| r.owner == w) {
            let o = Owned {
                entry: e.clone(),
                q,
                last_active: now,
                can_sleep: e.port.incoming_fd(q).is_some(),
                idle_limit: idle_after
                    .or(e.port.poll_costs_syscall().then_some(SYSCALL_QUEUE_IDLE)),
                direct: e.port.receives_directly(),
            };
            if !known.contains(&o.token()) {
                active.push(o);
            }
        }
    }
}

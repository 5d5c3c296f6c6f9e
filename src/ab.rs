//! In-process A/B, for measuring small changes on a noisy machine.
//!
//! Launches of one binary can differ by more than the change being
//! measured (the memory layout and the host's state differ between them),
//! so alternating binaries hides effects of 10% or less. Instead, build
//! with `--features ab` and guard the change with [`on`]: the switch then
//! flips between the two variants every [`PHASE`] and counts the packets
//! its workers forward in each phase. Both variants share the process,
//! its memory and the host's state at that moment. Every 2 s the totals go
//! to stderr: `ab: off=N on=M ratio=R`, R being M / N.
//!
//! Without the feature (the default), [`on`] is the constant `false` and
//! [`count`] does nothing: no cost.

/// How long each variant runs before the other.
pub const PHASE: std::time::Duration = std::time::Duration::from_millis(200);

#[cfg(feature = "ab")]
mod imp {
    use std::sync::Once;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    static ON: AtomicBool = AtomicBool::new(false);
    static PACKETS: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];
    static START: Once = Once::new();

    #[inline(always)]
    pub fn on() -> bool {
        ON.load(Ordering::Relaxed)
    }

    pub fn count(n: u64) {
        START.call_once(|| {
            std::thread::spawn(|| {
                for k in 1u64.. {
                    std::thread::sleep(super::PHASE);
                    ON.store(k % 2 == 1, Ordering::Relaxed);
                    if k % 10 == 0 {
                        let off = PACKETS[0].load(Ordering::Relaxed);
                        let on = PACKETS[1].load(Ordering::Relaxed);
                        let r = on as f64 / off.max(1) as f64;
                        eprintln!("ab: off={off} on={on} ratio={r:.4}");
                    }
                }
            });
        });
        PACKETS[usize::from(on())].fetch_add(n, Ordering::Relaxed);
    }
}

#[cfg(not(feature = "ab"))]
mod imp {
    #[inline(always)]
    pub fn on() -> bool {
        false
    }

    #[inline(always)]
    pub fn count(_: u64) {}
}

/// Whether the variant under test runs now (always false without the
/// `ab` feature).
#[inline(always)]
pub fn on() -> bool {
    imp::on()
}

/// Credits `n` forwarded packets to the variant running now.
#[inline(always)]
pub fn count(n: u64) {
    imp::count(n)
}

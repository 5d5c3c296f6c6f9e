//! Serving the control socket: one thread accepts (within the limits of
//! [`super::conns`], closing idle connections), and each connection gets a
//! thread that answers requests line by line until it becomes a vport
//! lease or a capture, or goes.

use std::io::{self, BufReader, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::conns;
use super::{Daemon, Request, Response, proto};
use crate::sys;

/// How long writing one answer to a control connection may take.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Sends `msg` as an error answer (a peer gone meanwhile is no error).
fn refuse(mut w: &UnixStream, msg: &str) {
    let _ = w.write_all(Response::err(msg).to_line().as_bytes());
}

/// Waits until either descriptor is readable (or 250 ms pass).
fn wait_two(a: RawFd, b: RawFd) {
    sys::poll_any(&[a, b], Some(Duration::from_millis(250)));
}

impl Daemon {
    /// Accepts and serves connections until `stop` is called, within the
    /// limits of [`conns`]: idle connections are closed after
    /// `--ctl-idle-timeout`, or earlier to make room for a new one.
    pub fn serve(self: &Arc<Self>, listener: UnixListener) -> io::Result<()> {
        listener.set_nonblocking(true)?;
        let mut last_reap = Instant::now();
        let mut last_warn = None;
        while !self.stop.load(Ordering::Relaxed) {
            if last_reap.elapsed() >= Duration::from_millis(250) {
                last_reap = Instant::now();
                self.conns.reap(self.limits().ctl_idle, last_reap);
            }
            match listener.accept() {
                Ok((conn, _)) => self.admit(conn),
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::Interrupted =>
                {
                    wait_two(listener.as_raw_fd(), self.stop_bell.as_raw_fd());
                }
                Err(e) => {
                    // Out of descriptors, most likely: one line in ten
                    // seconds, not twenty a second.
                    if last_warn.is_none_or(|t: Instant| t.elapsed() >= Duration::from_secs(10)) {
                        last_warn = Some(Instant::now());
                        let hint = match e.raw_os_error() {
                            Some(libc::EMFILE | libc::ENFILE) => {
                                " (out of file descriptors: RLIMIT_NOFILE)"
                            }
                            _ => "",
                        };
                        tracing::warn!("control socket accept: {e}{hint}");
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
        Ok(())
    }

    /// Serves `conn` on a thread of its own, if the limits allow.
    fn admit(self: &Arc<Self>, conn: UnixStream) {
        if conn.set_nonblocking(false).is_err() {
            return;
        }
        // A peer that stops reading its answers cannot hold a thread.
        let _ = conn.set_write_timeout(Some(WRITE_TIMEOUT));
        let limits = self.limits();
        let id = match self.conns.admit(&conn, &limits) {
            Ok(id) => id,
            Err(msg) => return refuse(&conn, &msg),
        };
        let d = self.clone();
        let spawned = std::thread::Builder::new()
            .name("mswitch-ctl".into())
            .spawn(move || {
                d.connection(conn, id);
                d.conns.remove(id);
            });
        if let Err(e) = spawned {
            // Out of threads: refuse this client, keep serving.
            tracing::warn!("cannot serve a control connection: {e}");
            self.conns.remove(id);
        }
    }

    fn connection(&self, conn: UnixStream, id: u64) {
        let Ok(rd) = conn.try_clone() else { return };
        let mut reader = BufReader::new(rd);
        let mut w = &conn;
        // Idle since it was accepted (so the oldest idle connection is
        // closed first, whichever thread started first), then since its
        // last answer.
        loop {
            let line = match proto::read_line(&mut reader) {
                Ok(Some(l)) => l,
                Ok(None) => return,
                Err(e) => return refuse(w, &format!("bad request: {e}")),
            };
            self.conns.set(id, conns::State::Busy);
            let req: Request = match serde_json::from_str(&line) {
                Ok(r) => r,
                Err(e) => {
                    refuse(w, &format!("bad request: {e}"));
                    self.conns.set(id, conns::State::Idle(Instant::now()));
                    continue;
                }
            };
            if let Request::Capture {
                switch,
                port,
                direction,
                snaplen,
            } = req
            {
                self.conns.set(id, conns::State::Lease);
                // Frames go out as fast as the reader takes them.
                let _ = conn.set_write_timeout(None);
                if let Err(e) = self.capture_session(&conn, &switch, &port, &direction, snaplen) {
                    refuse(w, &e);
                }
                return;
            }
            if let Request::VportConnect { switch, port } = req {
                self.conns.set(id, conns::State::Lease);
                if let Err(e) = self.vport_session(&conn, &switch, &port) {
                    refuse(w, &e);
                }
                return;
            }
            if w.write_all(self.handle(req).to_line().as_bytes()).is_err() {
                return;
            }
            self.conns.set(id, conns::State::Idle(Instant::now()));
        }
    }
}

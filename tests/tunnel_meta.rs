//! Tunnel metadata through the switching core, in process: a port whose
//! incoming slots carry [`TunMeta`] (as a tunnel port's do) hands it to
//! the module with the batch; what the module sets reaches a port that
//! sends by metadata (as a `remote=flow` port), frame by frame, and a
//! packet the module set nothing for goes there with none. A batch from an
//! ordinary port has no metadata.

mod common;

use std::net::Ipv4Addr;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{default_cfg, serial, wait_until};
use mswitch::module::{Module, Nanos, Verdict, Verdicts};
use mswitch::packet::{Batch, PortMem, TunMeta, TunMetaSlots};
use mswitch::port::tunnel::{Proto, TunnelConfig, TunnelPort};
use mswitch::port::{MemPort, Port, PortId};
use mswitch::switch::{Switch, SwitchConfig};

/// A memory port whose incoming slots have tunnel metadata.
struct TunIn {
    inner: Arc<MemPort>,
    meta: TunMetaSlots,
}

/// A memory port's name and rings, for sends that never use them: it
/// records each frame with its metadata.
struct ByMeta {
    inner: Arc<MemPort>,
    got: Mutex<Vec<(Vec<u8>, TunMeta)>>,
}

impl Port for TunIn {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn kind(&self) -> &'static str {
        "test-tunnel"
    }
    fn mem(&self) -> &PortMem {
        self.inner.mem()
    }
    fn incoming_fd(&self, q: usize) -> Option<RawFd> {
        self.inner.incoming_fd(q)
    }
    fn disarm_incoming(&self, q: usize) {
        self.inner.disarm_incoming(q)
    }
    fn incoming_tunnel_meta(&self, _q: usize) -> Option<&TunMetaSlots> {
        Some(&self.meta)
    }
}

impl Port for ByMeta {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn kind(&self) -> &'static str {
        "test-by-meta"
    }
    fn mem(&self) -> &PortMem {
        self.inner.mem()
    }
    fn transmits_directly(&self) -> bool {
        true
    }
    fn wants_tunnel_meta(&self) -> bool {
        true
    }
    /// Frames of a batch the module gave no metadata: they have none.
    fn transmit(&self, frames: &[&[u8]], _sender: usize) -> usize {
        let mut g = self.got.lock().unwrap();
        g.extend(frames.iter().map(|f| (f.to_vec(), TunMeta::NONE)));
        frames.len()
    }
    fn transmit_tunnel(&self, frames: &[&[u8]], meta: &[TunMeta], _sender: usize) -> usize {
        let mut g = self.got.lock().unwrap();
        g.extend(frames.iter().zip(meta).map(|(f, m)| (f.to_vec(), *m)));
        frames.len()
    }
}

/// Sends everything to port 2; a packet whose first byte is odd goes with
/// the metadata it came with, its `tun_id` plus 100.
#[derive(Default)]
struct Odd {
    batches_with_meta: AtomicUsize,
    batches: AtomicUsize,
}

impl Module for Odd {
    fn name(&self) -> &'static str {
        "odd"
    }

    fn process(&self, batch: &mut Batch<'_>, out: &mut Verdicts, _now: Nanos) {
        self.batches.fetch_add(1, Ordering::SeqCst);
        let tun = batch.tunnel();
        if tun.is_some() {
            self.batches_with_meta.fetch_add(1, Ordering::SeqCst);
        }
        out.fill(Verdict::Port(PortId(2)));
        for i in 0..batch.len() {
            if batch.data(i)[0] % 2 == 1 {
                let came = tun.map_or(TunMeta::NONE, |t| t[i]);
                out.set_tunnel(
                    i,
                    TunMeta {
                        id: came.id + 100,
                        ..came
                    },
                );
            }
        }
    }
}

fn frame(tag: u8) -> Vec<u8> {
    let mut f = vec![tag; 60];
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    f
}

#[test]
fn metadata_comes_with_the_batch_and_goes_out_as_the_module_set_it() {
    let _g = serial();
    let odd = Arc::new(Odd::default());
    let sw = Switch::new(
        SwitchConfig {
            workers: 1,
            ..SwitchConfig::default()
        },
        odd.clone(),
    )
    .unwrap();
    let (a, mut ca) = MemPort::new("a", default_cfg()).unwrap();
    let tin = Arc::new(TunIn {
        meta: TunMetaSlots::new(a.mem().incoming().size()),
        inner: a,
    });
    let (b, _cb) = MemPort::new("b", default_cfg()).unwrap();
    let out = Arc::new(ByMeta {
        inner: b,
        got: Mutex::new(Vec::new()),
    });
    let (c, mut cc) = MemPort::new("c", default_cfg()).unwrap();
    sw.attach(tin.clone() as Arc<dyn Port>, Some(PortId(1)))
        .unwrap();
    sw.attach(out.clone() as Arc<dyn Port>, Some(PortId(2)))
        .unwrap();
    sw.attach(c as Arc<dyn Port>, Some(PortId(3))).unwrap();

    // Four frames from the tunnel port, each with its own metadata, in
    // the slots they take (a fresh ring starts at position 0).
    let came = |k: u8| {
        TunMeta::v4(
            u64::from(k),
            Ipv4Addr::new(10, 0, 0, k),
            Ipv4Addr::new(10, 0, 1, 1),
        )
    };
    for k in 0..4u8 {
        tin.meta.store(u32::from(k), came(k));
    }
    let frames: Vec<Vec<u8>> = (0..4).map(frame).collect();
    assert_eq!(ca.send(frames.iter().map(Vec::as_slice)), 4);
    let got = |n: usize| {
        wait_until("frames at the port", Duration::from_secs(10), || {
            out.got.lock().unwrap().len() >= n
        });
        out.got.lock().unwrap().clone()
    };
    let g = got(4);
    assert!(odd.batches_with_meta.load(Ordering::SeqCst) >= 1);
    let want: Vec<(Vec<u8>, TunMeta)> = (0..4u8)
        .map(|k| {
            let m = if k % 2 == 1 {
                TunMeta {
                    id: u64::from(k) + 100,
                    ..came(k)
                }
            } else {
                // Nothing set: it goes with none, not as it came.
                TunMeta::NONE
            };
            (frame(k), m)
        })
        .collect();
    assert_eq!(g, want);

    // From an ordinary port: no metadata in the batch.
    let before = odd.batches_with_meta.load(Ordering::SeqCst);
    assert_eq!(cc.send([frame(5).as_slice()]), 1);
    let g = got(5);
    assert_eq!(
        g[4],
        (
            frame(5),
            TunMeta {
                id: 100,
                ..TunMeta::NONE
            }
        )
    );
    assert_eq!(odd.batches_with_meta.load(Ordering::SeqCst), before);
    assert!(odd.batches.load(Ordering::SeqCst) > before);

    // The control path (packet-outs): each frame with its own metadata,
    // an empty frame left out without shifting the others'.
    let (m1, m2) = (came(1), came(2));
    let sent = sw.transmit_tunnel(PortId(2), &[&[], &frame(7), &frame(8)], &[m1, m1, m2]);
    assert_eq!(sent, 2);
    assert_eq!(got(7)[5..], [(frame(7), m1), (frame(8), m2)]);
}

/// Pushes an 802.1Q tag (VID 7) onto every frame and sends it to port 2:
/// each frame grows by 4 bytes on its way.
struct PushTag;

impl Module for PushTag {
    fn name(&self) -> &'static str {
        "push-tag"
    }

    fn process(&self, batch: &mut Batch<'_>, out: &mut Verdicts, _now: Nanos) {
        out.fill(Verdict::Port(PortId(2)));
        for i in 0..batch.len() {
            let len = batch.data(i).len();
            if len < 14 || !batch.set_len(i, len + 4) {
                out.set(i, Verdict::Drop);
                continue;
            }
            let d = batch.data_mut(i);
            d.copy_within(12..len, 16);
            d[12..16].copy_from_slice(&[0x81, 0x00, 0x00, 0x07]);
        }
    }
}

#[test]
fn frames_the_switch_takes_straight_from_a_tunnel_grow_without_touching_their_neighbours() {
    // A tunnel port hands the switch its frames where the socket received
    // them, back to back with no room after each: a frame that grows
    // (a pushed tag) moves, and the frames after it arrive intact.
    let _g = serial();
    let sw = Switch::new(
        SwitchConfig {
            workers: 1,
            ..SwitchConfig::default()
        },
        Arc::new(PushTag),
    )
    .unwrap();
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let dst_port = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap().port()
    };
    let lo = Ipv4Addr::LOCALHOST.into();
    let mut cfg = TunnelConfig::new(Proto::Vxlan, lo);
    cfg.local = Some(lo);
    cfg.dst_port = dst_port;
    (cfg.in_key, cfg.out_key) = (9, 9);
    let t = TunnelPort::open("vx", &cfg, default_cfg()).unwrap();
    assert!(t.receives_directly());
    sw.attach(t as Arc<dyn Port>, Some(PortId(1))).unwrap();
    let (b, mut cb) = MemPort::new("b", default_cfg()).unwrap();
    sw.attach(b as Arc<dyn Port>, Some(PortId(2))).unwrap();
    let frames: Vec<Vec<u8>> = (0..40u8)
        .map(|k| {
            let mut f = frame(k);
            f.resize(60 + usize::from(k), k);
            f
        })
        .collect();
    for f in &frames {
        let mut d = vec![0x08, 0, 0, 0, 0, 0, 9, 0];
        d.extend(f);
        udp.send_to(&d, ("127.0.0.1", dst_port)).unwrap();
    }
    let got = common::recv_n(&mut cb, frames.len(), Duration::from_secs(10));
    let want: Vec<Vec<u8>> = frames
        .iter()
        .map(|f| {
            let mut g = f[..12].to_vec();
            g.extend([0x81, 0x00, 0x00, 0x07]);
            g.extend(&f[12..]);
            g
        })
        .collect();
    assert_eq!(got, want);
}

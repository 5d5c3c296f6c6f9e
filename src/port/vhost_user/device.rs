//! The device's side of the vhost-user protocol: what the frontend asks for
//! (features, memory table, ring sizes, addresses, bases, eventfds, enables)
//! kept per connection, and the queues it describes started and stopped on
//! the data path. The rust-vmm `vhost` crate parses the messages and calls
//! the handler below; this file owns what the answers mean.
//!
//! A queue runs once it has memory, a size, addresses and a kick eventfd,
//! and is enabled (rings start disabled when PROTOCOL_FEATURES is
//! negotiated); GET_VRING_BASE stops it and returns where it was. Anything
//! the frontend gets wrong is refused with an error, never a panic.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use vhost::VhostUserMemoryRegionBase;
use vhost::vhost_user::message::{
    VhostTransferStateDirection, VhostTransferStatePhase, VhostUserConfigFlags, VhostUserInflight,
    VhostUserLog, VhostUserMemoryRegion, VhostUserProtocolFeatures, VhostUserShMemConfig,
    VhostUserSharedMsg, VhostUserSingleMemoryRegion, VhostUserVirtioFeatures,
    VhostUserVringAddrFlags, VhostUserVringState,
};
use vhost::vhost_user::{Error, GpuBackend, Result, VhostUserBackendReqHandlerMut};
use virtio_bindings::virtio_config::{VIRTIO_F_IN_ORDER, VIRTIO_F_VERSION_1};
use virtio_bindings::virtio_net::{VIRTIO_NET_F_MQ, VIRTIO_NET_F_MRG_RXBUF, VIRTIO_NET_F_STATUS};
use virtio_bindings::virtio_ring::{VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC};

use super::guest_mem::{GuestMem, RegionDesc};
use super::virtq::{RingAddrs, Virtq};
use super::{Live, Shared};
use crate::sys::EventFd;

/// The virtio features the device offers. No offloads: checksums and
/// segmentation are not implemented, so they are not claimed. IN_ORDER:
/// every path of [`Virtq`] (bad chains, packets dropped, partial merges
/// rolled back) uses chains in the order they were made available, and it
/// writes a used entry for each, so a driver may rely on the order alone
/// (DPDK's in-order paths do, and OVS offers the feature too).
pub fn device_features(queue_pairs: u16) -> u64 {
    let mut f = (1u64 << VIRTIO_F_VERSION_1)
        | (1 << VIRTIO_NET_F_MRG_RXBUF)
        | (1 << VIRTIO_NET_F_STATUS)
        | (1 << VIRTIO_RING_F_EVENT_IDX)
        | (1 << VIRTIO_RING_F_INDIRECT_DESC)
        | (1 << VIRTIO_F_IN_ORDER)
        | VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits();
    if queue_pairs > 1 {
        f |= 1 << VIRTIO_NET_F_MQ;
    }
    f
}

/// The protocol features offered (REPLY_ACK is added by the crate). Not
/// CONFIG: no frontend of a virtio-net device reads the configuration
/// space through the backend (QEMU keeps its own and warns about a backend
/// that offers it; DPDK's virtio-user never asks), so `get_config` only
/// answers a frontend that asks anyway.
pub fn protocol_features() -> VhostUserProtocolFeatures {
    VhostUserProtocolFeatures::MQ | VhostUserProtocolFeatures::RESET_DEVICE
}

/// Bytes of the virtio-net header for these features.
pub fn net_hdr_len(features: u64) -> usize {
    if features & (1 << VIRTIO_F_VERSION_1 | 1 << VIRTIO_NET_F_MRG_RXBUF) != 0 {
        12
    } else {
        10
    }
}

/// What the frontend told us about one virtqueue.
#[derive(Default)]
struct VringCfg {
    num: u16,
    addrs: Option<RingAddrs>,
    base: u16,
    kick: Option<File>,
    call: Option<File>,
    enabled: bool,
    running: bool,
}

/// One connection's device state.
pub struct Device {
    shared: Arc<Shared>,
    features: u64,
    protocol: u64,
    mem: Option<Arc<GuestMem>>,
    vrings: Vec<VringCfg>,
}

/// How long a stopping queue waits for the data path to take what the
/// guest had already sent.
const SETTLE: Duration = Duration::from_millis(50);

fn bad(what: &'static str) -> Error {
    Error::InvalidOperation(what)
}

impl Device {
    pub fn new(shared: Arc<Shared>) -> Device {
        let n = 2 * usize::from(shared.queue_pairs);
        Device {
            shared,
            features: 0,
            protocol: 0,
            mem: None,
            vrings: (0..n).map(|_| VringCfg::default()).collect(),
        }
    }

    fn vring(&mut self, index: u32) -> Result<&mut VringCfg> {
        self.vrings
            .get_mut(index as usize)
            .ok_or(bad("no such virtqueue"))
    }

    fn has(&self, bit: u32) -> bool {
        self.features & (1 << bit) != 0
    }

    /// Starts or stops queue `i` to match what the frontend configured.
    fn update(&mut self, i: usize) {
        let protocol = self.features & VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits() != 0;
        let (event_idx, indirect) = (
            self.has(VIRTIO_RING_F_EVENT_IDX),
            self.has(VIRTIO_RING_F_INDIRECT_DESC),
        );
        let merge = self.has(VIRTIO_NET_F_MRG_RXBUF);
        let hdr_len = net_hdr_len(self.features);
        let mem = self.mem.clone();
        // Stop first, so a queue set up again goes on where it was.
        if let Some(old) = self.shared.install(i, None) {
            self.vrings[i].base = old.q.last_avail;
        }
        let v = &mut self.vrings[i];
        let want = v.kick.is_some() && (v.enabled || !protocol);
        let live = match (&mem, v.addrs, want) {
            (Some(mem), Some(a), true) => {
                match Virtq::new(mem.clone(), a, v.num, v.base, event_idx, indirect) {
                    Some(q) => Some(q),
                    None => {
                        tracing::warn!(
                            "{}: virtqueue {i}: ring outside guest memory or bad size; not started",
                            self.shared.name
                        );
                        None
                    }
                }
            }
            _ => None,
        };
        let live = live.map(|q| Live {
            q,
            kick: v
                .kick
                .as_ref()
                .and_then(|f| f.try_clone().ok())
                .map(|f| EventFd::from_owned(OwnedFd::from(f))),
            call: v
                .call
                .as_ref()
                .and_then(|f| f.try_clone().ok())
                .map(|f| EventFd::from_owned(OwnedFd::from(f))),
            hdr_len,
            merge,
        });
        v.running = live.is_some();
        if live.is_some() {
            self.shared.install(i, live);
        }
    }

    /// Stops every queue and forgets the memory (connection closed or reset).
    pub fn reset(&mut self) {
        let deadline = Instant::now() + SETTLE;
        for i in 0..self.vrings.len() {
            self.shared.settle(i, deadline);
            self.shared.install(i, None);
            self.vrings[i] = VringCfg::default();
        }
        self.mem = None;
        self.features = 0;
    }
}

impl VhostUserBackendReqHandlerMut for Device {
    fn set_owner(&mut self) -> Result<()> {
        Ok(())
    }

    fn reset_owner(&mut self) -> Result<()> {
        self.reset();
        Ok(())
    }

    fn reset_device(&mut self) -> Result<()> {
        self.reset();
        Ok(())
    }

    fn get_features(&mut self) -> Result<u64> {
        Ok(device_features(self.shared.queue_pairs))
    }

    fn set_features(&mut self, features: u64) -> Result<()> {
        let offered = device_features(self.shared.queue_pairs);
        if features & !offered != 0 {
            return Err(bad("features not offered"));
        }
        self.features = features;
        for i in 0..self.vrings.len() {
            if self.vrings[i].running {
                self.update(i);
            }
        }
        Ok(())
    }

    fn set_mem_table(
        &mut self,
        ctx: &[VhostUserMemoryRegion],
        files: Vec<File>,
        _postcopy: Option<bool>,
    ) -> Result<Option<Vec<VhostUserMemoryRegionBase>>> {
        let regions: Vec<RegionDesc> = ctx
            .iter()
            .map(|r| RegionDesc {
                guest_phys_addr: r.guest_phys_addr,
                memory_size: r.memory_size,
                user_addr: r.user_addr,
                mmap_offset: r.mmap_offset,
            })
            .collect();
        let mem = GuestMem::map(&regions, files).map_err(|e| {
            tracing::warn!("{}: memory table refused: {e}", self.shared.name);
            bad("bad memory table")
        })?;
        self.mem = Some(Arc::new(mem));
        for i in 0..self.vrings.len() {
            if self.vrings[i].running {
                self.update(i);
            }
        }
        Ok(None)
    }

    fn set_vring_num(&mut self, index: u32, num: u32) -> Result<()> {
        let ok = num.is_power_of_two() && num <= u32::from(super::virtq::MAX_QUEUE_SIZE);
        if !ok {
            return Err(bad("virtqueue size"));
        }
        self.vring(index)?.num = num as u16;
        Ok(())
    }

    fn set_vring_addr(
        &mut self,
        index: u32,
        flags: VhostUserVringAddrFlags,
        descriptor: u64,
        used: u64,
        available: u64,
        _log: u64,
    ) -> Result<()> {
        if flags.contains(VhostUserVringAddrFlags::VHOST_VRING_F_LOG) {
            return Err(bad("dirty logging is not supported"));
        }
        self.vring(index)?.addrs = Some(RingAddrs {
            desc: descriptor,
            avail: available,
            used,
        });
        Ok(())
    }

    fn set_vring_base(&mut self, index: u32, base: u32) -> Result<()> {
        self.vring(index)?.base = base as u16;
        Ok(())
    }

    fn get_vring_base(&mut self, index: u32) -> Result<VhostUserVringState> {
        self.vring(index)?;
        self.shared.settle(index as usize, Instant::now() + SETTLE);
        self.vrings[index as usize].kick = None;
        self.update(index as usize);
        let base = self.vrings[index as usize].base;
        Ok(VhostUserVringState::new(index, u32::from(base)))
    }

    fn set_vring_kick(&mut self, index: u8, fd: Option<File>) -> Result<()> {
        // Without an fd the frontend polls... and never kicks: a queue we
        // would then never wake for. Keep a private eventfd in its place.
        let fd = match fd {
            Some(f) => f,
            None => File::from(OwnedFd::from(
                EventFd::new().map_err(Error::ReqHandlerError)?,
            )),
        };
        self.vring(u32::from(index))?.kick = Some(fd);
        self.update(usize::from(index));
        Ok(())
    }

    fn set_vring_call(&mut self, index: u8, fd: Option<File>) -> Result<()> {
        self.vring(u32::from(index))?.call = fd;
        if self.vrings[usize::from(index)].running {
            self.update(usize::from(index));
        }
        Ok(())
    }

    fn set_vring_err(&mut self, index: u8, _fd: Option<File>) -> Result<()> {
        self.vring(u32::from(index)).map(|_| ())
    }

    fn get_protocol_features(&mut self) -> Result<VhostUserProtocolFeatures> {
        Ok(protocol_features())
    }

    fn set_protocol_features(&mut self, features: u64) -> Result<()> {
        self.protocol = features;
        Ok(())
    }

    fn get_queue_num(&mut self) -> Result<u64> {
        Ok(u64::from(self.shared.queue_pairs))
    }

    fn set_vring_enable(&mut self, index: u32, enable: bool) -> Result<()> {
        self.vring(index)?;
        if !enable {
            self.shared.settle(index as usize, Instant::now() + SETTLE);
        }
        self.vrings[index as usize].enabled = enable;
        self.update(index as usize);
        Ok(())
    }

    fn get_config(&mut self, offset: u32, size: u32, _f: VhostUserConfigFlags) -> Result<Vec<u8>> {
        // struct virtio_net_config: mac[6], status, max_virtqueue_pairs, mtu.
        let mut cfg = [0u8; 12];
        // No MAC is offered (VIRTIO_NET_F_MAC): the guest picks its own.
        cfg[6..8].copy_from_slice(&1u16.to_le_bytes()); // VIRTIO_NET_S_LINK_UP
        cfg[8..10].copy_from_slice(&self.shared.queue_pairs.to_le_bytes());
        cfg[10..12].copy_from_slice(&1500u16.to_le_bytes());
        let (o, s) = (offset as usize, size as usize);
        match o.checked_add(s) {
            Some(e) if e <= cfg.len() => Ok(cfg[o..e].to_vec()),
            _ => Err(Error::InvalidParam),
        }
    }

    fn set_config(&mut self, _o: u32, _b: &[u8], _f: VhostUserConfigFlags) -> Result<()> {
        Err(bad("the configuration space is read-only"))
    }

    fn set_gpu_socket(&mut self, _g: GpuBackend) -> Result<()> {
        Err(bad("not a GPU"))
    }

    fn get_shared_object(&mut self, _u: VhostUserSharedMsg) -> Result<File> {
        Err(bad("no shared objects"))
    }

    fn get_inflight_fd(&mut self, _i: &VhostUserInflight) -> Result<(VhostUserInflight, File)> {
        Err(bad("no inflight tracking"))
    }

    fn set_inflight_fd(&mut self, _i: &VhostUserInflight, _f: File) -> Result<()> {
        Err(bad("no inflight tracking"))
    }

    fn get_max_mem_slots(&mut self) -> Result<u64> {
        Err(bad("CONFIGURE_MEM_SLOTS not negotiated"))
    }

    fn add_mem_region(
        &mut self,
        _r: &VhostUserSingleMemoryRegion,
        _f: File,
        _p: Option<bool>,
    ) -> Result<Option<VhostUserMemoryRegionBase>> {
        Err(bad("CONFIGURE_MEM_SLOTS not negotiated"))
    }

    fn remove_mem_region(&mut self, _r: &VhostUserSingleMemoryRegion) -> Result<()> {
        Err(bad("CONFIGURE_MEM_SLOTS not negotiated"))
    }

    fn set_device_state_fd(
        &mut self,
        _d: VhostTransferStateDirection,
        _p: VhostTransferStatePhase,
        _f: File,
    ) -> Result<Option<File>> {
        Err(bad("no device state transfer"))
    }

    fn check_device_state(&mut self) -> Result<()> {
        Err(bad("no device state transfer"))
    }

    fn get_shmem_config(&mut self) -> Result<VhostUserShMemConfig> {
        Err(bad("no shared memory regions"))
    }

    fn set_log_base(&mut self, _l: &VhostUserLog, _f: File) -> Result<()> {
        Err(bad("dirty logging is not supported"))
    }
}

//! Guest memory: the frontend's memory regions (SET_MEM_TABLE), mapped into
//! the switch, and the translation of guest addresses to host pointers.
//!
//! Every translation checks that the whole range `[addr, addr + len)` lies
//! inside one region; a range that does not (outside guest memory, wrapping
//! around, or straddling two regions) is refused, and the caller treats the
//! descriptor that named it as bad. A region is only mapped if its file is
//! at least as long as the region, so a frontend cannot hand over a short
//! file whose missing tail would fault on access. A frontend that shrinks
//! its file later would make the next access raise SIGBUS: a file sealed
//! against shrinking (F_SEAL_SHRINK, as QEMU's memfd backend does) cannot,
//! and every other region is registered with the SIGBUS guard
//! ([`crate::sys::sigbus`]), which maps zeros over the missing tail and
//! marks the region; the data path checks [`GuestMem::faulted`] and drops
//! the frontend. `unsafe` here only declares the mapping pointers shareable.
#![allow(unsafe_code)]

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;

use crate::sys::Region as Mapping;
use crate::sys::sigbus;

/// Most regions a frontend may map (the protocol's limit without
/// CONFIGURE_MEM_SLOTS).
pub const MAX_REGIONS: usize = 8;

/// One region as the frontend describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegionDesc {
    pub guest_phys_addr: u64,
    pub memory_size: u64,
    pub user_addr: u64,
    pub mmap_offset: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum GuestMemError {
    #[error("{0} memory regions (at most {MAX_REGIONS})")]
    TooManyRegions(usize),
    #[error("{regions} memory regions but {files} file descriptors")]
    FdCount { regions: usize, files: usize },
    #[error("memory region {0} is empty, wraps around or overlaps another")]
    BadRegion(usize),
    #[error("memory region {0}'s file is shorter than the region")]
    ShortFile(usize),
    #[error("mapping memory region {0}: {1}")]
    Map(usize, std::io::Error),
    #[error("memory region {0}: too many unsealed regions in the switch to guard")]
    Guard(usize),
}

struct Region {
    gpa: u64,
    size: u64,
    uva: u64,
    host: *mut u8,
}

/// What keeps the regions' bytes alive.
enum Backing {
    Maps(#[allow(dead_code)] Vec<Mapping>),
    #[cfg(test)]
    Vec(#[allow(dead_code)] Vec<u64>),
}

/// A frontend's memory, mapped. Dropping it unmaps the regions: holders of
/// pointers it handed out must be gone by then (they borrow it through an
/// `Arc` held by the rings that use it).
pub struct GuestMem {
    regions: Vec<Region>,
    /// The regions whose files can shrink, registered with the SIGBUS guard.
    guards: Vec<sigbus::Guard>,
    _backing: Backing,
}

impl Drop for GuestMem {
    fn drop(&mut self) {
        // Unregistered before the backing unmaps them.
        self.guards.clear();
    }
}

// SAFETY: the mappings are plain shared memory owned by this value; the raw
// pointers only point into them. Access to the bytes is governed by the
// virtio ring protocol (see `virtq`).
unsafe impl Send for GuestMem {}
// SAFETY: as above; `GuestMem` has no interior mutability of its own.
unsafe impl Sync for GuestMem {}

fn end(start: u64, len: u64) -> Option<u64> {
    start.checked_add(len)
}

impl GuestMem {
    /// Maps `regions` from `files` (one file each, in order).
    pub fn map(regions: &[RegionDesc], files: Vec<File>) -> Result<GuestMem, GuestMemError> {
        if regions.len() > MAX_REGIONS {
            return Err(GuestMemError::TooManyRegions(regions.len()));
        }
        if regions.len() != files.len() {
            return Err(GuestMemError::FdCount {
                regions: regions.len(),
                files: files.len(),
            });
        }
        check_layout(regions)?;
        let mut maps = Vec::with_capacity(regions.len());
        let mut out = Vec::with_capacity(regions.len());
        let mut guards = Vec::new();
        for (i, (r, f)) in regions.iter().zip(files).enumerate() {
            let meta = f.metadata().map_err(|e| GuestMemError::Map(i, e))?;
            let need = end(r.mmap_offset, r.memory_size).ok_or(GuestMemError::BadRegion(i))?;
            if meta.len() < need {
                return Err(GuestMemError::ShortFile(i));
            }
            // hugetlbfs needs mappings of whole huge pages (its block size).
            let blk = meta.blksize().max(4096);
            let len = need
                .checked_next_multiple_of(blk)
                .and_then(|l| usize::try_from(l).ok())
                .ok_or(GuestMemError::BadRegion(i))?;
            let shrink = sigbus::can_shrink(f.as_raw_fd());
            let m = Mapping::map(OwnedFd::from(f), len).map_err(|e| GuestMemError::Map(i, e))?;
            if shrink {
                let align = usize::try_from(blk).unwrap_or(usize::MAX);
                guards.push(
                    sigbus::Guard::new(m.as_ptr(), m.len(), align)
                        .ok_or(GuestMemError::Guard(i))?,
                );
            }
            out.push(Region {
                gpa: r.guest_phys_addr,
                size: r.memory_size,
                uva: r.user_addr,
                host: m.as_ptr().wrapping_add(r.mmap_offset as usize),
            });
            maps.push(m);
        }
        Ok(GuestMem {
            regions: out,
            guards,
            _backing: Backing::Maps(maps),
        })
    }

    /// Fake guest memory for tests: one region of `words * 8` bytes at
    /// guest address `gpa` (and the same frontend address).
    #[cfg(test)]
    pub fn fake(gpa: u64, words: usize) -> GuestMem {
        let mut v = vec![0u64; words];
        let host = v.as_mut_ptr().cast::<u8>();
        GuestMem {
            regions: vec![Region {
                gpa,
                size: words as u64 * 8,
                uva: gpa,
                host,
            }],
            guards: Vec::new(),
            _backing: Backing::Vec(v),
        }
    }

    /// Whether the frontend shrank the file of a region the switch touched
    /// since: the missing part now reads as zeros, and the frontend must be
    /// dropped.
    #[inline]
    pub fn faulted(&self) -> bool {
        self.guards.iter().any(|g| g.faulted())
    }

    /// The host address of guest-physical range `[gpa, gpa + len)`, if it
    /// lies in one region.
    #[inline]
    pub fn translate(&self, gpa: u64, len: u64) -> Option<*mut u8> {
        let e = end(gpa, len)?;
        for r in &self.regions {
            if gpa >= r.gpa && e <= r.gpa + r.size {
                return Some(r.host.wrapping_add((gpa - r.gpa) as usize));
            }
        }
        None
    }

    /// Like `translate`, for an address in the frontend's own address space
    /// (how vhost-user names the rings).
    pub fn translate_uva(&self, uva: u64, len: u64) -> Option<*mut u8> {
        let e = end(uva, len)?;
        self.regions
            .iter()
            .find(|r| uva >= r.uva && e <= r.uva + r.size)
            .map(|r| r.host.wrapping_add((uva - r.uva) as usize))
    }
}

/// Regions must be non-empty, not wrap, and not overlap in guest-physical
/// or frontend-virtual addresses (so a translation is unambiguous).
fn check_layout(regions: &[RegionDesc]) -> Result<(), GuestMemError> {
    for (i, r) in regions.iter().enumerate() {
        let ok = r.memory_size > 0
            && end(r.guest_phys_addr, r.memory_size).is_some()
            && end(r.user_addr, r.memory_size).is_some()
            && usize::try_from(r.memory_size).is_ok();
        if !ok {
            return Err(GuestMemError::BadRegion(i));
        }
        for o in &regions[..i] {
            let overlap = |a: u64, b: u64| a < b + o.memory_size && b < a + r.memory_size;
            if overlap(r.guest_phys_addr, o.guest_phys_addr) || overlap(r.user_addr, o.user_addr) {
                return Err(GuestMemError::BadRegion(i));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn translation_stays_inside_regions() {
        let m = GuestMem::fake(0x1000, 512); // 4 KiB at 0x1000
        let base = m.translate(0x1000, 1).unwrap();
        assert_eq!(m.translate(0x1ff0, 16), Some(base.wrapping_add(0xff0)));
        assert!(m.translate(0x1ff0, 17).is_none());
        assert!(m.translate(0xfff, 2).is_none());
        assert!(m.translate(u64::MAX - 3, 8).is_none());
        assert!(m.translate(0x2000, 1).is_none());
        assert_eq!(m.translate_uva(0x1000, 4096), Some(base));
    }

    #[test]
    fn bad_tables_are_refused() {
        let r = |gpa, size, uva| RegionDesc {
            guest_phys_addr: gpa,
            memory_size: size,
            user_addr: uva,
            mmap_offset: 0,
        };
        assert!(check_layout(&[r(0, 4096, 0), r(4096, 4096, 4096)]).is_ok());
        assert!(check_layout(&[r(0, 0, 0)]).is_err());
        assert!(check_layout(&[r(u64::MAX - 10, 4096, 0)]).is_err());
        assert!(check_layout(&[r(0, 8192, 0), r(4096, 4096, 1 << 20)]).is_err());
        assert!(matches!(
            GuestMem::map(&[r(0, 4096, 0)], Vec::new()),
            Err(GuestMemError::FdCount { .. })
        ));
        let f = tempfile_of(100);
        assert!(matches!(
            GuestMem::map(&[r(0, 4096, 0)], vec![f]),
            Err(GuestMemError::ShortFile(0))
        ));
        let f = tempfile_of(8192);
        let m = GuestMem::map(
            &[RegionDesc {
                mmap_offset: 4096,
                ..r(0x10000, 4096, 0)
            }],
            vec![f],
        )
        .unwrap();
        assert!(m.translate(0x10000, 4096).is_some());
    }

    fn tempfile_of(len: u64) -> File {
        let p = std::env::temp_dir().join(format!("mswitch-gm-{}-{len}", std::process::id()));
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&p)
            .unwrap();
        f.set_len(len).unwrap();
        let _ = std::fs::remove_file(&p);
        f
    }
}

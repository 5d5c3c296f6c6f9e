//! The XDP side of an AF_XDP port, without a BPF toolchain: the redirect
//! program is assembled here as raw BPF instructions and loaded, together
//! with its XSKMAP, through the bpf(2) system call.
//!
//! The program is the classic AF_XDP redirector:
//!
//! ```text
//! r2 = *(u32 *)(r1 + 16)        ; key = ctx->rx_queue_index
//! r1 = map[xskmap]              ; two instruction slots (BPF_PSEUDO_MAP_FD)
//! r3 = XDP_PASS                 ; fallback action when no socket is bound
//! call bpf_redirect_map
//! exit
//! ```
//!
//! Frames arriving on a queue with a socket in the map go to that socket;
//! every other frame continues into the kernel stack unchanged.
//!
//! Constants and attribute layouts follow `<linux/bpf.h>` (checked against
//! the UAPI header: the offsets of every field used below are part of the
//! stable ABI). Every fd returned by bpf(2) is close-on-exec.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

// enum bpf_cmd
const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_LINK_CREATE: libc::c_long = 28;

// enum bpf_map_type, enum bpf_prog_type, enum bpf_attach_type
const BPF_MAP_TYPE_XSKMAP: u32 = 17;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_XDP: u32 = 37;

/// `BPF_ANY` for map updates: create or replace.
const BPF_ANY: u64 = 0;
/// src_reg of a 64-bit immediate load whose immediate is a map fd.
const BPF_PSEUDO_MAP_FD: u8 = 1;
/// `enum bpf_func_id`: `bpf_redirect_map`.
const BPF_FUNC_REDIRECT_MAP: i32 = 51;
/// `enum xdp_action`.
pub(crate) const XDP_PASS: i32 = 2;
/// Offset of `rx_queue_index` in `struct xdp_md`.
const XDP_MD_RX_QUEUE_INDEX: i16 = 16;

// Instruction classes, sizes, modes and operations (<linux/bpf_common.h>).
const BPF_LD: u8 = 0x00;
const BPF_LDX: u8 = 0x01;
const BPF_JMP: u8 = 0x05;
const BPF_ALU64: u8 = 0x07;
const BPF_W: u8 = 0x00;
const BPF_DW: u8 = 0x18;
const BPF_IMM: u8 = 0x00;
const BPF_MEM: u8 = 0x60;
const BPF_MOV: u8 = 0xb0;
const BPF_K: u8 = 0x00;
const BPF_CALL: u8 = 0x80;
const BPF_EXIT: u8 = 0x90;

/// `struct bpf_insn`: opcode, dst_reg (low nibble) and src_reg (high
/// nibble), offset, immediate.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Insn {
    pub code: u8,
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

impl Insn {
    const fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
        Insn {
            code,
            regs: (src << 4) | (dst & 0x0f),
            off,
            imm,
        }
    }

    /// The instruction as the 8 little-endian bytes the kernel reads.
    #[cfg(test)]
    fn to_bytes(self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[0] = self.code;
        b[1] = self.regs;
        b[2..4].copy_from_slice(&self.off.to_le_bytes());
        b[4..8].copy_from_slice(&self.imm.to_le_bytes());
        b
    }
}

/// The redirect program for the XSKMAP `map_fd`.
pub(crate) fn redirect_program(map_fd: i32) -> [Insn; 6] {
    [
        // r2 = *(u32 *)(r1 + 16)
        Insn::new(BPF_LDX | BPF_MEM | BPF_W, 2, 1, XDP_MD_RX_QUEUE_INDEX, 0),
        // r1 = map fd (64-bit immediate: low half here, high half next)
        Insn::new(BPF_LD | BPF_DW | BPF_IMM, 1, BPF_PSEUDO_MAP_FD, 0, map_fd),
        Insn::new(0, 0, 0, 0, 0),
        // r3 = XDP_PASS
        Insn::new(BPF_ALU64 | BPF_MOV | BPF_K, 3, 0, 0, XDP_PASS),
        // r0 = bpf_redirect_map(r1, r2, r3)
        Insn::new(BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_REDIRECT_MAP),
        // return r0
        Insn::new(BPF_JMP | BPF_EXIT, 0, 0, 0, 0),
    ]
}

/// `union bpf_attr` for BPF_MAP_CREATE (the prefix we use).
#[repr(C)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
}

/// `union bpf_attr` for BPF_MAP_*_ELEM.
#[repr(C)]
struct MapElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

/// `union bpf_attr` for BPF_PROG_LOAD (up to `expected_attach_type`).
#[repr(C)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// `union bpf_attr` for BPF_LINK_CREATE (the part common to all links).
#[repr(C)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
}

/// An object name for the kernel (at most 15 bytes, NUL padded).
fn obj_name(s: &str) -> [u8; 16] {
    let mut n = [0u8; 16];
    let b = s.as_bytes();
    let len = b.len().min(15);
    n[..len].copy_from_slice(&b[..len]);
    n
}

/// Runs one bpf(2) command whose attribute is the plain-data struct `attr`.
///
/// # Safety
/// `T` must be one of the `#[repr(C)]` attribute structs above, without
/// padding bytes, and every pointer it carries (as a `u64`) must be valid
/// for the access the command makes for the duration of the call.
unsafe fn sys_bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: the caller guarantees `attr` is a valid attribute prefix whose
    // embedded pointers are live; the kernel reads (and for some commands
    // writes) at most `size_of::<T>()` bytes of it.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            std::ptr::from_mut(attr).cast::<libc::c_void>(),
            size_of::<T>() as libc::c_uint,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn owned(fd: libc::c_long) -> OwnedFd {
    // SAFETY: bpf(2) just returned this new descriptor, owned by nobody else.
    unsafe { OwnedFd::from_raw_fd(fd as i32) }
}

/// Creates an XSKMAP of `max_entries` slots (one per queue).
pub(crate) fn create_xskmap(max_entries: u32) -> io::Result<OwnedFd> {
    let mut attr = MapCreateAttr {
        map_type: BPF_MAP_TYPE_XSKMAP,
        key_size: 4,
        value_size: 4,
        max_entries,
        map_flags: 0,
        inner_map_fd: 0,
        numa_node: 0,
        map_name: obj_name("mswitch_xsks"),
    };
    // SAFETY: a padding-free attribute struct carrying no pointers.
    unsafe { sys_bpf(BPF_MAP_CREATE, &mut attr) }.map(owned)
}

/// Sets `map[key] = fd` (an AF_XDP socket for an XSKMAP).
pub(crate) fn map_update(map: BorrowedFd<'_>, key: u32, fd: BorrowedFd<'_>) -> io::Result<()> {
    let value: u32 = fd.as_raw_fd() as u32;
    let mut attr = MapElemAttr {
        map_fd: map.as_raw_fd() as u32,
        _pad: 0,
        key: (&raw const key) as u64,
        value: (&raw const value) as u64,
        flags: BPF_ANY,
    };
    // SAFETY: padding-free attribute; `key` and `value` are live u32s on
    // this stack frame, which the kernel reads (4 bytes each) during the call.
    unsafe { sys_bpf(BPF_MAP_UPDATE_ELEM, &mut attr) }.map(|_| ())
}

/// Why the kernel refused the program.
#[derive(Debug)]
pub(crate) struct LoadError {
    pub err: io::Error,
    /// A one-line summary of the verifier's log (empty if it said nothing).
    pub log: String,
}

/// Loads the redirect program for `map` as an XDP program.
pub(crate) fn load_redirect_prog(map: BorrowedFd<'_>) -> Result<OwnedFd, LoadError> {
    let insns = redirect_program(map.as_raw_fd());
    // First without a log (cheapest, and a log that overflows its buffer
    // would itself fail the load); on failure, again with the verifier log.
    match prog_load(&insns, None) {
        Ok(fd) => Ok(fd),
        Err(err) if err.raw_os_error() == Some(libc::EPERM) => Err(LoadError {
            err,
            log: String::new(),
        }),
        Err(_) => {
            let mut buf = vec![0u8; 64 * 1024];
            prog_load(&insns, Some(&mut buf)).map_err(|err| LoadError {
                err,
                log: summarize_log(&buf),
            })
        }
    }
}

fn prog_load(insns: &[Insn], log: Option<&mut [u8]>) -> io::Result<OwnedFd> {
    let license = c"GPL";
    let (log_level, log_size, log_buf) = match log {
        Some(b) => (1, b.len() as u32, b.as_mut_ptr() as u64),
        None => (0, 0, 0),
    };
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_XDP,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level,
        log_size,
        log_buf,
        kern_version: 0,
        prog_flags: 0,
        prog_name: obj_name("mswitch_xsk"),
        prog_ifindex: 0,
        expected_attach_type: BPF_XDP,
    };
    // SAFETY: padding-free attribute; `insns` (insn_cnt * 8 bytes), the
    // NUL-terminated license and the log buffer (log_size bytes, written by
    // the kernel) all outlive the call.
    unsafe { sys_bpf(BPF_PROG_LOAD, &mut attr) }.map(owned)
}

/// The verifier log as one line: the first line of its complaint, skipping
/// the instruction and register-state trace (`N: ...`) and the statistics
/// (`processed N insns ...`); the log's first line if nothing else is left.
fn summarize_log(buf: &[u8]) -> String {
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let text = String::from_utf8_lossy(&buf[..end]);
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.clone().next().unwrap_or("");
    let is_trace = |l: &str| {
        let digits = l.bytes().take_while(u8::is_ascii_digit).count();
        (digits > 0 && l[digits..].starts_with(':'))
            || l.starts_with("processed ")
            || l.starts_with("func#")
    };
    lines.find(|l| !is_trace(l)).unwrap_or(first).to_owned()
}

/// Attaches `prog` to interface `ifindex` through a BPF link (flags 0: the
/// kernel picks driver mode when the driver supports XDP, generic mode
/// otherwise). Closing the returned fd detaches the program.
pub(crate) fn link_create(prog: BorrowedFd<'_>, ifindex: u32) -> io::Result<OwnedFd> {
    let mut attr = LinkCreateAttr {
        prog_fd: prog.as_raw_fd() as u32,
        target_ifindex: ifindex,
        attach_type: BPF_XDP,
        flags: 0,
    };
    // SAFETY: padding-free attribute struct carrying no pointers.
    unsafe { sys_bpf(BPF_LINK_CREATE, &mut attr) }.map(owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn program_encoding_matches_the_kernel_abi() {
        let p = redirect_program(7);
        let bytes: Vec<[u8; 8]> = p.iter().map(|i| i.to_bytes()).collect();
        // ldxw r2, [r1 + 16]
        assert_eq!(bytes[0], [0x61, 0x12, 16, 0, 0, 0, 0, 0]);
        // lddw r1, map_fd 7 (src_reg = BPF_PSEUDO_MAP_FD)
        assert_eq!(bytes[1], [0x18, 0x11, 0, 0, 7, 0, 0, 0]);
        assert_eq!(bytes[2], [0; 8]);
        // mov64 r3, 2
        assert_eq!(bytes[3], [0xb7, 0x03, 0, 0, 2, 0, 0, 0]);
        // call 51
        assert_eq!(bytes[4], [0x85, 0, 0, 0, 51, 0, 0, 0]);
        // exit
        assert_eq!(bytes[5], [0x95, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(size_of::<Insn>(), 8);
    }

    #[test]
    fn attribute_layouts_match_linux_bpf_h() {
        assert_eq!(size_of::<MapCreateAttr>(), 44);
        assert_eq!(std::mem::offset_of!(MapElemAttr, key), 8);
        assert_eq!(std::mem::offset_of!(MapElemAttr, value), 16);
        assert_eq!(std::mem::offset_of!(MapElemAttr, flags), 24);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, insns), 8);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, license), 16);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, log_level), 24);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, log_buf), 32);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, prog_flags), 44);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, prog_name), 48);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, expected_attach_type), 68);
        assert_eq!(size_of::<ProgLoadAttr>(), 72);
        assert_eq!(std::mem::offset_of!(LinkCreateAttr, attach_type), 8);
        assert_eq!(size_of::<LinkCreateAttr>(), 16);
    }

    #[test]
    fn verifier_rejections_come_with_the_log() {
        // SAFETY: no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: loading BPF programs needs root");
            return;
        }
        // r0 = *(u32 *)(r1 + 1000): outside struct xdp_md.
        let bad = [
            Insn::new(BPF_LDX | BPF_MEM | BPF_W, 0, 1, 1000, 0),
            Insn::new(BPF_JMP | BPF_EXIT, 0, 0, 0, 0),
        ];
        assert!(prog_load(&bad, None).is_err());
        let mut buf = vec![0u8; 64 * 1024];
        let err = prog_load(&bad, Some(&mut buf)).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EACCES));
        let log = summarize_log(&buf);
        assert!(log.contains("invalid bpf_context access"), "{log}");
        // And the real program loads.
        let map = create_xskmap(1).unwrap();
        load_redirect_prog(map.as_fd()).unwrap();
    }

    #[test]
    fn verifier_log_becomes_one_line() {
        let log = b"func#0 @0\n0: R1=ctx() R10=fp0\n0: (61) r0 = *(u32 *)(r1 +1000)\n\
            invalid bpf_context access off=1000 size=4\nprocessed 1 insns (limit 1000000)\n\0garbage";
        assert_eq!(
            summarize_log(log),
            "invalid bpf_context access off=1000 size=4"
        );
        assert_eq!(summarize_log(b"0: R1=ctx()\n\0"), "0: R1=ctx()");
        assert_eq!(summarize_log(b"only\n\0"), "only");
        assert_eq!(summarize_log(b"\0"), "");
    }
}

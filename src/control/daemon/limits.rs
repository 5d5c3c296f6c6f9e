//! Errors of the daemon's limits that come from the system: running out of
//! file descriptors names the limit instead of "Too many open files".

use crate::packet::MemError;

/// What went wrong making a port's memory, for a person: out of file
/// descriptors says which limit and how many each virtual port takes.
pub fn port_error(e: MemError) -> String {
    match &e {
        MemError::Os(io) if matches!(io.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
            let limit =
                crate::sys::res::fd_limit().map_or_else(|| "?".to_owned(), |n| n.to_string());
            format!(
                "out of file descriptors: the daemon may open {limit} (RLIMIT_NOFILE, raised to its hard limit at start; `ulimit -Hn` before starting the daemon raises it) and each virtual port takes 5 ({e})"
            )
        }
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_descriptors_names_the_limit() {
        let e = port_error(MemError::Os(std::io::Error::from_raw_os_error(
            libc::EMFILE,
        )));
        assert!(e.contains("RLIMIT_NOFILE"), "{e}");
        assert!(
            e.contains(&crate::sys::res::fd_limit().unwrap().to_string()),
            "{e}"
        );
        let e = port_error(MemError::RingSize(3));
        assert!(e.contains("power of two"), "{e}");
    }
}

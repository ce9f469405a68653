//! The process's open-file limit (`RLIMIT_NOFILE`): raised to its hard limit at startup, so
//! in_forward's `max_connections` is not cut short by a low default soft limit (often 1024).
//!
//! Owns only the two system calls (Linux; elsewhere a no-op). Must not be called on a tokio
//! worker in a hot path: it is for startup.

/// The soft and hard limit after [`raise_nofile_limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NofileLimit {
    pub soft: u64,
    pub hard: u64,
    /// The soft limit before it was raised.
    pub previous_soft: u64,
}

#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
mod sys {
    /// `struct rlimit`: two `rlim_t`, which is 64-bit on 64-bit Linux (glibc and musl).
    #[repr(C)]
    pub struct Rlimit {
        pub cur: u64,
        pub max: u64,
    }
    pub const RLIMIT_NOFILE: i32 = 7;
    extern "C" {
        pub fn getrlimit(resource: i32, rlim: *mut Rlimit) -> i32;
        pub fn setrlimit(resource: i32, rlim: *const Rlimit) -> i32;
    }
}

/// Raise the soft `RLIMIT_NOFILE` to the hard limit if it is lower; returns the effective limits.
#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
pub fn raise_nofile_limit() -> std::io::Result<NofileLimit> {
    let mut old = sys::Rlimit { cur: 0, max: 0 };
    // SAFETY: a valid pointer to a struct laid out as the C `struct rlimit`.
    if unsafe { sys::getrlimit(sys::RLIMIT_NOFILE, &mut old) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut limit = NofileLimit {
        soft: old.cur,
        hard: old.max,
        previous_soft: old.cur,
    };
    if old.cur < old.max {
        let new = sys::Rlimit {
            cur: old.max,
            max: old.max,
        };
        // SAFETY: as above.
        if unsafe { sys::setrlimit(sys::RLIMIT_NOFILE, &new) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        limit.soft = old.max;
    }
    Ok(limit)
}

#[cfg(not(all(target_os = "linux", target_pointer_width = "64")))]
pub fn raise_nofile_limit() -> std::io::Result<NofileLimit> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "RLIMIT_NOFILE is only managed on 64-bit Linux",
    ))
}

/// True for "out of file descriptors" (`EMFILE`, `ENFILE`), when accepting should back off.
pub fn is_fd_exhaustion(e: &std::io::Error) -> bool {
    // Linux values of EMFILE and ENFILE.
    matches!(e.raw_os_error(), Some(24) | Some(23))
}

#[cfg(all(test, target_os = "linux", target_pointer_width = "64"))]
mod tests {
    use super::*;

    #[test]
    fn raising_reaches_the_hard_limit_and_is_idempotent() {
        let first = raise_nofile_limit().unwrap();
        assert_eq!(first.soft, first.hard);
        let second = raise_nofile_limit().unwrap();
        assert_eq!(second.soft, first.soft);
        assert_eq!(second.previous_soft, second.soft);
        assert!(is_fd_exhaustion(&std::io::Error::from_raw_os_error(24)));
        assert!(!is_fd_exhaustion(&std::io::Error::from_raw_os_error(104)));
    }
}

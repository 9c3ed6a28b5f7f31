//! Socket activation (systemd.socket(5), sd_listen_fds(3)): listening
//! sockets systemd bound before starting postern (postern.socket), so the
//! service itself needs no CAP_NET_BIND_SERVICE for port 25.
//!
//! The protocol: `LISTEN_PID` is our pid (else the variables were meant for
//! another process and are ignored), `LISTEN_FDS` = n, and the sockets are
//! descriptors 3 .. 3+n, passed without close-on-exec. Each one is checked
//! (a stream socket that listens, IPv4 or IPv6), marked close-on-exec so
//! no pipe command inherits it, and handed over with its bound address;
//! anything else is logged and left alone. The variables are removed
//! afterwards, so no child of postern takes the sockets for its own.
//!
//! Owns nothing but the descriptors it adopts. Matching them to
//! `[[listener]]`s is [`take_for`]: the server binds what was not passed.

use std::net::{SocketAddr, TcpListener};
use std::ops::Range;
use std::os::fd::{BorrowedFd, FromRawFd, RawFd};

use nix::sys::socket::{getsockopt, sockopt, SockType};

/// The first passed descriptor (SD_LISTEN_FDS_START).
const FIRST_FD: RawFd = 3;
/// More than any socket unit would pass; a larger count is a broken
/// environment, not sockets.
const MAX_FDS: RawFd = 1024;

/// The listening sockets systemd passed to this process, each with its
/// bound address, in the order of the socket unit's `ListenStream=` lines.
/// Empty when postern was not socket-activated.
///
/// Call it once, at the very start of `serve`, before other threads run:
/// it removes `LISTEN_PID`, `LISTEN_FDS` and `LISTEN_FDNAMES` from the
/// environment (a second call finds nothing), and the environment must
/// not change while another thread reads it.
pub fn inherited_listeners() -> Vec<(SocketAddr, TcpListener)> {
    let pid = std::env::var("LISTEN_PID").ok();
    let count = std::env::var("LISTEN_FDS").ok();
    for var in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        std::env::remove_var(var);
    }
    match passed_fds(pid.as_deref(), count.as_deref(), std::process::id()) {
        Ok(fds) => adopt_all(fds),
        Err(e) => {
            crate::log::warning(&format!("socket activation: {e}; no sockets taken"));
            Vec::new()
        }
    }
}

/// The descriptors the variables name for process `me`.
fn passed_fds(pid: Option<&str>, count: Option<&str>, me: u32) -> Result<Range<RawFd>, String> {
    let none = FIRST_FD..FIRST_FD;
    let (Some(pid), Some(count)) = (pid, count) else {
        return Ok(none);
    };
    match pid.trim().parse::<u32>() {
        Ok(p) if p == me => {}
        Ok(_) => return Ok(none),
        Err(_) => return Err(format!("LISTEN_PID={pid:?} is not a process id")),
    }
    match count.trim().parse::<RawFd>() {
        Ok(n) if (0..=MAX_FDS).contains(&n) => Ok(FIRST_FD..FIRST_FD + n),
        _ => Err(format!(
            "LISTEN_FDS={count:?} is not a count of 0 to {MAX_FDS}"
        )),
    }
}

/// Every descriptor of `fds` that is a listening TCP socket; the others
/// are logged and left open.
fn adopt_all(fds: Range<RawFd>) -> Vec<(SocketAddr, TcpListener)> {
    let mut out = Vec::new();
    for fd in fds {
        match adopt(fd) {
            Ok(l) => out.push(l),
            Err(e) => crate::log::warning(&format!("socket activation: {e}; not used")),
        }
    }
    out
}

/// Takes `fd` as a listener, after checking it is one.
fn adopt(fd: RawFd) -> Result<(SocketAddr, TcpListener), String> {
    // SAFETY: the descriptor is only borrowed for these checks; fcntl
    // fails with EBADF if it is not open, and nothing is closed here.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    let flags = nix::fcntl::fcntl(borrowed, nix::fcntl::FcntlArg::F_GETFD)
        .map_err(|e| format!("descriptor {fd} is not open: {e}"))?;
    let stream = getsockopt(&borrowed, sockopt::SockType).map(|t| t == SockType::Stream);
    let listening = getsockopt(&borrowed, sockopt::AcceptConn).unwrap_or(false);
    if stream != Ok(true) || !listening {
        return Err(format!(
            "descriptor {fd} is not a listening stream socket (ListenStream= in the socket unit)"
        ));
    }
    let cloexec = nix::fcntl::FdFlag::from_bits_truncate(flags) | nix::fcntl::FdFlag::FD_CLOEXEC;
    nix::fcntl::fcntl(borrowed, nix::fcntl::FcntlArg::F_SETFD(cloexec))
        .map_err(|e| format!("descriptor {fd}: cannot set close-on-exec: {e}"))?;
    // SAFETY: systemd passed this listening socket to this process alone
    // (LISTEN_PID), and it is adopted once: the variables are removed
    // before the descriptors are looked at, and nothing else uses 3..3+n.
    let listener = unsafe { TcpListener::from_raw_fd(fd) };
    match listener.local_addr() {
        Ok(addr) => Ok((addr, listener)),
        Err(e) => {
            // A Unix socket: not ours to serve SMTP on; leave it open.
            std::mem::forget(listener);
            Err(format!(
                "descriptor {fd} is not an IPv4 or IPv6 socket: {e}"
            ))
        }
    }
}

/// Removes and returns the inherited listener a `[[listener]]` configured
/// on `configured` should use: one bound to that very address, or, for a
/// wildcard address (0.0.0.0, ::), one bound to a wildcard address of the
/// same port (`ListenStream=25` binds `[::]:25`, both families). A
/// configured port 0 never matches: the kernel picks it at bind.
pub fn take_for(
    inherited: &mut Vec<(SocketAddr, TcpListener)>,
    configured: SocketAddr,
) -> Option<(SocketAddr, TcpListener)> {
    if configured.port() == 0 {
        return None;
    }
    let i = inherited
        .iter()
        .position(|(a, _)| *a == configured)
        .or_else(|| {
            inherited.iter().position(|(a, _)| {
                a.port() == configured.port()
                    && a.ip().is_unspecified()
                    && configured.ip().is_unspecified()
            })
        })?;
    Some(inherited.remove(i))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::{AsRawFd, IntoRawFd};

    #[test]
    fn variables_for_us_name_descriptors_from_3() {
        assert_eq!(passed_fds(Some("42"), Some("2"), 42), Ok(3..5));
        assert_eq!(passed_fds(Some(" 42\n"), Some("0"), 42), Ok(3..3));
    }

    #[test]
    fn variables_for_another_process_or_none_are_ignored() {
        assert_eq!(passed_fds(Some("41"), Some("2"), 42), Ok(3..3));
        assert_eq!(passed_fds(None, None, 42), Ok(3..3));
        assert_eq!(passed_fds(Some("42"), None, 42), Ok(3..3));
        assert_eq!(passed_fds(None, Some("2"), 42), Ok(3..3));
    }

    #[test]
    fn broken_variables_are_reported() {
        let e = passed_fds(Some("x"), Some("1"), 42).unwrap_err();
        assert!(e.contains("LISTEN_PID"), "{e}");
        for bad in ["-1", "two", "100000"] {
            let e = passed_fds(Some("42"), Some(bad), 42).unwrap_err();
            assert!(e.contains("LISTEN_FDS") && e.contains("0 to 1024"), "{e}");
        }
    }

    /// A listener as systemd would pass it: open, listening, no CLOEXEC.
    fn passed_listener() -> (SocketAddr, RawFd) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let fd = l.into_raw_fd();
        // SAFETY: fd is the listener just released above.
        let b = unsafe { BorrowedFd::borrow_raw(fd) };
        nix::fcntl::fcntl(
            b,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
        )
        .unwrap();
        (addr, fd)
    }

    fn cloexec(fd: RawFd) -> bool {
        // SAFETY: borrowed for one fcntl.
        let b = unsafe { BorrowedFd::borrow_raw(fd) };
        let f = nix::fcntl::fcntl(b, nix::fcntl::FcntlArg::F_GETFD).unwrap();
        nix::fcntl::FdFlag::from_bits_truncate(f).contains(nix::fcntl::FdFlag::FD_CLOEXEC)
    }

    #[test]
    fn a_passed_listener_is_adopted_with_its_address_and_accepts() {
        let (addr, fd) = passed_listener();
        assert!(!cloexec(fd));
        let got = adopt_all(fd..fd + 1);
        assert_eq!(got.len(), 1);
        let (bound, listener) = &got[0];
        assert_eq!(*bound, addr);
        assert_eq!(listener.as_raw_fd(), fd);
        assert!(cloexec(fd), "a pipe command must not inherit the SMTP port");
        let mut client = std::net::TcpStream::connect(addr).unwrap();
        client.write_all(b"x").unwrap();
        let (mut conn, _) = listener.accept().unwrap();
        let mut b = [0u8; 1];
        conn.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"x");
    }

    #[test]
    fn other_descriptors_are_refused_and_left_open() {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let unlistened = nix::sys::socket::socket(
            nix::sys::socket::AddressFamily::Inet,
            SockType::Stream,
            nix::sys::socket::SockFlag::empty(),
            None,
        )
        .unwrap();
        let (reader, _writer) = nix::unistd::pipe().unwrap();
        for fd in [udp.as_raw_fd(), unlistened.as_raw_fd(), reader.as_raw_fd()] {
            let e = adopt(fd).unwrap_err();
            assert!(e.contains("not a listening stream socket"), "{e}");
            // SAFETY: borrowed for one fcntl; still open means not closed.
            let b = unsafe { BorrowedFd::borrow_raw(fd) };
            assert!(nix::fcntl::fcntl(b, nix::fcntl::FcntlArg::F_GETFD).is_ok());
        }
        assert!(adopt_all(reader.as_raw_fd()..reader.as_raw_fd() + 1).is_empty());
    }

    #[test]
    fn a_unix_listener_is_refused_and_left_open() {
        let dir = std::env::temp_dir().join(format!("postern-activation-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let unix = std::os::unix::net::UnixListener::bind(dir.join("s")).unwrap();
        let e = adopt(unix.as_raw_fd()).unwrap_err();
        assert!(e.contains("not an IPv4 or IPv6 socket"), "{e}");
        drop(unix);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn configured_addresses_take_their_own_socket() {
        let a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let b = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let (aa, ba) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        let mut inherited = vec![(aa, a), (ba, b)];
        assert_eq!(take_for(&mut inherited, ba).map(|(x, _)| x), Some(ba));
        assert!(take_for(&mut inherited, ba).is_none(), "taken once");
        assert!(take_for(&mut inherited, "127.0.0.1:0".parse().unwrap()).is_none());
        let other: SocketAddr = format!("127.0.0.2:{}", aa.port()).parse().unwrap();
        assert!(
            take_for(&mut inherited, other).is_none(),
            "another address, same port"
        );
        assert_eq!(inherited.len(), 1);
    }

    #[test]
    fn wildcard_listeners_match_by_port() {
        let l = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
        let port = l.local_addr().unwrap().port();
        // What `ListenStream=PORT` binds: [::]:PORT.
        let passed: SocketAddr = format!("[::]:{port}").parse().unwrap();
        let mut inherited = vec![(passed, l)];
        let loopback: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        assert!(take_for(&mut inherited, loopback).is_none());
        let wildcard: SocketAddr = format!("0.0.0.0:{port}").parse().unwrap();
        assert_eq!(
            take_for(&mut inherited, wildcard).map(|(x, _)| x),
            Some(passed)
        );
    }
}

//! One message over a SEQPACKET socket, with fds attached (SCM_RIGHTS).
//! The jail's parent sends its init the cgroup files to join this way, and
//! the supervisor's spawner and daemon pass pidfds with it. Whether a call
//! may block is the caller's choice of socket mode and flags.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags, UnixAddr};

/// Room for this many fds in one message: more than any sender here
/// attaches (a jail's cgroup files, one per v1 hierarchy), and any extra
/// that arrives is closed rather than cut off (MSG_CTRUNC would leave the
/// ones received unreachable).
pub const FDS_PER_MESSAGE: usize = 8;

/// Sends `bytes` as one message, with `fds` attached. Never raises
/// SIGPIPE: a peer that is gone is EPIPE.
pub fn send(sock: BorrowedFd<'_>, bytes: &[u8], fds: &[BorrowedFd<'_>], flags: MsgFlags) -> nix::Result<()> {
    let iov = [IoSlice::new(bytes)];
    let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let cmsgs: Vec<ControlMessage<'_>> =
        if raw.is_empty() { Vec::new() } else { vec![ControlMessage::ScmRights(&raw)] };
    let sent = sendmsg::<UnixAddr>(sock.as_raw_fd(), &iov, &cmsgs, flags | MsgFlags::MSG_NOSIGNAL, None)?;
    // SEQPACKET sends a message whole or not at all.
    debug_assert_eq!(sent, bytes.len());
    Ok(())
}

/// One received message.
#[derive(Debug)]
pub struct Received {
    /// Bytes of the message in the buffer; 0 is end of file (no protocol
    /// here sends an empty message).
    pub len: usize,
    /// The message was longer than the buffer and was cut.
    pub truncated: bool,
    /// The fds that came with it, close-on-exec, in the order sent.
    pub fds: Vec<OwnedFd>,
}

/// Receives one message into `buf`, with its fds.
pub fn recv(sock: BorrowedFd<'_>, buf: &mut [u8], flags: MsgFlags) -> nix::Result<Received> {
    let mut cmsg_space = nix::cmsg_space!([RawFd; FDS_PER_MESSAGE]);
    let mut iov = [IoSliceMut::new(buf)];
    let msg =
        recvmsg::<UnixAddr>(sock.as_raw_fd(), &mut iov, Some(&mut cmsg_space), flags | MsgFlags::MSG_CMSG_CLOEXEC)?;
    let mut fds = Vec::new();
    for cmsg in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(raw) = cmsg {
            fds.extend(raw.iter().map(|&fd| {
                // SAFETY: recvmsg(2) just installed these fds in this
                // process for this message only; nothing else knows them,
                // so each gets exactly one owner.
                unsafe { OwnedFd::from_raw_fd(fd) }
            }));
        }
    }
    Ok(Received { len: msg.bytes, truncated: msg.flags.contains(MsgFlags::MSG_TRUNC), fds })
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    use std::os::fd::AsFd;

    fn pair() -> (OwnedFd, OwnedFd) {
        socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC).unwrap()
    }

    #[test]
    fn a_message_and_its_fd_arrive_together_and_close_on_exec() {
        let (a, b) = pair();
        let (r, w) = nix::unistd::pipe().unwrap();
        send(a.as_fd(), b"hello", &[r.as_fd()], MsgFlags::empty()).unwrap();
        drop(r);
        let mut buf = [0u8; 64];
        let got = recv(b.as_fd(), &mut buf, MsgFlags::empty()).unwrap();
        assert_eq!(&buf[..got.len], b"hello");
        assert!(!got.truncated);
        assert_eq!(got.fds.len(), 1);
        let fd = got.fds.into_iter().next().unwrap();
        let flags = nix::fcntl::fcntl(fd.as_fd(), nix::fcntl::FcntlArg::F_GETFD).unwrap();
        assert_ne!(flags & libc::FD_CLOEXEC, 0);
        // It is the pipe's read end: what is written comes out of it.
        nix::unistd::write(&w, b"x").unwrap();
        let mut one = [0u8; 1];
        assert_eq!(nix::unistd::read(&fd, &mut one).unwrap(), 1);
    }

    #[test]
    fn boundaries_are_kept_and_long_messages_are_flagged() {
        let (a, b) = pair();
        send(a.as_fd(), b"one", &[], MsgFlags::empty()).unwrap();
        send(a.as_fd(), b"twotwotwo", &[], MsgFlags::empty()).unwrap();
        let mut buf = [0u8; 4];
        let first = recv(b.as_fd(), &mut buf, MsgFlags::empty()).unwrap();
        assert_eq!((first.len, first.truncated), (3, false));
        let second = recv(b.as_fd(), &mut buf, MsgFlags::empty()).unwrap();
        assert!(second.truncated && second.fds.is_empty());
        drop(a);
        assert_eq!(recv(b.as_fd(), &mut buf, MsgFlags::empty()).unwrap().len, 0, "end of file");
    }
}

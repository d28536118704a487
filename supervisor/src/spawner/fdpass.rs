//! One message over a SEQPACKET socket, with at most one fd attached
//! (SCM_RIGHTS). Both sides use these; whether a call may block is the
//! caller's choice of socket mode and flags.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags, UnixAddr};

use super::sys;

/// Room for this many fds in one message: the protocol sends at most one,
/// and any extra that arrives is closed rather than cut off (MSG_CTRUNC
/// would leave the ones received unreachable).
const FDS_PER_MESSAGE: usize = 4;

/// Sends `bytes` as one message, with `fd` attached when given. Never
/// raises SIGPIPE: a peer that is gone is EPIPE.
pub(crate) fn send(sock: BorrowedFd<'_>, bytes: &[u8], fd: Option<BorrowedFd<'_>>, flags: MsgFlags) -> nix::Result<()> {
    let iov = [IoSlice::new(bytes)];
    let fds: Vec<RawFd> = fd.iter().map(|f| f.as_raw_fd()).collect();
    let cmsgs: Vec<ControlMessage<'_>> =
        if fds.is_empty() { Vec::new() } else { vec![ControlMessage::ScmRights(&fds)] };
    let sent = sendmsg::<UnixAddr>(sock.as_raw_fd(), &iov, &cmsgs, flags | MsgFlags::MSG_NOSIGNAL, None)?;
    // SEQPACKET sends a message whole or not at all.
    debug_assert_eq!(sent, bytes.len());
    Ok(())
}

/// One received message.
#[derive(Debug)]
pub(crate) struct Received {
    /// Bytes of the message in the buffer; 0 is end of file (the protocol
    /// never sends an empty message).
    pub len: usize,
    /// The message was longer than the buffer and was cut.
    pub truncated: bool,
    /// The first fd that came with it.
    pub fd: Option<OwnedFd>,
}

/// Receives one message into `buf`. Received fds are close-on-exec.
pub(crate) fn recv(sock: BorrowedFd<'_>, buf: &mut [u8], flags: MsgFlags) -> nix::Result<Received> {
    let mut cmsg_space = nix::cmsg_space!([RawFd; FDS_PER_MESSAGE]);
    let mut iov = [IoSliceMut::new(buf)];
    let msg =
        recvmsg::<UnixAddr>(sock.as_raw_fd(), &mut iov, Some(&mut cmsg_space), flags | MsgFlags::MSG_CMSG_CLOEXEC)?;
    let mut fds = Vec::new();
    for cmsg in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(raw) = cmsg {
            fds.extend(sys::own_received_fds(&raw));
        }
    }
    // Extra fds are dropped (closed) here.
    let fd = fds.into_iter().next();
    Ok(Received { len: msg.bytes, truncated: msg.flags.contains(MsgFlags::MSG_TRUNC), fd })
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
        send(a.as_fd(), b"hello", Some(r.as_fd()), MsgFlags::empty()).unwrap();
        drop(r);
        let mut buf = [0u8; 64];
        let got = recv(b.as_fd(), &mut buf, MsgFlags::empty()).unwrap();
        assert_eq!(&buf[..got.len], b"hello");
        assert!(!got.truncated);
        let fd = got.fd.expect("an fd came with the message");
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
        send(a.as_fd(), b"one", None, MsgFlags::empty()).unwrap();
        send(a.as_fd(), b"twotwotwo", None, MsgFlags::empty()).unwrap();
        let mut buf = [0u8; 4];
        let first = recv(b.as_fd(), &mut buf, MsgFlags::empty()).unwrap();
        assert_eq!((first.len, first.truncated), (3, false));
        let second = recv(b.as_fd(), &mut buf, MsgFlags::empty()).unwrap();
        assert!(second.truncated && second.fd.is_none());
        drop(a);
        assert_eq!(recv(b.as_fd(), &mut buf, MsgFlags::empty()).unwrap().len, 0, "end of file");
    }
}

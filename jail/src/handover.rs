//! The run's part of a jail, handed to its init when the program is to
//! start: what [`crate::spawn::Prepared::start`] sends over the sync socket
//! and the init receives, once it has built the profile's part of the root.
//!
//! The bytes (program, environment, host name, the run's mount ops) travel
//! in a memfd, so their size has no limit but memory; the fds (the
//! program's stdio, the detached trees of the run's binds, on cgroup v1 the
//! files to join the jail's group by) travel with SCM_RIGHTS, in as many
//! messages as they need.

use std::io::{self, Read, Seek, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::sys::socket::MsgFlags;
use serde::{Deserialize, Serialize};

use crate::fdpass::{self, FDS_PER_MESSAGE};
use crate::mount::MountOp;

/// The first message: the memfd with the [`RunPart`].
const PART: &[u8] = b"R";
/// The messages after it: the fds the part counts.
const FDS: &[u8] = b"F";

/// What the init needs of the run, as bytes.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct RunPart {
    pub hostname: String,
    pub argv: Vec<String>,
    /// `K=V` each.
    pub env: Vec<String>,
    /// The PATH the program is looked up on.
    pub path_var: String,
    /// Which of stdin, stdout and stderr come as fds (the others are
    /// inherited).
    pub stdio: [bool; 3],
    /// The run's mount ops; a bind's `src_tree.fd` is an index into the
    /// trees sent, not an fd number.
    pub mounts: Vec<MountOp>,
    pub trees: usize,
    pub cgroup_files: usize,
}

/// The fds that go with a [`RunPart`], in the order they are sent.
pub(crate) struct RunFds<'a> {
    pub stdio: [Option<BorrowedFd<'a>>; 3],
    pub trees: Vec<BorrowedFd<'a>>,
    pub cgroup_files: Vec<BorrowedFd<'a>>,
}

/// A [`RunPart`] as the init received it, with its fds.
pub(crate) struct Received {
    /// The part, its binds' `src_tree.fd` now the received trees' fds.
    pub part: RunPart,
    pub stdio: [Option<OwnedFd>; 3],
    /// Kept open until the run's mounts are attached.
    pub trees: Vec<OwnedFd>,
    pub cgroup_files: Vec<std::fs::File>,
}

/// Sends `part` and its fds. The counts in `part` must match `fds`.
pub(crate) fn send(sock: BorrowedFd<'_>, part: &RunPart, fds: &RunFds<'_>) -> io::Result<()> {
    debug_assert_eq!(fds.stdio.map(|f| f.is_some()), part.stdio);
    debug_assert_eq!((fds.trees.len(), fds.cgroup_files.len()), (part.trees, part.cgroup_files));
    let bytes = serde_json::to_vec(part).map_err(io::Error::other)?;
    let mut memfd =
        std::fs::File::from(nix::sys::memfd::memfd_create(c"ccos-jail-run", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)?);
    memfd.write_all(&bytes)?;
    fdpass::send(sock, PART, &[memfd.as_fd()], MsgFlags::empty())?;
    let all: Vec<BorrowedFd<'_>> =
        fds.stdio.iter().flatten().chain(&fds.trees).chain(&fds.cgroup_files).copied().collect();
    for batch in all.chunks(FDS_PER_MESSAGE) {
        fdpass::send(sock, FDS, batch, MsgFlags::empty())?;
    }
    Ok(())
}

/// Receives a [`RunPart`] and its fds. End of file (the parent dropped the
/// jail unstarted, or died) is `UnexpectedEof`.
pub(crate) fn receive(sock: BorrowedFd<'_>) -> io::Result<Received> {
    let mut memfd = std::fs::File::from(expect_message(sock, PART)?.into_iter().next().ok_or_else(|| bad("no memfd"))?);
    memfd.rewind()?;
    let mut bytes = Vec::new();
    memfd.read_to_end(&mut bytes)?;
    let mut part: RunPart = serde_json::from_slice(&bytes).map_err(|e| bad(&format!("the run's part: {e}")))?;

    let wanted = part.stdio.iter().filter(|s| **s).count() + part.trees + part.cgroup_files;
    let mut fds = Vec::with_capacity(wanted);
    while fds.len() < wanted {
        fds.extend(expect_message(sock, FDS)?);
    }
    if fds.len() != wanted {
        return Err(bad(&format!("{} fds for a run's part that counts {wanted}", fds.len())));
    }
    let mut fds = fds.into_iter();
    let stdio = part.stdio.map(|given| if given { fds.next() } else { None });
    let trees: Vec<OwnedFd> = fds.by_ref().take(part.trees).collect();
    let cgroup_files = fds.map(std::fs::File::from).collect();
    for op in &mut part.mounts {
        if let MountOp::Bind { src_tree: Some(tree), .. } = op {
            let fd = trees.get(tree.fd as usize).ok_or_else(|| bad("a bind names a tree that was not sent"))?;
            tree.fd = fd.as_raw_fd();
        }
    }
    Ok(Received { part, stdio, trees, cgroup_files })
}

/// One message with tag `tag`; its fds.
fn expect_message(sock: BorrowedFd<'_>, tag: &[u8]) -> io::Result<Vec<OwnedFd>> {
    let mut buf = [0u8; 1];
    let got = fdpass::recv(sock, &mut buf, MsgFlags::empty())?;
    if got.len == 0 {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the parent went away before the run's part came"));
    }
    if buf[..got.len] != *tag || got.truncated {
        return Err(bad("an unexpected message on the sync socket"));
    }
    Ok(got.fds)
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mount::SourceTree;
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    use std::path::PathBuf;

    #[test]
    fn a_part_and_more_fds_than_one_message_holds_arrive_in_order() {
        let (a, b) = socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC).unwrap();
        // Pipes stand in for the fds: each read end's peer says its index.
        let pipes: Vec<(OwnedFd, OwnedFd)> = (0..FDS_PER_MESSAGE + 3).map(|_| nix::unistd::pipe().unwrap()).collect();
        for (i, (_, w)) in pipes.iter().enumerate() {
            nix::unistd::write(w, &[i as u8]).unwrap();
        }
        let reads: Vec<BorrowedFd<'_>> = pipes.iter().map(|(r, _)| r.as_fd()).collect();
        let bind = |i| MountOp::Bind {
            src: PathBuf::from("/src"),
            dst: PathBuf::from(format!("/dst{i}")),
            read_only: true,
            from_jail: false,
            src_tree: Some(SourceTree { fd: i, is_dir: true }),
            src_is_dir: Some(true),
        };
        let trees = FDS_PER_MESSAGE;
        let part = RunPart {
            hostname: "h".into(),
            argv: vec!["/bin/true".into(), "a\nb".into()],
            env: vec!["K=V".into()],
            path_var: "/bin".into(),
            stdio: [true, false, true],
            mounts: vec![bind(0), bind(trees as i32 - 1)],
            trees,
            cgroup_files: 1,
        };
        let fds = RunFds {
            stdio: [Some(reads[0]), None, Some(reads[1])],
            trees: reads[2..2 + trees].to_vec(),
            cgroup_files: vec![reads[2 + trees]],
        };
        send(a.as_fd(), &part, &fds).unwrap();
        let got = receive(b.as_fd()).unwrap();
        assert_eq!(got.part.argv, part.argv);
        let index = |fd: &OwnedFd| {
            let mut byte = [0u8; 1];
            nix::unistd::read(fd, &mut byte).unwrap();
            byte[0] as usize
        };
        assert_eq!(got.stdio.each_ref().map(|f| f.as_ref().map(index)), [Some(0), None, Some(1)]);
        let raw = |i: usize| got.trees[i].as_raw_fd();
        assert!(matches!(got.part.mounts[1], MountOp::Bind { src_tree: Some(t), .. } if t.fd == raw(trees - 1)));
        assert_eq!(got.trees.iter().map(index).collect::<Vec<_>>(), (2..2 + trees).collect::<Vec<_>>());
        assert_eq!(got.cgroup_files.len(), 1);
        drop(a);
        assert_eq!(receive(b.as_fd()).err().map(|e| e.kind()), Some(io::ErrorKind::UnexpectedEof));
    }
}

//! ccos-jail: run one program in a jail made of fresh Linux namespaces, a
//! minimal read-only root, no capabilities, no_new_privs, a seccomp filter and
//! a cgroup with limits.
//!
//! The library is what the supervisor spawns every agent through; the
//! `ccos-jail` binary is a thin command line over it, usable on its own the
//! way people use `bwrap` or `nsjail`.
//!
//! Following one spawn: [`spec`] (what to run) -> [`spawn`] (parent side:
//! clone, id maps, cgroup placement, waiting) -> [`init`] (child side: PID 1
//! of the jail, builds the root, forks the program) -> [`report`] (how it
//! ended). Every `unsafe` call lives in [`sys`].

pub mod beside;
pub mod caps;
pub mod cgroup;
pub mod doctor;
pub mod error;
pub mod fdpass;
mod handover;
pub mod idmap;
pub mod init;
pub mod mount;
pub mod net;
mod placement;
pub mod profile;
pub mod report;
pub mod seccomp;
pub mod size;
pub mod spawn;
pub mod spec;
pub mod sys;

pub use error::Error;
pub use profile::Profile;
pub use report::{EndReason, Report};
pub use spawn::{spawn, Jail};
pub use spec::JailSpec;

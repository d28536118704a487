//! The crate's error: one variant per module, each naming what failed.

use crate::{cgroup, idmap, mount, profile, report};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Profile(#[from] profile::ProfileError),
    #[error(transparent)]
    Mount(#[from] mount::MountError),
    #[error(transparent)]
    IdMap(#[from] idmap::IdMapError),
    #[error(transparent)]
    Cgroup(#[from] cgroup::CgroupError),
    #[error(transparent)]
    Setup(#[from] report::SetupFailure),
    #[error("the command line is empty: nothing to run")]
    NoProgram,
    #[error("a jail prepared for {prepared} cannot run {wanted}")]
    NotPreparedFor { wanted: String, prepared: String },
    #[error("{what}: {source}")]
    Os { what: String, source: std::io::Error },
    #[error(
        "spawning a jail from a multi-threaded process is not safe (the child would inherit locks held by other \
         threads); spawn from a single-threaded process such as ccos-jail or the supervisor's spawner"
    )]
    MultiThreaded,
}

impl Error {
    pub fn os(what: impl Into<String>, source: impl Into<std::io::Error>) -> Error {
        Error::Os { what: what.into(), source: source.into() }
    }
}

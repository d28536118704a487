//! Cgroups for jails. (Interface stub: the v1 and v2 backends land with their
//! own commit.)

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CgroupError(pub String);

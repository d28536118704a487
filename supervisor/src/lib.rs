//! ccos-supervisor: runs each AI agent in a jail (crate `ccos-jail`) and
//! governs it: the run lifecycle, budgets, and a hash-chained audit log,
//! over a Unix-socket HTTP API. See ../shared/DESIGN.md and API.md.
//!
//! Modules so far (the foundation of the daemon):
//! - [`model`]: the API's data types (runs, budgets, usage, messages, audit
//!   events), exactly as API.md names them;
//! - [`lifecycle`]: the run state machine, written down in one place;
//! - [`audit`]: the hash chain (canonical JSON, sha256, verification);
//! - [`store`]: the only module with SQL: SQLite with versioned migrations;
//! - [`spawner`]: the single-threaded process, forked before the async
//!   runtime, that makes jails and hands back pidfds;
//! - [`daemon`]: the run manager, wiring the store, the spawner and the API;
//! - [`api`]: the admin API (hyper over the Unix socket);
//! - [`capabilities`], [`secrets`], [`redact`]: what agents may call, the
//!   secrets some capabilities use, and the redaction of every log line and
//!   audit detail;
//! - [`systemd`], [`logging`], [`kept_spawner`]: the daemon's process
//!   around them (socket activation and sd_notify, the log, the spawner a
//!   previous instance kept).

pub mod api;
pub mod audit;
pub mod capabilities;
pub mod client;
pub mod daemon;
pub mod kept_spawner;
pub mod lifecycle;
pub mod logging;
pub mod model;
pub mod once;
pub mod redact;
pub mod secrets;
pub mod spawner;
pub mod store;
pub mod systemd;

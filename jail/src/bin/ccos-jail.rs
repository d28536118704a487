//! `ccos-jail`: run one program in a jail, check a profile, or check a host.
//!
//! A thin command line over the `ccos_jail` library: it parses, builds a
//! [`JailSpec`], spawns, waits and reports. Errors are printed once, here,
//! with their Display text.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use ccos_jail::cgroup::{self, CgroupConfig, Cgroups, Controller, Detection};
use ccos_jail::net::PreparedNetwork;
use ccos_jail::profile::{BindMount, Limits, NetworkMode, TmpfsMount};
use ccos_jail::spawn::CgroupSource;

use ccos_jail::size::{parse_bytes, parse_duration};
use ccos_jail::{JailSpec, Profile};

/// Exit code for errors of ccos-jail itself (as Docker and Podman use 125).
const JAIL_ERROR: u8 = 125;
/// The name of a jail's cgroup is this and ccos-jail's pid.
const CGROUP_PREFIX: &str = "jail-";
/// Where root's ccos-jail keeps compiled seccomp programs between runs.
const SECCOMP_CACHE_DIR: &str = "/var/cache/ccos-jail/seccomp";
/// Overrides SECCOMP_CACHE_DIR; `off` or empty turns the cache off.
const SECCOMP_CACHE_ENV: &str = "CCOS_JAIL_CACHE_DIR";

#[derive(Parser)]
#[command(
    name = "ccos-jail",
    version,
    about = "Run a program in a jail: fresh namespaces, a minimal read-only root, no capabilities, seccomp and cgroup limits"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run PROGRAM in a new jail and exit with its exit code (128+signal if killed).
    Run(Box<RunArgs>),
    /// Parse and compile a jail profile (name or .toml) or a seccomp profile (.json); print what it enforces.
    CheckProfile {
        /// A shipped profile name, a jail profile .toml, or an OCI seccomp .json.
        profile: String,
    },
    /// Say what this kernel and host allow, and exit non-zero where a jail cannot be made safely.
    Doctor {
        #[command(flatten)]
        cgroups: CgroupArgs,
    },
}

/// Where jails' cgroups go.
#[derive(clap::Args)]
struct CgroupArgs {
    /// The cgroup that holds the jails' groups when the process has no
    /// delegated subtree: on v2 a path in the cgroup2 mount (default
    /// /sys/fs/cgroup/ccos), on v1 a path relative to each hierarchy (default ccos).
    #[arg(long, value_name = "PATH")]
    cgroup_root: Option<PathBuf>,
}

impl CgroupArgs {
    fn config(&self) -> CgroupConfig {
        CgroupConfig { root: self.cgroup_root.clone(), ..CgroupConfig::default() }
    }
}

#[derive(clap::Args)]
struct RunArgs {
    /// A shipped profile name (default, strict) or a path to a profile .toml.
    #[arg(long, default_value = "default")]
    profile: String,
    /// Bind a host path into the jail: SRC:DST[:ro|:rw] (read-only unless :rw).
    #[arg(long, value_name = "SRC:DST[:ro|:rw]")]
    bind: Vec<String>,
    /// A fresh tmpfs in the jail: DST[:SIZE] (default size 16M).
    #[arg(long, value_name = "DST[:SIZE]")]
    tmpfs: Vec<String>,
    /// Set a variable in the program's environment.
    #[arg(long, value_name = "K=V")]
    env: Vec<String>,
    /// The jail's host name.
    #[arg(long)]
    hostname: Option<String>,
    /// none: lo down; loopback: lo up. Either way a fresh network namespace.
    #[arg(long, value_name = "none|loopback")]
    net: Option<NetworkMode>,
    /// Memory limit (e.g. 256M), overriding the profile's.
    #[arg(long, value_name = "SIZE")]
    memory: Option<String>,
    /// Maximum number of processes in the jail, its init included.
    #[arg(long, value_name = "N")]
    pids: Option<u64>,
    /// CPU limit as a number of CPUs (e.g. 0.5).
    #[arg(long, value_name = "CPUS")]
    cpus: Option<f64>,
    /// Wall-time limit (e.g. 30s, 1500ms); the whole jail is killed at the limit.
    #[arg(long, value_name = "DURATION")]
    time_limit: Option<String>,
    /// Write the outcome as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    report_json: Option<PathBuf>,
    #[command(flatten)]
    cgroups: CgroupArgs,
    /// The program and its arguments.
    #[arg(last = true, required = true, value_name = "PROGRAM ARGS")]
    argv: Vec<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run(*args),
        Command::CheckProfile { profile } => check_profile(&profile).map(|()| 0),
        Command::Doctor { cgroups } => Ok(doctor(&cgroups.config())),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("ccos-jail: {}", error_chain(&e));
            ExitCode::from(JAIL_ERROR)
        }
    }
}

/// The error and its causes, each once: our errors already put their
/// cause's text in their own message, so a cause is shown only when the
/// message before it does not contain it.
fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
    }
    out
}

/// Each ccos-jail is a fresh process, so the in-memory cache of compiled
/// seccomp programs never hits; a disk cache saves compiling the same
/// profile on every spawn. Root's default directory is one only root can
/// write; anyone else names theirs (the library refuses a directory that
/// others could write to).
fn use_seccomp_cache() {
    let dir = match std::env::var_os(SECCOMP_CACHE_ENV) {
        Some(v) if v.is_empty() || v == "off" => return,
        Some(v) => PathBuf::from(v),
        None if nix::unistd::geteuid().is_root() => PathBuf::from(SECCOMP_CACHE_DIR),
        None => return,
    };
    ccos_jail::seccomp::use_disk_cache(dir);
}

fn run(args: RunArgs) -> Result<u8> {
    // The jail's network namespace is the costliest thing to make before
    // clone (lo's device and its sysctls, about half a millisecond): this
    // thread makes it while a second one reads the profile and finds the
    // cgroups. With `lo` down it serves either network mode (spawn brings
    // `lo` up for a loopback jail); should making it fail, the clone makes
    // one, and reports what fails.
    let reading = ccos_jail::beside::beside({
        let (profile, config, accounting) = (args.profile.clone(), args.cgroups.config(), args.report_json.is_some());
        move || read_profile_and_cgroups(&profile, &config, accounting)
    });
    let network_started = std::time::Instant::now();
    let network = PreparedNetwork::make(NetworkMode::None).ok();
    let network_ms = network_started.elapsed().as_secs_f64() * 1e3;
    let Setup { profile, detection, cgroups, profile_ms, cgroup_ms } = reading.finish()?;
    let mut spec = JailSpec::new(profile, args.argv);
    spec.network_ready = network;
    for b in &args.bind {
        spec.binds.push(parse_bind(b)?);
    }
    for t in &args.tmpfs {
        spec.tmpfs.push(parse_tmpfs(t)?);
    }
    for kv in &args.env {
        let (k, v) = kv.split_once('=').with_context(|| format!("--env {kv:?}: expected K=V"))?;
        if k.is_empty() {
            bail!("--env {kv:?}: the name is empty");
        }
        spec.env.push((k.to_string(), v.to_string()));
    }
    spec.hostname = args.hostname;
    spec.network = args.net;
    spec.limits = Limits {
        memory_bytes: args
            .memory
            .as_deref()
            .map(parse_bytes)
            .transpose()
            .map_err(anyhow::Error::msg)
            .context("--memory")?,
        pids: args.pids,
        cpus: args.cpus,
        time_limit: args
            .time_limit
            .as_deref()
            .map(parse_duration)
            .transpose()
            .map_err(anyhow::Error::msg)
            .context("--time-limit")?,
    };

    // Signals for ccos-jail are passed on to the program; block them so they
    // queue on a signalfd instead of killing us (the child unblocks them).
    let mut forwarded = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP, Signal::SIGQUIT, Signal::SIGUSR1, Signal::SIGUSR2] {
        forwarded.add(s);
    }
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&forwarded), None).context("blocking signals")?;
    let signals =
        SignalFd::with_flags(&forwarded, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK).context("signalfd")?;

    let name = format!("{CGROUP_PREFIX}{}", std::process::id());
    let limits = ccos_jail::spawn::cgroup_limits(&spec.limits());
    let mut jail = ccos_jail::spawn(&spec, CgroupSource::Make { cgroups: &cgroups, name: &name, limits })?;
    if args.report_json.is_none() {
        // Only the exit status is wanted.
        jail.skip_accounting();
    }
    // While the program runs (nothing waits on this), in every hierarchy:
    // a run that asked for a report had a group in cpuacct too.
    if let Ok(all) = Cgroups::open(&detection) {
        remove_stale_groups(&all);
    }
    if let Some(failure) = jail.setup_failure() {
        eprintln!("ccos-jail: {failure}");
    }
    let mut report = jail.wait(Some(&signals))?;
    report.timings.network_ms = Some(network_ms);
    report.timings.profile_ms = Some(profile_ms);
    report.timings.cgroup_ms = Some(cgroup_ms);
    if let Some(path) = &args.report_json {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, json + "\n").with_context(|| format!("writing --report-json {}", path.display()))?;
    }
    Ok(report.shell_exit_code().clamp(0, 255) as u8)
}

/// What `run` reads while it makes the network namespace.
struct Setup {
    profile: Arc<Profile>,
    /// The host's cgroups, and of them those this run uses.
    detection: Detection,
    cgroups: Cgroups,
    profile_ms: f64,
    cgroup_ms: f64,
}

fn read_profile_and_cgroups(profile: &str, config: &CgroupConfig, accounting: bool) -> Result<Setup> {
    let started = std::time::Instant::now();
    use_seccomp_cache();
    let profile = Arc::new(Profile::resolve(profile)?);
    let profile_ms = started.elapsed().as_secs_f64() * 1e3;
    let cgroup_started = std::time::Instant::now();
    let detection = cgroup::detect(config)?;
    // On v1, only the hierarchies this run uses: the limits', and cpuacct
    // for a report's CPU time. Never the freezer: nothing here pauses a jail,
    // and a kill reaches every process through the jail's pid namespace.
    let mut wanted = vec![Controller::Memory, Controller::Pids, Controller::Cpu];
    if accounting {
        wanted.push(Controller::Cpuacct);
    }
    let cgroups = Cgroups::open(&detection.with_hierarchies_of(&wanted))?;
    let cgroup_ms = cgroup_started.elapsed().as_secs_f64() * 1e3;
    Ok(Setup { profile, detection, cgroups, profile_ms, cgroup_ms })
}

/// Removes the empty groups of ccos-jail processes that died without
/// cleaning up (SIGKILL): `jail-<pid>` whose pid is gone.
fn remove_stale_groups(cgroups: &Cgroups) {
    let owner_is_dead = |name: &str| {
        name.strip_prefix(CGROUP_PREFIX)
            .and_then(|pid| pid.parse::<i32>().ok())
            .is_some_and(|pid| nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_err())
    };
    let _ = cgroups.remove_stale(CGROUP_PREFIX, owner_is_dead);
}

fn parse_bind(text: &str) -> Result<BindMount> {
    let parts: Vec<&str> = text.split(':').collect();
    let (src, dst, read_only) = match parts.as_slice() {
        [src, dst] => (*src, *dst, true),
        [src, dst, "ro"] => (*src, *dst, true),
        [src, dst, "rw"] => (*src, *dst, false),
        _ => bail!("--bind {text:?}: expected SRC:DST, SRC:DST:ro or SRC:DST:rw"),
    };
    if src.is_empty() || dst.is_empty() {
        bail!("--bind {text:?}: SRC and DST must not be empty");
    }
    let src = std::path::absolute(src).with_context(|| format!("--bind {text:?}"))?;
    Ok(BindMount { src, dst: PathBuf::from(dst), read_only })
}

fn parse_tmpfs(text: &str) -> Result<TmpfsMount> {
    let (dst, size) = match text.split_once(':') {
        Some((d, s)) => (d, parse_bytes(s).map_err(|e| anyhow::anyhow!("--tmpfs {text:?}: {e}"))?),
        None => (text, 16 << 20),
    };
    Ok(TmpfsMount { dst: PathBuf::from(dst), size_bytes: size })
}

fn check_profile(name_or_path: &str) -> Result<()> {
    // What it prints comes from a fresh compile either way (describe()
    // compiles a cached entry again); using the cache here fills it, so a
    // check after installing a profile also makes its first run fast.
    use_seccomp_cache();
    if name_or_path.ends_with(".json") {
        let compiled = ccos_jail::seccomp::load_file(std::path::Path::new(name_or_path))?;
        println!("{}", compiled.describe());
        return Ok(());
    }
    let p = Profile::resolve(name_or_path)?;
    println!("profile {} ({})", p.name, p.origin);
    println!("  hash:      {}", p.hash);
    println!("  ids:       uid {} gid {} inside, a private range outside", p.uid, p.gid);
    println!("  hostname:  {}", p.hostname);
    println!("  network:   {:?}", p.network);
    println!("  cwd:       {}", p.cwd.display());
    println!("  /tmp:      tmpfs, {} bytes", p.tmp_size_bytes);
    println!("  env pass:  {:?}", p.env_pass);
    println!("  env set:   {:?}", p.env_set);
    for r in &p.rlimits {
        println!("  rlimit:    {} = {}", r.name, r.value);
    }
    let l = &p.limits;
    println!(
        "  limits:    memory {:?} bytes, pids {:?}, cpus {:?}, time limit {:?}",
        l.memory_bytes, l.pids, l.cpus, l.time_limit
    );
    for b in &p.binds {
        println!("  bind:      {} -> {} ({})", b.src.display(), b.dst.display(), if b.read_only { "ro" } else { "rw" });
    }
    for t in &p.tmpfs {
        println!("  tmpfs:     {} ({} bytes)", t.dst.display(), t.size_bytes);
    }
    println!("seccomp {}:", p.seccomp_source);
    println!("{}", p.seccomp.describe());
    Ok(())
}

/// Prints every check; exits 1 when a required one failed.
fn doctor(cgroups: &CgroupConfig) -> u8 {
    let checks = ccos_jail::doctor::run_checks(cgroups);
    for c in &checks {
        let mark = match (c.ok, c.required) {
            (true, _) => "ok  ",
            (false, true) => "FAIL",
            (false, false) => "warn",
        };
        println!("{mark} {:<22} {}", c.name, c.detail.replace('\n', "\n                            "));
    }
    if checks.iter().any(|c| c.required && !c.ok) {
        println!("\na jail cannot be made safely on this host: see the FAIL lines above");
        return 1;
    }
    0
}

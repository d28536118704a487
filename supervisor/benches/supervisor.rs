//! The supervisor benchmark: the real `ccos-supervisor` binary, started on a
//! temporary socket and state directory, measured from the outside through
//! its admin API (see bench/README.md, "Supervisor"):
//!
//! 1. **create-to-exec**: from just before `POST /v1/runs` is sent to the
//!    first instruction of the agent (`bench/first-instruction.c`, which
//!    reads CLOCK_REALTIME before anything else and prints it), with where
//!    that time goes, from the run's audit events and the daemon's metrics;
//! 2. **throughput**: runs of `/bin/true` created and ended per second,
//!    through K concurrent clients;
//! 3. **`GET /v1/runs/{id}` per second**, over keep-alive connections and
//!    with a connection per request (as `ccosctl` does);
//! 4. **memory**: VmRSS of the daemon and of its spawner with 200 idle jails
//!    (`/bin/sleep infinity`), then every run cancelled and nothing left.
//!
//! `cargo bench -p ccos-supervisor --bench supervisor` (as root), or
//! `bench/supervisor.sh`. Prints a table and writes `bench/work/supervisor.json`.
//! Environment: `CCOS_SUPERVISOR` (the daemon binary; default the one cargo
//! built for this bench), `CCOS_BENCH_LATENCY_RUNS` (300),
//! `CCOS_BENCH_TP_RUNS` (1000 per client count), `CCOS_BENCH_TP_CLIENTS`
//! (`2,4,8`), `CCOS_BENCH_GET_SECS` (3 per thread count),
//! `CCOS_BENCH_GET_THREADS` (`1,4,16`), `CCOS_BENCH_IDLE_RUNS` (200),
//! `CCOS_BENCH_PARTS` (`latency,throughput,get,memory`: which parts run),
//! `CCOS_BENCH_DIR` (where the temporary directory goes; default `$TMPDIR`,
//! which should be on the disk the daemon would use: its commits fsync).

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ccos_supervisor::client::Client;
use ccos_supervisor::model::Timestamp;
use serde_json::{json, Value};

type BenchResult<T> = Result<T, String>;

/// The targets.
const TARGET_CREATE_TO_EXEC_MEDIAN_MS: f64 = 2.5;
const TARGET_RUNS_PER_SEC: f64 = 300.0;
const TARGET_DAEMON_RSS_MIB: f64 = 50.0;

/// Where the agent binary is installed: the jail binds `/usr` read-only
/// from the host, so it sees this (and nothing of the temporary directory).
const AGENT_PARENT: &str = "/usr/local/libexec";
const AGENT_DIR_PREFIX: &str = "ccos-bench-";

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` (or
    // --all-targets) runs this binary without it: nothing to do then.
    if !std::env::args().any(|a| a == "--bench") {
        println!("supervisor bench: run it with `cargo bench -p ccos-supervisor --bench supervisor` (as root)");
        return;
    }
    if !nix::unistd::geteuid().is_root() {
        eprintln!("supervisor bench: needs root (the daemon makes jails): SKIPPED");
        std::process::exit(if std::env::var("CI").as_deref() == Ok("true") { 1 } else { 0 });
    }
    match run() {
        Ok(all_met) => {
            if !all_met {
                println!("\nsome targets are not met (see the table); the figures are in bench/work/supervisor.json");
            }
        }
        Err(e) => {
            eprintln!("supervisor bench: FAILED: {e}");
            std::process::exit(1);
        }
    }
}

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn env_list(name: &str, default: &[usize]) -> Vec<usize> {
    std::env::var(name)
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).filter(|&n| n > 0).collect::<Vec<_>>())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_vec())
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the crate is in the workspace").to_owned()
}

/// Nanoseconds since the epoch, CLOCK_REALTIME (what the agent reads).
fn realtime_ns() -> i128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as i128).unwrap_or(0)
}

fn run() -> BenchResult<bool> {
    // Only some parts (to profile one of them): the others measure nothing.
    let parts = std::env::var("CCOS_BENCH_PARTS").unwrap_or_else(|_| "latency,throughput,get,memory".into());
    let part = |name: &str| parts.split(',').any(|p| p.trim() == name);
    let latency_runs = if part("latency") { env_num("CCOS_BENCH_LATENCY_RUNS", 300) } else { 0 };
    let tp_runs = env_num("CCOS_BENCH_TP_RUNS", 1000);
    let tp_clients = if part("throughput") { env_list("CCOS_BENCH_TP_CLIENTS", &[2, 4, 8]) } else { Vec::new() };
    let get_secs = env_num("CCOS_BENCH_GET_SECS", 3) as u64;
    let get_threads = if part("get") { env_list("CCOS_BENCH_GET_THREADS", &[1, 4, 16]) } else { Vec::new() };
    let idle_runs = if part("memory") { env_num("CCOS_BENCH_IDLE_RUNS", 200) } else { 0 };

    let binary = std::env::var_os("CCOS_SUPERVISOR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_ccos-supervisor")));
    if !binary.is_file() {
        return Err(format!("{}: no such daemon binary (set CCOS_SUPERVISOR)", binary.display()));
    }
    let parent = std::env::var_os("CCOS_BENCH_DIR").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::Builder::new()
        .prefix("ccos-bench-sup-")
        .tempdir_in(&parent)
        .map_err(|e| format!("temporary directory in {}: {e}", parent.display()))?;
    let agent = Agent::build(dir.path())?;
    let fsync = fsync_latency(dir.path(), 200)?;
    let busy_before = cpu_busy_pct(Duration::from_secs(1));
    if busy_before > 10.0 {
        eprintln!("== WARNING: the CPUs were {busy_before:.0}% busy just before timing: something else runs; figures will be noisy");
    }

    eprintln!("== daemon {}", binary.display());
    eprintln!("== state in {} (fsync of a 4 KiB append there: median {:.3} ms)", dir.path().display(), fsync.median);
    let mut daemon = DaemonProcess::start(&binary, dir.path())?;
    let client = Client::new(&daemon.socket);
    let info = client.get("/v1/info").map_err(|e| e.to_string())?.json();
    let rss_at_start = read_rss(daemon.pid()).unwrap_or(0);

    let outcome = (|| -> BenchResult<Figures> {
        eprintln!("== 1. create-to-exec: {latency_runs} sequential runs of {}", agent.path.display());
        let latency = create_to_exec(&client, &agent.path, latency_runs)?;
        eprintln!("== 2. throughput: {tp_runs} runs of /bin/true through {tp_clients:?} clients");
        let mut throughput = Vec::new();
        for &k in &tp_clients {
            throughput.push(throughput_run(&daemon.socket, k, tp_runs)?);
        }
        eprintln!("== 3. GET /v1/runs/{{id}}: {get_secs} s per thread count {get_threads:?}");
        let get = get_rate(&client, &daemon.socket, &get_threads, Duration::from_secs(get_secs))?;
        eprintln!("== 4. memory with {idle_runs} idle jailed runs");
        let memory = idle_memory(&client, &daemon, idle_runs)?;
        Ok(Figures { latency, throughput, get, memory })
    })();

    // Whatever happened: stop the daemon and check that nothing is left.
    let spawner = spawner_of(daemon.pid());
    let stopped = daemon.stop();
    let leftovers = leftovers(&daemon.socket, spawner);
    let log = std::fs::read_to_string(&daemon.log).unwrap_or_default();
    drop(agent);
    drop(dir);
    let figures = outcome.map_err(|e| format!("{e}\ndaemon log (tail):\n{}", tail(&log, 40)))?;
    stopped?;
    let busy = (busy_before, cpu_busy_pct(Duration::from_secs(1)));
    if busy.1 > 10.0 {
        eprintln!("== WARNING: the CPUs were {:.0}% busy just after the daemon stopped: figures may be noisy", busy.1);
    }

    let report = Report { figures, fsync, info, binary, leftovers, rss_at_start, busy };
    report.print();
    report.write_json(&repo_root().join("bench/work/supervisor.json"))?;
    if !report.leftovers.is_empty() {
        return Err(format!("left behind: {:?}", report.leftovers));
    }
    Ok(report.all_met())
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

// ---------------------------------------------------------------------------
// The agent
// ---------------------------------------------------------------------------

/// `bench/first-instruction.c`, compiled and installed where jails see it;
/// removed on drop.
struct Agent {
    dir: PathBuf,
    path: PathBuf,
}

impl Agent {
    fn build(work: &Path) -> BenchResult<Agent> {
        let source = repo_root().join("bench/first-instruction.c");
        let built = work.join("first-instruction");
        let status = Command::new("gcc")
            .args(["-O2", "-static", "-nostdlib", "-ffreestanding", "-fno-stack-protector", "-o"])
            .arg(&built)
            .arg(&source)
            .status()
            .map_err(|e| format!("running gcc (apt-get install gcc): {e}"))?;
        if !status.success() {
            return Err(format!("gcc {} failed: {status}", source.display()));
        }
        // Directories of benchmarks that died before cleaning up.
        if let Ok(entries) = std::fs::read_dir(AGENT_PARENT) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if let Some(pid) = name.strip_prefix(AGENT_DIR_PREFIX).and_then(|p| p.parse::<u32>().ok()) {
                    if !Path::new(&format!("/proc/{pid}")).exists() {
                        let _ = std::fs::remove_dir_all(entry.path());
                    }
                }
            }
        }
        let dir = Path::new(AGENT_PARENT).join(format!("{AGENT_DIR_PREFIX}{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let agent = Agent { path: dir.join("first-instruction"), dir };
        std::fs::set_permissions(&agent.dir, std::fs::Permissions::from_mode(0o755))
            .and_then(|()| std::fs::copy(&built, &agent.path))
            .and_then(|_| std::fs::set_permissions(&agent.path, std::fs::Permissions::from_mode(0o755)))
            .map_err(|e| format!("installing {}: {e}", agent.path.display()))?;
        // It must print a plausible time here, outside any jail.
        let out = Command::new(&agent.path).output().map_err(|e| format!("running {}: {e}", agent.path.display()))?;
        let printed = parse_ns(&out.stdout).ok_or_else(|| format!("{} printed {:?}", agent.path.display(), out))?;
        if (realtime_ns() - printed).abs() > 1_000_000_000 {
            return Err(format!("{} printed {printed}, not the time", agent.path.display()));
        }
        Ok(agent)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn parse_ns(out: &[u8]) -> Option<i128> {
    std::str::from_utf8(out).ok()?.trim().parse().ok()
}

// ---------------------------------------------------------------------------
// The daemon
// ---------------------------------------------------------------------------

struct DaemonProcess {
    child: Option<Child>,
    socket: PathBuf,
    log: PathBuf,
}

impl DaemonProcess {
    fn start(binary: &Path, dir: &Path) -> BenchResult<DaemonProcess> {
        let socket = dir.join("ccos.sock");
        let log = dir.join("daemon.log");
        let log_file = std::fs::File::create(&log).map_err(|e| e.to_string())?;
        let err_file = log_file.try_clone().map_err(|e| e.to_string())?;
        let mut command = Command::new(binary);
        command
            .arg("--socket")
            .arg(&socket)
            .arg("--state-dir")
            .arg(dir.join("state"))
            .env_remove("CCOS_SOCKET")
            .env_remove("CCOS_STATE_DIR")
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(err_file);
        // SAFETY: prctl is async-signal-safe and touches no memory of ours;
        // it only asks the kernel to SIGTERM the daemon (which then cancels
        // its runs and exits) if this benchmark dies without stopping it.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong, 0, 0, 0) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().map_err(|e| format!("starting {}: {e}", binary.display()))?;
        let mut daemon = DaemonProcess { child: Some(child), socket, log };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if daemon.socket.exists() && Client::new(&daemon.socket).get("/_ping").is_ok_and(|r| r.status == 200) {
                return Ok(daemon);
            }
            if let Some(status) = daemon.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                let log = std::fs::read_to_string(&daemon.log).unwrap_or_default();
                return Err(format!("the daemon exited ({status}) before serving; log:\n{log}"));
            }
            if Instant::now() > deadline {
                return Err("the daemon did not answer /_ping within 20 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn pid(&self) -> i32 {
        self.child.as_ref().map_or(0, |c| c.id() as i32)
    }

    /// SIGTERM (the daemon cancels what is live and exits 0), SIGKILL after 20 s.
    fn stop(&mut self) -> BenchResult<()> {
        let Some(mut child) = self.child.take() else { return Ok(()) };
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return if status.success() { Ok(()) } else { Err(format!("the daemon exited with {status}")) };
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        Err("the daemon did not exit within 20 s of SIGTERM: killed".into())
    }
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// The daemon's spawner: its child (forked at start; the jails are the
/// spawner's children, not the daemon's).
fn spawner_of(daemon: i32) -> Option<i32> {
    children_of(daemon).into_iter().next()
}

fn children_of(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for task in tasks.flatten() {
            if let Ok(list) = std::fs::read_to_string(task.path().join("children")) {
                out.extend(list.split_whitespace().filter_map(|p| p.parse::<i32>().ok()));
            }
        }
    }
    out.sort_unstable();
    out
}

/// A `/proc/<pid>/status` field, in kB.
fn status_kb(pid: i32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':')?.trim().strip_suffix("kB")?.trim().parse().ok())
}

fn read_rss(pid: i32) -> Option<u64> {
    status_kb(pid, "VmRSS")
}

/// Pids (other than this process) whose command line contains `marker`,
/// as the daemon's tests look for leftovers.
fn processes_marked(marker: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| String::from_utf8_lossy(&c).contains(marker))
        })
        .collect()
}

/// After the daemon stopped: processes naming its socket, and run cgroups of
/// its spawner (`<hierarchy>/ccos/run-<spawner pid>-<run id>`), waited for
/// up to 15 s.
fn leftovers(socket: &Path, spawner: Option<i32>) -> Vec<String> {
    let marker = socket.to_string_lossy().into_owned();
    let find = || {
        let mut left: Vec<String> = processes_marked(&marker).iter().map(|p| format!("process {p}")).collect();
        if let Some(spawner) = spawner {
            left.extend(run_cgroups(spawner));
        }
        left
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let left = find();
        if left.is_empty() || Instant::now() > deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Cgroup directories of this spawner's runs, in every hierarchy.
fn run_cgroups(spawner: i32) -> Vec<String> {
    let prefix = format!("run-{spawner}-");
    let mut found = Vec::new();
    let mut dirs = vec![PathBuf::from("/sys/fs/cgroup")];
    // Breadth-first, four levels: <root>/<hierarchy>/<...>/ccos/run-*.
    for _ in 0..5 {
        let mut next = Vec::new();
        for dir in dirs {
            if let Ok(entries) = std::fs::read_dir(&dir) {
                for e in entries.flatten() {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        if e.file_name().to_string_lossy().starts_with(&prefix) {
                            found.push(e.path().display().to_string());
                        } else {
                            next.push(e.path());
                        }
                    }
                }
            }
        }
        dirs = next;
    }
    found
}

// ---------------------------------------------------------------------------
// Statistics
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, Default)]
struct Stats {
    n: usize,
    min: f64,
    median: f64,
    p90: f64,
    p99: f64,
    max: f64,
    mean: f64,
}

impl Stats {
    fn of(values: &[f64]) -> Stats {
        if values.is_empty() {
            return Stats::default();
        }
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        // Nearest rank.
        let at = |p: f64| v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
        Stats {
            n: v.len(),
            min: v[0],
            median: at(0.5),
            p90: at(0.9),
            p99: at(0.99),
            max: v[v.len() - 1],
            mean: v.iter().sum::<f64>() / v.len() as f64,
        }
    }

    fn json(&self) -> Value {
        json!({"n": self.n, "min": r3(self.min), "median": r3(self.median), "p90": r3(self.p90),
               "p99": r3(self.p99), "max": r3(self.max), "mean": r3(self.mean)})
    }
}

fn r3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// fdatasync of a 4 KiB append in the state directory's file system: the
/// floor of one SQLite commit with `synchronous=FULL` (one WAL sync).
fn fsync_latency(dir: &Path, n: usize) -> BenchResult<Stats> {
    let path = dir.join("fsync-probe");
    let mut file = std::fs::File::create(&path).map_err(|e| e.to_string())?;
    let page = [0x5au8; 4096];
    let mut ms = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        file.write_all(&page).and_then(|()| file.sync_data()).map_err(|e| format!("fsync probe: {e}"))?;
        ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    drop(file);
    let _ = std::fs::remove_file(&path);
    Ok(Stats::of(&ms))
}

// ---------------------------------------------------------------------------
// 1. create-to-exec
// ---------------------------------------------------------------------------

struct Latency {
    /// t0 (just before the POST) to the agent's first instruction, ms.
    create_to_exec: Stats,
    /// t0 to the 201 read back.
    post_answered: Stats,
    /// t0 to the end of `wait` (the run recorded terminal).
    terminal: Stats,
    /// Medians of the milestones of a run, ms after t0 (see `MILESTONES`).
    milestones: Vec<(&'static str, Stats)>,
    /// Mean spawner round trip over these runs (the daemon's
    /// `ccos_spawn_seconds`), ms.
    spawner_round_trip_mean: f64,
}

/// Milestones of one run, in the order they happen.
const MILESTONES: [(&str, &str); 6] = [
    ("run.create audited", "the create transaction, before its COMMIT (audit `at` of run.create)"),
    ("agent's first instruction", "CLOCK_REALTIME read by the agent"),
    ("run.start audited", "the spawner has answered; before that COMMIT"),
    ("201 read by the client", "the POST answered"),
    ("run.exit audited", "the spawner's Exited handled; before that COMMIT"),
    ("wait answered", "GET .../wait returned the terminal run"),
];

fn create_to_exec(client: &Client, agent: &Path, runs: usize) -> BenchResult<Latency> {
    let argv = agent.to_string_lossy().into_owned();
    let metrics_before = spawn_metrics(client)?;
    let (mut c2e, mut posted, mut terminal) = (Vec::new(), Vec::new(), Vec::new());
    let mut marks: Vec<Vec<f64>> = vec![Vec::new(); MILESTONES.len()];
    // A few runs first, not counted: the first spawn of a profile compiles
    // its seccomp filter, and caches are cold.
    let warmup = 5;
    for i in 0..runs + warmup {
        let body = json!({"session_id": format!("lat-{i}"), "goal": "create-to-exec", "agent": {"argv": [argv]}});
        let body = body.to_string();
        let t0 = realtime_ns();
        let created = client.request("POST", "/v1/runs", Some(body.as_bytes())).map_err(|e| e.to_string())?;
        let t_posted = realtime_ns();
        if created.status != 201 {
            return Err(format!("POST /v1/runs: {} {}", created.status, String::from_utf8_lossy(&created.body)));
        }
        let id = created.json()["id"].as_str().ok_or("no run id")?.to_owned();
        let done = client.get(&format!("/v1/runs/{id}/wait?timeout_secs=10")).map_err(|e| e.to_string())?;
        let t_done = realtime_ns();
        let state = done.json()["state"].as_str().unwrap_or("?").to_owned();
        if state != "done" {
            return Err(format!("run {id} ended {state}: {}", String::from_utf8_lossy(&done.body)));
        }
        let out = client.get(&format!("/v1/runs/{id}/logs?stream=stdout")).map_err(|e| e.to_string())?;
        let exec = parse_ns(&out.body).ok_or_else(|| format!("run {id}: stdout {:?}", out.body))?;
        if i < warmup {
            continue;
        }
        let ms = |t: i128| (t - t0) as f64 / 1e6;
        c2e.push(ms(exec));
        posted.push(ms(t_posted));
        terminal.push(ms(t_done));
        let audit = client.get(&format!("/v1/audit?run_id={id}&limit=50")).map_err(|e| e.to_string())?.json();
        let at = |ty: &str| -> Option<f64> {
            let events = audit["events"].as_array()?;
            let e = events.iter().find(|e| e["type"] == ty)?;
            let ts = Timestamp::parse(e["at"].as_str()?).ok()?;
            Some(ms(ts.unix_micros() as i128 * 1000))
        };
        let values =
            [at("run.create"), Some(ms(exec)), at("run.start"), Some(ms(t_posted)), at("run.exit"), Some(ms(t_done))];
        for (mark, v) in marks.iter_mut().zip(values) {
            if let Some(v) = v {
                mark.push(v);
            }
        }
    }
    let metrics_after = spawn_metrics(client)?;
    let spawns = metrics_after.1 - metrics_before.1;
    let spawner_round_trip_mean =
        if spawns > 0.0 { (metrics_after.0 - metrics_before.0) / spawns * 1e3 } else { f64::NAN };
    Ok(Latency {
        create_to_exec: Stats::of(&c2e),
        post_answered: Stats::of(&posted),
        terminal: Stats::of(&terminal),
        milestones: MILESTONES.iter().zip(&marks).map(|((name, _), v)| (*name, Stats::of(v))).collect(),
        spawner_round_trip_mean,
    })
}

/// (`ccos_spawn_seconds_sum`, `ccos_spawn_seconds_count`) from /metrics.
fn spawn_metrics(client: &Client) -> BenchResult<(f64, f64)> {
    let text = client.get("/metrics").map_err(|e| e.to_string())?.body;
    let text = String::from_utf8_lossy(&text);
    let value = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse::<f64>().ok())
            .ok_or_else(|| format!("/metrics has no {name}"))
    };
    Ok((value("ccos_spawn_seconds_sum")?, value("ccos_spawn_seconds_count")?))
}

// ---------------------------------------------------------------------------
// 2. throughput
// ---------------------------------------------------------------------------

struct Throughput {
    clients: usize,
    runs: usize,
    secs: f64,
    runs_per_sec: f64,
    /// Per run, one client's view: POST answered, and POST to terminal, ms.
    post: Stats,
    create_to_terminal: Stats,
    not_done: usize,
}

fn throughput_run(socket: &Path, clients: usize, runs: usize) -> BenchResult<Throughput> {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Arc::new(Barrier::new(clients + 1));
    let failed = Arc::new(Mutex::new(None::<String>));
    let mut threads = Vec::new();
    for c in 0..clients {
        let (next, start, failed) = (next.clone(), start.clone(), failed.clone());
        let client = Client::new(socket);
        threads.push(std::thread::spawn(move || {
            let (mut post, mut total, mut not_done) = (Vec::new(), Vec::new(), 0usize);
            // Its own session: a session has one active run at a time.
            let body =
                json!({"session_id": format!("tp-{clients}-{c}"), "goal": "throughput", "agent": {"argv": ["/bin/true"]}})
                    .to_string();
            start.wait();
            while next.fetch_add(1, Ordering::SeqCst) < runs {
                let t0 = Instant::now();
                let result = client.request("POST", "/v1/runs", Some(body.as_bytes())).map_err(|e| e.to_string());
                let created = match result {
                    Ok(r) if r.status == 201 => r,
                    Ok(r) => {
                        *failed.lock().unwrap() = Some(format!("POST: {} {}", r.status, String::from_utf8_lossy(&r.body)));
                        break;
                    }
                    Err(e) => {
                        *failed.lock().unwrap() = Some(e);
                        break;
                    }
                };
                post.push(t0.elapsed().as_secs_f64() * 1e3);
                let id = created.json()["id"].as_str().unwrap_or_default().to_owned();
                match client.get(&format!("/v1/runs/{id}/wait?timeout_secs=10")) {
                    Ok(r) if r.json()["state"] == "done" => {}
                    Ok(r) if r.json()["state"].as_str().is_some_and(is_terminal) => not_done += 1,
                    Ok(r) => {
                        *failed.lock().unwrap() = Some(format!("run {id} not terminal after 10 s: {}", r.json()));
                        break;
                    }
                    Err(e) => {
                        *failed.lock().unwrap() = Some(e.to_string());
                        break;
                    }
                }
                total.push(t0.elapsed().as_secs_f64() * 1e3);
            }
            (post, total, not_done)
        }));
    }
    start.wait();
    let t0 = Instant::now();
    let (mut post, mut total, mut not_done) = (Vec::new(), Vec::new(), 0);
    for t in threads {
        let (p, tt, n) = t.join().map_err(|_| "a client thread panicked".to_owned())?;
        post.extend(p);
        total.extend(tt);
        not_done += n;
    }
    let secs = t0.elapsed().as_secs_f64();
    if let Some(e) = failed.lock().unwrap().take() {
        return Err(format!("throughput with {clients} clients: {e}"));
    }
    let t = Throughput {
        clients,
        runs: total.len(),
        secs,
        runs_per_sec: total.len() as f64 / secs,
        post: Stats::of(&post),
        create_to_terminal: Stats::of(&total),
        not_done,
    };
    eprintln!("   {clients} clients: {} runs in {:.2} s = {:.1} runs/s", t.runs, t.secs, t.runs_per_sec);
    Ok(t)
}

fn is_terminal(state: &str) -> bool {
    matches!(state, "done" | "failed" | "cancelled")
}

// ---------------------------------------------------------------------------
// 3. GET /v1/runs/{id} per second
// ---------------------------------------------------------------------------

/// A keep-alive HTTP/1.1 connection: requests written one at a time, each
/// answer read to the end of its Content-Length.
struct KeepAlive {
    reader: BufReader<UnixStream>,
    request: Vec<u8>,
}

impl KeepAlive {
    fn connect(socket: &Path, path: &str) -> io::Result<KeepAlive> {
        let stream = UnixStream::connect(socket)?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: ccos\r\n\r\n").into_bytes();
        Ok(KeepAlive { reader: BufReader::new(stream), request })
    }

    /// Sends the request; the status and the body's length.
    fn get(&mut self) -> io::Result<(u16, usize)> {
        self.reader.get_mut().write_all(&self.request)?;
        let mut line = String::new();
        let mut status = 0u16;
        let mut length = None;
        let mut first = true;
        loop {
            line.clear();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the daemon closed the connection"));
            }
            let l = line.trim_end();
            if first {
                status = l.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
                first = false;
            } else if l.is_empty() {
                break;
            } else if let Some((name, value)) = l.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse::<usize>().ok();
                }
            }
        }
        let length =
            length.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "an answer without Content-Length"))?;
        let mut body = vec![0u8; length];
        self.reader.read_exact(&mut body)?;
        Ok((status, length))
    }
}

struct GetRate {
    threads: usize,
    keep_alive: bool,
    requests: u64,
    per_sec: f64,
    latency: Stats,
}

fn get_rate(client: &Client, socket: &Path, threads: &[usize], each: Duration) -> BenchResult<Vec<GetRate>> {
    // A run to read: ended, so nothing changes under the readers.
    let body = json!({"session_id": "get-rate", "goal": "read me", "agent": {"argv": ["/bin/true"]}});
    let created = client.post_json("/v1/runs", &body).map_err(|e| e.to_string())?;
    let id = created.json()["id"].as_str().ok_or("no run id")?.to_owned();
    client.get(&format!("/v1/runs/{id}/wait?timeout_secs=10")).map_err(|e| e.to_string())?;
    let path = format!("/v1/runs/{id}");
    let mut out = Vec::new();
    for keep_alive in [true, false] {
        for &n in threads {
            let stop = Arc::new(AtomicBool::new(false));
            let start = Arc::new(Barrier::new(n + 1));
            let mut handles = Vec::new();
            for _ in 0..n {
                let (stop, start, path, socket) = (stop.clone(), start.clone(), path.clone(), socket.to_owned());
                handles.push(std::thread::spawn(move || -> Result<(u64, Vec<f64>), String> {
                    let once = Client::new(&socket);
                    let mut conn = if keep_alive {
                        Some(KeepAlive::connect(&socket, &path).map_err(|e| e.to_string())?)
                    } else {
                        None
                    };
                    let (mut count, mut lat) = (0u64, Vec::new());
                    start.wait();
                    while !stop.load(Ordering::Relaxed) {
                        let t = Instant::now();
                        let status = match conn.as_mut() {
                            Some(c) => c.get().map_err(|e| e.to_string())?.0,
                            None => once.get(&path).map_err(|e| e.to_string())?.status,
                        };
                        if status != 200 {
                            return Err(format!("GET {path}: {status}"));
                        }
                        count += 1;
                        // Every 16th, to keep the bookkeeping out of the way.
                        if count % 16 == 0 {
                            lat.push(t.elapsed().as_secs_f64() * 1e3);
                        }
                    }
                    Ok((count, lat))
                }));
            }
            start.wait();
            let t0 = Instant::now();
            std::thread::sleep(each);
            stop.store(true, Ordering::Relaxed);
            let (mut total, mut lat) = (0, Vec::new());
            for h in handles {
                let (c, l) = h.join().map_err(|_| "a reader panicked".to_owned())??;
                total += c;
                lat.extend(l);
            }
            let secs = t0.elapsed().as_secs_f64();
            let r = GetRate {
                threads: n,
                keep_alive,
                requests: total,
                per_sec: total as f64 / secs,
                latency: Stats::of(&lat),
            };
            eprintln!(
                "   {n:>2} threads, {}: {:.0} requests/s",
                if keep_alive { "keep-alive" } else { "connection per request" },
                r.per_sec
            );
            out.push(r);
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// 4. memory with idle runs
// ---------------------------------------------------------------------------

struct Memory {
    runs: usize,
    daemon_rss_kb: u64,
    daemon_hwm_kb: u64,
    spawner_rss_kb: u64,
    spawner_hwm_kb: u64,
    /// The jails' processes (init and sleep of each), summed RSS.
    jail_processes: usize,
    jails_rss_kb: u64,
    daemon_threads: u64,
    create_secs: f64,
    cancel_secs: f64,
}

fn idle_memory(client: &Client, daemon: &DaemonProcess, runs: usize) -> BenchResult<Memory> {
    let pid = daemon.pid();
    let spawner = spawner_of(pid).ok_or("the daemon has no spawner child")?;
    let t = Instant::now();
    let mut ids = Vec::with_capacity(runs);
    for i in 0..runs {
        let body =
            json!({"session_id": format!("idle-{i}"), "goal": "idle", "agent": {"argv": ["/bin/sleep", "infinity"]}});
        let r = client.post_json("/v1/runs", &body).map_err(|e| e.to_string())?;
        let run = r.json();
        if r.status != 201 || run["state"] != "active" {
            return Err(format!("idle run {i}: {} {run}", r.status));
        }
        ids.push(run["id"].as_str().unwrap_or_default().to_owned());
    }
    let create_secs = t.elapsed().as_secs_f64();
    let active = client.get("/v1/runs?state=active&limit=2000").map_err(|e| e.to_string())?.json();
    let n_active = active["runs"].as_array().map_or(0, Vec::len);
    if n_active != runs {
        return Err(format!("{n_active} runs active, {runs} expected"));
    }
    // Let the allocator and the runtime settle.
    std::thread::sleep(Duration::from_millis(500));
    let jails: Vec<i32> = descendants(spawner);
    let m = Memory {
        runs,
        daemon_rss_kb: read_rss(pid).unwrap_or(0),
        daemon_hwm_kb: status_kb(pid, "VmHWM").unwrap_or(0),
        spawner_rss_kb: read_rss(spawner).unwrap_or(0),
        spawner_hwm_kb: status_kb(spawner, "VmHWM").unwrap_or(0),
        jail_processes: jails.len(),
        jails_rss_kb: jails.iter().filter_map(|&p| read_rss(p)).sum(),
        daemon_threads: status_threads(pid),
        create_secs,
        cancel_secs: 0.0,
    };
    eprintln!(
        "   daemon {} KiB, spawner {} KiB, {} jail processes",
        m.daemon_rss_kb, m.spawner_rss_kb, m.jail_processes
    );

    // Cancel them all, wait for every exit, and check no jail is left.
    let t = Instant::now();
    for id in &ids {
        let r = client.request("POST", &format!("/v1/runs/{id}/cancel"), None).map_err(|e| e.to_string())?;
        if r.status != 200 {
            return Err(format!("cancel {id}: {} {}", r.status, String::from_utf8_lossy(&r.body)));
        }
    }
    for id in &ids {
        let run = client.get(&format!("/v1/runs/{id}/wait?timeout_secs=10")).map_err(|e| e.to_string())?.json();
        if run["state"] != "cancelled" {
            return Err(format!("run {id} is {} after cancel", run["state"]));
        }
    }
    // `exit` is recorded once the spawner has reaped the jail.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let live = descendants(spawner);
        let unrecorded = ids
            .iter()
            .filter(|id| client.get(&format!("/v1/runs/{id}")).map(|r| r.json()["exit"].is_null()).unwrap_or(true))
            .count();
        if live.is_empty() && unrecorded == 0 {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("15 s after cancelling: {} jail processes, {unrecorded} exits unrecorded", live.len()));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(Memory { cancel_secs: t.elapsed().as_secs_f64(), ..m })
}

fn status_threads(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Threads:")?.trim().parse().ok()))
        .unwrap_or(0)
}

/// The processes of the spawner's jails: its descendants, but for the one
/// jail it keeps made ahead for the next run (an init with no program yet;
/// see supervisor/src/spawner/ready_jail.rs). Any other init without a
/// child (a run ending, not yet reaped) counts.
fn descendants(spawner: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let mut todo = children_of(spawner);
    if let Some(i) = todo.iter().position(|&init| children_of(init).is_empty()) {
        todo.remove(i);
    }
    while let Some(p) = todo.pop() {
        out.push(p);
        todo.extend(children_of(p));
    }
    out
}

// ---------------------------------------------------------------------------
// The report
// ---------------------------------------------------------------------------

struct Figures {
    latency: Latency,
    throughput: Vec<Throughput>,
    get: Vec<GetRate>,
    memory: Memory,
}

struct Report {
    figures: Figures,
    fsync: Stats,
    info: Value,
    binary: PathBuf,
    leftovers: Vec<String>,
    rss_at_start: u64,
    /// Share of CPU time busy (all CPUs) over 1 s before the daemon started
    /// and 1 s after it stopped: anything else running shows here.
    busy: (f64, f64),
}

impl Report {
    fn best_throughput(&self) -> f64 {
        self.figures.throughput.iter().map(|t| t.runs_per_sec).fold(0.0, f64::max)
    }

    fn daemon_rss_mib(&self) -> f64 {
        self.figures.memory.daemon_rss_kb as f64 / 1024.0
    }

    fn targets(&self) -> Vec<(&'static str, f64, String, bool)> {
        let c2e = self.figures.latency.create_to_exec.median;
        let tp = self.best_throughput();
        let rss = self.daemon_rss_mib();
        vec![
            (
                "create-to-exec median",
                c2e,
                format!("<= {TARGET_CREATE_TO_EXEC_MEDIAN_MS} ms"),
                c2e <= TARGET_CREATE_TO_EXEC_MEDIAN_MS,
            ),
            ("throughput (best K)", tp, format!(">= {TARGET_RUNS_PER_SEC} runs/s"), tp >= TARGET_RUNS_PER_SEC),
            ("daemon RSS, idle runs", rss, format!("< {TARGET_DAEMON_RSS_MIB} MiB"), rss < TARGET_DAEMON_RSS_MIB),
        ]
    }

    fn all_met(&self) -> bool {
        self.targets().iter().all(|t| t.3)
    }

    fn print(&self) {
        let f = &self.figures;
        let yes = |b: bool| if b { "yes" } else { "NO" };
        println!();
        println!("ccos-supervisor benchmark ({})", self.binary.display());
        println!(
            "host: {} cores, kernel {}, cgroup v{}; state-dir fsync (4 KiB append) median {:.3} ms, p90 {:.3} ms",
            num_cpus(),
            kernel(),
            self.info["cgroup_version"],
            self.fsync.median,
            self.fsync.p90
        );
        println!(
            "CPUs busy with something else: {:.0}% in the second before, {:.0}% in the second after{}",
            self.busy.0,
            self.busy.1,
            if self.busy.0.max(self.busy.1) > 10.0 { "  (NOISY: re-run on a quiet machine)" } else { "" }
        );
        println!();
        println!("{:<44} {:>12} {:>10} {:>10} {:>16} {:>5}", "metric", "median", "p90", "p99", "target", "met");
        let l = &f.latency;
        let row = |name: &str, s: &Stats, unit: &str, target: &str, met: &str| {
            println!(
                "{:<44} {:>9.3} {unit} {:>7.3} {unit} {:>7.3} {unit} {target:>16} {met:>5}",
                name, s.median, s.p90, s.p99
            )
        };
        let c2e_met = l.create_to_exec.median <= TARGET_CREATE_TO_EXEC_MEDIAN_MS;
        row(
            &format!("create-to-exec ({} runs)", l.create_to_exec.n),
            &l.create_to_exec,
            "ms",
            &format!("<= {TARGET_CREATE_TO_EXEC_MEDIAN_MS} ms"),
            yes(c2e_met),
        );
        row("  POST /v1/runs answered", &l.post_answered, "ms", "", "");
        row("  POST to run terminal (wait answered)", &l.terminal, "ms", "", "");
        for t in &f.throughput {
            println!(
                "{:<44} {:>9.1} /s {:>10} {:>10} {:>16} {:>5}",
                format!("throughput, {} clients ({} runs)", t.clients, t.runs),
                t.runs_per_sec,
                "",
                "",
                format!(">= {TARGET_RUNS_PER_SEC} /s"),
                yes(t.runs_per_sec >= TARGET_RUNS_PER_SEC)
            );
        }
        for g in &f.get {
            println!(
                "{:<44} {:>9.0} /s {:>10} {:>10} {:>16} {:>5}",
                format!(
                    "GET /v1/runs/{{id}}, {} thr, {}",
                    g.threads,
                    if g.keep_alive { "keep-alive" } else { "conn/request" }
                ),
                g.per_sec,
                "",
                "",
                "",
                ""
            );
        }
        let m = &f.memory;
        let mib = |kb: u64| kb as f64 / 1024.0;
        let rss_met = self.daemon_rss_mib() < TARGET_DAEMON_RSS_MIB;
        println!(
            "{:<44} {:>8.1} MiB {:>10} {:>10} {:>16} {:>5}",
            format!("daemon RSS, {} idle runs", m.runs),
            mib(m.daemon_rss_kb),
            "",
            "",
            format!("< {TARGET_DAEMON_RSS_MIB} MiB"),
            yes(rss_met)
        );
        println!("{:<44} {:>8.1} MiB", "  spawner RSS", mib(m.spawner_rss_kb));
        println!("{:<44} {:>8.1} MiB", "  daemon + spawner", mib(m.daemon_rss_kb + m.spawner_rss_kb));
        println!(
            "{:<44} {:>8.1} MiB",
            format!("  jails' {} processes (sum of RSS)", m.jail_processes),
            mib(m.jails_rss_kb)
        );
        println!(
            "  (daemon RSS at start {:.1} MiB, peak {:.1} MiB, {} threads; spawner peak {:.1} MiB; \
             {} runs created in {:.2} s, cancelled and reaped in {:.2} s)",
            mib(self.rss_at_start),
            mib(m.daemon_hwm_kb),
            m.daemon_threads,
            mib(m.spawner_hwm_kb),
            m.runs,
            m.create_secs,
            m.cancel_secs
        );
        println!();
        println!("where create-to-exec goes (ms after the client's t0; {} runs):", l.create_to_exec.n);
        println!("{:<28} {:>8} {:>8} {:>8}  what", "milestone", "median", "p90", "p99");
        for ((name, s), (_, what)) in l.milestones.iter().zip(MILESTONES) {
            println!("{:<28} {:>8.3} {:>8.3} {:>8.3}  {what}", name, s.median, s.p90, s.p99);
        }
        println!(
            "spawner round trip (daemon's ccos_spawn_seconds, mean): {:.3} ms  (request to the spawner .. its \
             answer after the agent's execve)",
            l.spawner_round_trip_mean
        );
        println!();
        println!("targets:");
        for (name, value, target, met) in self.targets() {
            println!("  {name:<24} {value:>9.3}  {target:<18} {}", yes(met));
        }
        println!(
            "cleanup: {}",
            if self.leftovers.is_empty() {
                "daemon stopped; no process naming its socket, no run cgroup left".to_owned()
            } else {
                format!("LEFT BEHIND: {:?}", self.leftovers)
            }
        );
    }

    fn write_json(&self, path: &Path) -> BenchResult<()> {
        let f = &self.figures;
        let l = &f.latency;
        let m = &f.memory;
        let milestones: BTreeMap<&str, Value> = l.milestones.iter().map(|(n, s)| (*n, s.json())).collect();
        let doc = json!({
            "date_unix": SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
            "host": {"cores": num_cpus(), "kernel": kernel(), "cgroup_version": self.info["cgroup_version"]},
            "daemon": self.binary.display().to_string(),
            "cpu_busy_pct": {"before": r3(self.busy.0), "after": r3(self.busy.1)},
            "state_dir_fsync_ms": self.fsync.json(),
            "create_to_exec_ms": l.create_to_exec.json(),
            "post_answered_ms": l.post_answered.json(),
            "post_to_terminal_ms": l.terminal.json(),
            "milestones_ms_after_t0": milestones,
            "spawner_round_trip_mean_ms": r3(l.spawner_round_trip_mean),
            "throughput": f.throughput.iter().map(|t| json!({
                "clients": t.clients, "runs": t.runs, "secs": r3(t.secs), "runs_per_sec": r3(t.runs_per_sec),
                "post_ms": t.post.json(), "post_to_terminal_ms": t.create_to_terminal.json(),
                "runs_not_done": t.not_done,
            })).collect::<Vec<_>>(),
            "get_run": f.get.iter().map(|g| json!({
                "threads": g.threads, "keep_alive": g.keep_alive, "requests": g.requests,
                "per_sec": r3(g.per_sec), "latency_ms": g.latency.json(),
            })).collect::<Vec<_>>(),
            "memory": {
                "idle_runs": m.runs,
                "daemon_rss_kib": m.daemon_rss_kb, "daemon_peak_kib": m.daemon_hwm_kb,
                "daemon_rss_at_start_kib": self.rss_at_start, "daemon_threads": m.daemon_threads,
                "spawner_rss_kib": m.spawner_rss_kb, "spawner_peak_kib": m.spawner_hwm_kb,
                "total_rss_kib": m.daemon_rss_kb + m.spawner_rss_kb,
                "jail_processes": m.jail_processes, "jails_rss_kib": m.jails_rss_kb,
                "create_secs": r3(m.create_secs), "cancel_and_reap_secs": r3(m.cancel_secs),
            },
            "targets": self.targets().iter().map(|(name, value, target, met)| json!({
                "metric": name, "value": r3(*value), "target": target, "met": met,
            })).collect::<Vec<_>>(),
            "leftovers": self.leftovers,
        });
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        }
        let text = serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?;
        std::fs::write(path, text + "\n").map_err(|e| format!("writing {}: {e}", path.display()))?;
        println!("figures: {}", path.display());
        Ok(())
    }
}

/// How busy the CPUs are (share of all CPU time not idle or iowait) over `over`.
fn cpu_busy_pct(over: Duration) -> f64 {
    let sample = || -> Option<(u64, u64)> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let v: Vec<u64> = stat.lines().next()?.split_whitespace().skip(1).filter_map(|n| n.parse().ok()).collect();
        let idle = v.get(3)? + v.get(4)?;
        Some((v.iter().take(8).sum::<u64>() - idle, idle))
    };
    let a = sample();
    std::thread::sleep(over);
    let (Some(a), Some(b)) = (a, sample()) else { return 0.0 };
    let (busy, idle) = (b.0.saturating_sub(a.0) as f64, b.1.saturating_sub(a.1) as f64);
    if busy + idle > 0.0 {
        100.0 * busy / (busy + idle)
    } else {
        0.0
    }
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
}

fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_owned()).unwrap_or_default()
}

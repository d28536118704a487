//! Small, bounded workloads for the jail's functional tests: exit codes,
//! signals, what the process sees (env, ids, fds, mounts), and plain I/O.

use crate::sys;
use nix::unistd::{getcwd, getegid, geteuid, getgid, getgroups, gethostname, getpid, getppid, getuid};
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::fs;
use std::io::{self, Write};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub type Outcome = Result<ExitCode, String>;

fn print_json(v: &Value) -> Outcome {
    println!("{v}");
    Ok(ExitCode::SUCCESS)
}

/// `exit CODE`: exit with that status (the kernel keeps the low 8 bits).
pub fn exit(code: i32) -> Outcome {
    let _ = io::stdout().flush();
    std::process::exit(code)
}

/// `signal SIG`: die by signal number SIG. A pid-namespace init cannot kill
/// itself this way (the kernel drops such signals), so then report that and
/// exit 128+SIG, as a shell would.
pub fn signal(sig: i32) -> Outcome {
    let _ = io::stdout().flush();
    // SIGKILL and SIGSTOP cannot be reset (EINVAL) but are default already.
    let _ = sys::default_and_unblock(sig);
    sys::kill_raw(getpid(), sig).map_err(|e| format!("kill(self, {sig}): {}", e.desc()))?;
    std::thread::sleep(Duration::from_millis(200));
    eprintln!("ccos-probe: still alive after kill(self, {sig}) (pid-namespace init?)");
    std::process::exit(128 + sig)
}

/// `env`: the environment as one JSON object.
pub fn env() -> Outcome {
    let map: Map<String, Value> = std::env::vars_os()
        .map(|(k, v)| (k.to_string_lossy().into_owned(), Value::String(v.to_string_lossy().into_owned())))
        .collect();
    print_json(&Value::Object(map))
}

/// `ids` output, in this field order.
#[derive(Serialize)]
struct Ids {
    uid: u32,
    gid: u32,
    euid: u32,
    egid: u32,
    groups: Vec<u32>,
    pid: i32,
    ppid: i32,
    hostname: Option<String>,
    cwd: Option<String>,
}

/// `ids`: who and where we are.
pub fn ids() -> Outcome {
    let ids = Ids {
        uid: getuid().as_raw(),
        gid: getgid().as_raw(),
        euid: geteuid().as_raw(),
        egid: getegid().as_raw(),
        groups: getgroups().unwrap_or_default().iter().map(|g| g.as_raw()).collect(),
        pid: getpid().as_raw(),
        ppid: getppid().as_raw(),
        hostname: gethostname().ok().map(|h| h.to_string_lossy().into_owned()),
        cwd: getcwd().ok().map(|c| c.display().to_string()),
    };
    println!("{}", serde_json::to_string(&ids).map_err(|e| e.to_string())?);
    Ok(ExitCode::SUCCESS)
}

/// `fds`: the open file descriptors and what they point at, as
/// `[{"fd": 0, "target": "/dev/null"}, ...]`, without the one used to list
/// /proc/self/fd itself.
pub fn fds() -> Outcome {
    let mut list: Vec<(i32, String)> = fs::read_dir("/proc/self/fd")
        .map_err(|e| format!("/proc/self/fd: {e}"))?
        .filter_map(|e| {
            let fd: i32 = e.ok()?.file_name().to_str()?.parse().ok()?;
            let target = fs::read_link(format!("/proc/self/fd/{fd}")).ok()?;
            Some((fd, target.display().to_string()))
        })
        // The listing's own descriptor points at /proc/<pid>/fd.
        .filter(|(_, target)| !(target.starts_with("/proc/") && target.ends_with("/fd")))
        .collect();
    list.sort();
    let arr: Vec<Value> = list.into_iter().map(|(fd, target)| json!({"fd": fd, "target": target})).collect();
    print_json(&Value::Array(arr))
}

/// `cat FILE`; `mounts` is `cat /proc/self/mountinfo`.
pub fn cat(path: &str) -> Outcome {
    let mut file = fs::File::open(path).map_err(|e| format!("{path}: {e}"))?;
    let mut out = io::stdout().lock();
    io::copy(&mut file, &mut out).map_err(|e| format!("{path}: {e}"))?;
    out.flush().map_err(|e| e.to_string())?;
    Ok(ExitCode::SUCCESS)
}

/// `echo-stdin`: copy stdin to stdout until EOF.
pub fn echo_stdin() -> Outcome {
    let mut out = io::stdout().lock();
    io::copy(&mut io::stdin().lock(), &mut out).map_err(|e| e.to_string())?;
    out.flush().map_err(|e| e.to_string())?;
    Ok(ExitCode::SUCCESS)
}

/// `stderr TEXT`: TEXT and a newline on stderr, nothing on stdout.
pub fn stderr(text: &str) -> Outcome {
    let mut err = io::stderr().lock();
    writeln!(err, "{text}").map_err(|e| e.to_string())?;
    Ok(ExitCode::SUCCESS)
}

/// `sleep SECS` (fractions allowed).
pub fn sleep(secs: f64) -> Outcome {
    std::thread::sleep(Duration::try_from_secs_f64(secs).map_err(|e| e.to_string())?);
    Ok(ExitCode::SUCCESS)
}

/// `timestamp`: CLOCK_REALTIME in nanoseconds since the epoch.
pub fn timestamp() -> Outcome {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_err(|e| e.to_string())?;
    println!("{}", now.as_nanos());
    Ok(ExitCode::SUCCESS)
}

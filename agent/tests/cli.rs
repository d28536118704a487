//! The `ccos-agent` binary from the outside: its documented exit codes for
//! bad options, a bad script and an unreachable socket. (Its runs against
//! the real supervisor are in supervisor/tests/agent.rs, which also needs
//! this binary built: these tests make `cargo test --workspace` build it.)

use std::process::Command;

const AGENT: &str = env!("CARGO_BIN_EXE_ccos-agent");

fn run(args: &[&str], socket: &str) -> (Option<i32>, String) {
    let out = Command::new(AGENT)
        .args(args)
        .env("CCOS_AGENT_SOCKET", socket)
        .env_remove("CCOS_AGENT_SCRIPT")
        .output()
        .expect("running ccos-agent");
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn help_documents_the_exit_codes() {
    let out = Command::new(AGENT).arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Exit codes"), "{text}");
}

#[test]
fn a_bad_script_exits_2_naming_where() {
    let (code, stderr) = run(&["--script", "[{\"capability_id\": }]"], "/nonexistent/agent.sock");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("line 1") || stderr.contains("column"), "{stderr}");
}

#[test]
fn an_unreachable_socket_exits_3_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("agent.sock");
    let (code, stderr) = run(&["--script", "[]"], socket.to_str().unwrap());
    assert_eq!(code, Some(3), "{stderr}");
    assert!(stderr.contains("agent.sock"), "{stderr}");
}

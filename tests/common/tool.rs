//! The external programs tests drive (curl, lftp, atftp, socat, prlimit, openssl, python3,
//! PostgreSQL, the account tools): one rule for a missing one. A test prints that it skipped
//! — except under `CI=true` (set by `.ci/run`, which installs them all), where a missing
//! program fails the test: never a silent pass.

/// True if `cmd` is on PATH; otherwise the calling test should return early, after this
/// printed that it skipped (or panicked, under `CI=true`).
pub fn tool(cmd: &str) -> bool {
    let found = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {cmd}"))
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        missing(&format!("{cmd} is not installed (.ci/run installs it)"));
    }
    found
}

/// Says why the calling test skips; under `CI=true` panics with the reason instead.
pub fn missing(why: &str) {
    assert_ne!(std::env::var("CI").as_deref(), Ok("true"), "{why}");
    eprintln!("skipped: {why}");
}

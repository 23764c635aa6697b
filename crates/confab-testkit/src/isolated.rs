//! Running one test alone in a child process, for measurements of the
//! whole process that tests running in parallel threads would disturb.

use std::process::{Command, Stdio};

/// The variable that tells the child which test it is there to run.
const VAR: &str = "CONFAB_ISOLATED";

/// Runs the test `name` of this test binary alone in a child process, with
/// `CONFAB_ISOLATED` set, and fails if it fails; returns `true` if this
/// process *is* that child, which must then run the test body. For
/// measurements of the whole process (open descriptors) that tests running
/// in parallel threads would disturb.
pub fn isolated(name: &str) -> bool {
    if std::env::var_os(VAR).is_some_and(|v| v == name) {
        return true;
    }
    let exe = std::env::current_exe().expect("path of the test binary");
    let output = Command::new(exe)
        .args([name, "--exact", "--test-threads=1", "--nocapture"])
        .env(VAR, name)
        .stdin(Stdio::null())
        .output()
        .expect("run the test in a child process");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "isolated run of {name} failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    false
}

//! The `confab-passwd` binary: `hash`, `add` and `upgrade` with passwords
//! on piped standard input (and once on a terminal), the files they leave,
//! and their refusals.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use confab::credentials::{self, Account};
use confab::passwords::verify_hash;
use confab_testkit::client_process::ClientProcess;
use confab_testkit::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_confab-passwd");

/// Runs `confab-passwd ARGS` with `stdin` piped in, to the end.
fn run(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start confab-passwd");
    let mut pipe = child.stdin.take().expect("stdin");
    // It may refuse before reading: a closed pipe is not an error here.
    let _ = pipe.write_all(stdin.as_bytes());
    drop(pipe);
    child.wait_with_output().expect("run confab-passwd")
}

/// Asserts success with nothing on standard error; returns standard output.
fn succeeds(output: Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{:?}: {stderr}", output.status);
    assert_eq!(stderr, "");
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

/// Asserts a refusal: exit status 1 and one line on standard error,
/// starting with the program's name, which contains `reason`.
fn refused(output: Output, reason: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.starts_with("confab-passwd: "), "{stderr:?}");
    assert_eq!(stderr.lines().count(), 1, "{stderr:?}");
    assert!(stderr.contains(reason), "{stderr:?} lacks {reason:?}");
    assert!(output.stdout.is_empty());
}

/// `file` in `dir` with `contents`.
fn file_with(dir: &TempDir, name: &str, contents: &str) -> PathBuf {
    let path = dir.0.join(name);
    fs::write(&path, contents).expect("write the file");
    path
}

fn accounts(path: &Path) -> Vec<Account> {
    credentials::load(path).expect("the file parses")
}

fn password_of(path: &Path, username: &str) -> String {
    accounts(path)
        .into_iter()
        .find(|a| a.username == username)
        .map(|a| a.password)
        .unwrap_or_else(|| panic!("no {username} in {}", path.display()))
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).expect("metadata").permissions().mode() & 0o7777
}

fn arg(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

#[test]
fn hash_prints_a_phc_string_of_the_line() {
    let out = succeeds(run(&["hash"], "a wise one\r\n"));
    let stored = out.strip_suffix('\n').expect("one line");
    assert!(stored.starts_with("$argon2id$"), "{stored}");
    assert!(verify_hash(stored, "a wise one"));
    refused(run(&["hash"], ""), "standard input ended");
    refused(run(&["hash"], "\n"), "empty");
}

#[test]
fn add_creates_a_private_file_then_replaces_keeping_every_other_line() {
    let dir = TempDir::new("passwd-add");
    let file = dir.0.join("credentials.txt");
    succeeds(run(&["add", arg(&file), "yoda"], "wise\nwise\n"));
    assert_eq!(mode(&file), 0o600);
    assert_eq!(accounts(&file).len(), 1);
    assert!(verify_hash(&password_of(&file, "yoda"), "wise"));
    assert!(!dir.0.join("credentials.txt.new").exists());

    let before = "# the team\r\nyoda wise\r\n\r\nhans falcon\r\nleia rebel";
    fs::write(&file, before).expect("write");
    succeeds(run(&["add", arg(&file), "hans"], "solo\nsolo\n"));
    let hashed = password_of(&file, "hans");
    assert!(verify_hash(&hashed, "solo"));
    let expected = format!("# the team\r\nyoda wise\r\n\r\nhans {hashed}\r\nleia rebel");
    assert_eq!(fs::read_to_string(&file).expect("read"), expected);
}

#[test]
fn mismatched_passwords_bad_usernames_and_broken_files_change_nothing() {
    let dir = TempDir::new("passwd-refused");
    let good = "yoda wise\nhans falcon\n";
    let file = file_with(&dir, "credentials.txt", good);
    refused(run(&["add", arg(&file), "yoda"], "wise\nwiser\n"), "differ");
    refused(run(&["add", arg(&file), "yoda"], "\n\n"), "empty");
    refused(run(&["add", arg(&file), "yo da"], "x\nx\n"), "username");
    refused(run(&["add", arg(&file), "#yoda"], "x\nx\n"), "username");
    assert_eq!(fs::read_to_string(&file).expect("read"), good);

    let broken = "yoda wise\nhans\n";
    let file = file_with(&dir, "broken.txt", broken);
    let line = format!("{}:2: expected `username password`", file.display());
    refused(run(&["upgrade", arg(&file)], ""), &line);
    refused(run(&["add", arg(&file), "leia"], "x\nx\n"), &line);
    assert_eq!(fs::read_to_string(&file).expect("read"), broken);
    let missing = dir.0.join("missing.txt");
    refused(run(&["upgrade", arg(&missing)], ""), "cannot read");
    assert!(!missing.exists());
    assert_eq!(
        fs::read_dir(&dir.0).expect("list").count(),
        2,
        "no files left beside"
    );
}

#[test]
fn upgrade_hashes_clear_passwords_in_place_keeping_the_mode() {
    let dir = TempDir::new("passwd-upgrade");
    let hashed = confab::passwords::hash("beep").expect("hash");
    let original = format!("# accounts\nyoda wise\n\n  r2d2 {hashed}\nhans falcon\n");
    let file = file_with(&dir, "copy.txt", &original);
    fs::set_permissions(&file, fs::Permissions::from_mode(0o640)).expect("chmod");
    assert_eq!(
        succeeds(run(&["upgrade", arg(&file)], "")),
        "hashed 2 passwords\n"
    );
    assert_eq!(mode(&file), 0o640);
    let (yoda, hans) = (password_of(&file, "yoda"), password_of(&file, "hans"));
    assert!(verify_hash(&yoda, "wise"));
    assert!(verify_hash(&hans, "falcon"));
    assert_eq!(
        fs::read_to_string(&file).expect("read"),
        format!("# accounts\nyoda {yoda}\n\n  r2d2 {hashed}\nhans {hans}\n")
    );
    assert_eq!(
        succeeds(run(&["upgrade", arg(&file)], "")),
        "hashed 0 passwords\n"
    );
}

#[test]
fn on_a_terminal_the_password_is_not_echoed_and_echo_comes_back() {
    let dir = TempDir::new("passwd-terminal");
    let file = dir.0.join("credentials.txt");
    // `stty` after it reads the settings it left on the terminal.
    let script = r#""$0" add "$1" leia; echo "status $?"; stty -a"#;
    let mut shell = ClientProcess::program_on_terminal(
        Path::new("/bin/sh"),
        &["-c", script, BIN, arg(&file)],
        &[],
    );
    shell.stdout.expect("Password: ");
    shell.send("pty-secret");
    shell.stdout.expect("Again: ");
    shell.send("pty-secret");
    shell.stdout.expect("status 0");
    let settings = shell.stdout.rest();
    let words: Vec<&str> = settings.split_whitespace().collect();
    assert!(
        words.contains(&"echo") && words.contains(&"-echonl"),
        "{settings}"
    );
    assert!(
        !shell.stdout.text().contains("pty-secret"),
        "echoed: {:?}",
        shell.stdout.text()
    );
    assert!(verify_hash(&password_of(&file, "leia"), "pty-secret"));
}

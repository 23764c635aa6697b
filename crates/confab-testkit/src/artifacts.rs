//! Where cargo put this build: the profile directory the running test,
//! bench or example sits in (`target/debug/`, `target/release/`), the
//! workspace's binaries in it, and cargo's temporary directory beside it.
//!
//! Test and bench executables live in the profile directory's `deps/`,
//! examples in its `examples/`, and the binaries of the workspace's packages
//! in the profile directory itself: exactly where
//! `env!("CARGO_BIN_EXE_<name>")` points in the root package's integration
//! tests. That variable exists only there, so the helpers shared with
//! `confab-load` find the binaries this way instead.

use std::env;
use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The package whose binaries [`built`] builds.
const PACKAGE: &str = "confab";

/// The profile directory of the running executable: its own directory, or
/// that directory's parent if it is `deps/` or `examples/`.
pub fn profile_dir() -> io::Result<PathBuf> {
    let exe = env::current_exe()?;
    let dir = exe
        .parent()
        .ok_or_else(|| io::Error::other(format!("{} has no directory", exe.display())))?;
    let nested = matches!(
        dir.file_name().and_then(|name| name.to_str()),
        Some("deps" | "examples")
    );
    let profile = if nested { dir.parent() } else { Some(dir) };
    profile
        .map(Path::to_path_buf)
        .ok_or_else(|| io::Error::other(format!("{} has no parent", dir.display())))
}

/// The binary `name` of the profile directory (see [`profile_dir`]); an
/// error if it is not there. In the root package's integration tests cargo
/// has built it before the test started.
pub fn binary(name: &str) -> io::Result<PathBuf> {
    let path = profile_dir()?.join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "{} does not exist: build it (cargo build --bins, with --release for a release run)",
                path.display()
            ),
        ))
    }
}

/// The binary `name` of the `confab` package, brought up to date first by
/// `cargo build` in the running executable's profile when this runs under
/// cargo (`cargo bench`, `cargo run --example`, `cargo test`: cargo sets
/// `CARGO` and `CARGO_MANIFEST_DIR`), so that it is never stale; otherwise
/// whatever [`binary`] finds. For the load tools in `confab-load`, which
/// cargo does not build the server's binaries for.
pub fn built(name: &str) -> io::Result<PathBuf> {
    if let (Some(cargo), Some(manifest)) = (env::var_os("CARGO"), env::var_os("CARGO_MANIFEST_DIR"))
    {
        cargo_build(cargo, &manifest, name)?;
    }
    binary(name)
}

/// Runs `cargo build --quiet -p confab --bin NAME` in the profile of
/// [`profile_dir`], in the workspace of the package at `manifest_dir`.
fn cargo_build(cargo: OsString, manifest_dir: &OsString, name: &str) -> io::Result<()> {
    let profile_dir = profile_dir()?;
    let mut build = Command::new(cargo);
    build
        .args([
            "build",
            "--quiet",
            "-p",
            PACKAGE,
            "--bin",
            name,
            "--manifest-path",
        ])
        .arg(Path::new(manifest_dir).join("Cargo.toml"));
    match profile_dir.file_name().and_then(|name| name.to_str()) {
        Some("debug") => {}
        Some("release") => {
            build.arg("--release");
        }
        Some(other) => {
            build.args(["--profile", other]);
        }
        None => {
            return Err(io::Error::other(format!(
                "{}: no profile name",
                profile_dir.display()
            )))
        }
    }
    let status = build.status()?;
    if status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "cargo build -p {PACKAGE} --bin {name}: {status}"
        )))
    }
}

/// Cargo's temporary directory for tests and benches, `target/tmp/` (what
/// `env!("CARGO_TARGET_TMPDIR")` names in integration tests and benches),
/// created if missing.
pub fn target_tmp() -> io::Result<PathBuf> {
    let profile_dir = profile_dir()?;
    let target = profile_dir
        .parent()
        .ok_or_else(|| io::Error::other(format!("{} has no parent", profile_dir.display())))?;
    let tmp = target.join("tmp");
    fs::create_dir_all(&tmp)?;
    Ok(tmp)
}

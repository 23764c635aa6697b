//! The servers the user trusted by their certificate's fingerprint, as
//! ssh's `known_hosts` remembers host keys: the known-servers file holds
//! one `HOST:PORT SHA256:<base64>` per line (blank lines and lines
//! starting with `#` are skipped), written when the user accepts a
//! certificate on a terminal. See [`crate::net::trust`] for how it is used.

use std::env;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The known-servers file: `$XDG_CONFIG_HOME/confab/known_servers`, or
/// `~/.config/confab/known_servers`.
pub fn known_servers_path() -> Option<PathBuf> {
    let config = env::var_os("XDG_CONFIG_HOME")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")))?;
    Some(config.join("confab").join("known_servers"))
}

/// The servers the user trusted, as read from the known-servers file.
#[derive(Debug, Clone, Default)]
pub struct KnownServers {
    path: Option<PathBuf>,
    /// (`HOST:PORT`, fingerprint, line number).
    entries: Vec<(String, String, usize)>,
}

impl KnownServers {
    /// Reads `path`; a file that does not exist knows no server.
    pub fn load(path: Option<PathBuf>) -> io::Result<KnownServers> {
        let text = match &path {
            Some(path) => match fs::read_to_string(path) {
                Ok(text) => text,
                Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
                Err(e) => return Err(e),
            },
            None => String::new(),
        };
        let entries = text
            .lines()
            .enumerate()
            .filter_map(|(i, line)| {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    return None;
                }
                let (server, print) = line.split_once(char::is_whitespace)?;
                Some((server.to_string(), print.trim().to_string(), i + 1))
            })
            .collect();
        Ok(KnownServers { path, entries })
    }

    /// The file, if there is a place for one.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The fingerprint remembered for `server` (`HOST:PORT`) and its line.
    pub fn get(&self, server: &str) -> Option<(&str, usize)> {
        self.entries
            .iter()
            .find(|(s, _, _)| s == server)
            .map(|(_, print, line)| (print.as_str(), *line))
    }

    /// Remembers `fingerprint` for `server`: a line added to the file
    /// (made, with its directory, readable by the user only if missing).
    pub fn remember(&mut self, server: &str, fingerprint: &str) -> io::Result<()> {
        let Some(path) = &self.path else {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "no place for the known-servers file (neither XDG_CONFIG_HOME nor HOME is set)",
            ));
        };
        if let Some(dir) = path.parent() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
        }
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)?;
        writeln!(file, "{server} {fingerprint}")?;
        file.sync_all()?;
        let line = fs::read_to_string(path)?.lines().count();
        self.entries
            .push((server.to_string(), fingerprint.to_string(), line));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_servers_are_read_and_remembered() {
        let dir = std::env::temp_dir().join(format!("confab-known-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let path = dir.join("confab").join("known_servers");
        let mut known = KnownServers::load(Some(path.clone())).expect("missing is empty");
        assert_eq!(known.get("a:1"), None);
        known.remember("a:1", "SHA256:aaa").expect("remember");
        known.remember("b:2", "SHA256:bbb").expect("remember");
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&path).expect("file").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let mut text = fs::read_to_string(&path).expect("read");
        text.insert_str(0, "# comment\n\n");
        fs::write(&path, text).expect("write");
        let known = KnownServers::load(Some(path)).expect("load");
        assert_eq!(known.get("a:1"), Some(("SHA256:aaa", 3)));
        assert_eq!(known.get("b:2"), Some(("SHA256:bbb", 4)));
        assert_eq!(known.get("b:3"), None);
        fs::remove_dir_all(&dir).expect("clean up");
    }
}

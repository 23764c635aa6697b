//! SIGHUP: the TLS certificate and the credentials file read again, with
//! every connection kept.
//!
//! A renewed certificate (from an ACME client, say) serves every
//! connection accepted from then on; sessions already open keep theirs. A
//! reloaded credentials file lets new accounts log in at once, changed
//! passwords apply from the next login, and an online user whose account
//! is gone is told and logged out like any leaver (see
//! [`Chat::reload_accounts`](crate::chat::Chat::reload_accounts)). A file
//! that does not load changes nothing: what was loaded before stays, and
//! one warning names the file and the reason.

use std::time::Instant;

use log::{info, warn};

use super::{Server, Storage};
use crate::credentials;
use crate::identity::{Identity, IdentitySource};

impl Server {
    /// Reads the certificate (unless it is made in memory each start) and
    /// the credentials file again.
    pub(super) fn reload(&mut self, now: Instant) {
        info!(target: "confab::reload", "SIGHUP: reloading");
        let in_memory = matches!(
            (&self.config.tls, &self.config.storage),
            (Some(IdentitySource::Generated), Storage::Ephemeral)
        );
        if let Some(source) = self.config.tls.as_ref().filter(|_| !in_memory) {
            match Identity::load(source, self.config.storage.dir()) {
                Ok(identity) => {
                    info!(
                        target: "confab::reload",
                        "TLS certificate {}",
                        identity.fingerprint()
                    );
                    self.identity = Some(identity);
                }
                Err(e) => warn!(
                    target: "confab::reload",
                    "TLS certificate not reloaded, the one loaded before stays: {e}"
                ),
            }
        }
        if let Some(path) = self.config.credentials.clone() {
            match credentials::load(&path) {
                Ok(accounts) => {
                    info!(
                        target: "confab::reload",
                        "{} accounts from {}",
                        accounts.len(),
                        path.display()
                    );
                    if self.cluster_mode() {
                        self.cluster_accounts(accounts);
                    } else {
                        self.chat.reload_accounts(accounts, now);
                        self.apply_effects();
                    }
                }
                Err(e) => warn!(
                    target: "confab::reload",
                    "accounts not reloaded, those loaded before stay: {e}"
                ),
            }
        }
    }
}

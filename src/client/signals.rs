//! The signals that stop the client — SIGINT, SIGTERM and SIGHUP — as an
//! event source of its poll, so that an interrupted client leaves through
//! its normal path and restores the terminal and standard input's flags.

use std::io;
use std::mem;
use std::ptr;

use libc::c_int;
use signal_hook_mio::v1_0::Signals;

/// Signals that end the client through its normal exit path.
const CAUGHT_SIGNALS: [c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// Routes each of [`CAUGHT_SIGNALS`] that is not ignored to a `signal-hook`
/// self-pipe, to be registered with the poll and read with
/// [`Signals::pending`].
///
/// A signal that was ignored at start (`nohup`, background jobs) stays
/// ignored: `signal-hook` would replace `SIG_IGN` with its own handler, so
/// such a signal is left out rather than registered.
///
/// `signal-hook` never puts the previous disposition back: once the result
/// is dropped, its handler stays installed with nothing to deliver to, so
/// a caught signal arriving after the session ended is ignored instead of
/// killing the process, which is about to exit anyway.
///
/// With `resizes`, SIGWINCH is watched too, for the terminal UI to redraw.
pub(super) fn watch(resizes: bool) -> io::Result<Signals> {
    let mut wanted = Vec::with_capacity(CAUGHT_SIGNALS.len() + 1);
    for signal in CAUGHT_SIGNALS {
        if !is_ignored(signal)? {
            wanted.push(signal);
        }
    }
    if resizes {
        wanted.push(libc::SIGWINCH);
    }
    Signals::new(wanted)
}

/// Whether `signal`'s current disposition is `SIG_IGN`.
fn is_ignored(signal: c_int) -> io::Result<bool> {
    // SAFETY: sigaction is plain data, for which all zeroes is valid.
    let mut current: libc::sigaction = unsafe { mem::zeroed() };
    // SAFETY: a null new action only reads the disposition, into a live
    // sigaction.
    if unsafe { libc::sigaction(signal, ptr::null(), &mut current) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(current.sa_sigaction == libc::SIG_IGN)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sets `signal`'s disposition to `SIG_IGN` or `SIG_DFL`.
    fn set_disposition(signal: c_int, handler: libc::sighandler_t) {
        // SAFETY: installs no Rust code as a handler, only a disposition.
        let previous = unsafe { libc::signal(signal, handler) };
        assert_ne!(previous, libc::SIG_ERR);
    }

    /// One test for both cases, in this order: SIGHUP is used by no other
    /// test of this process, and once `signal-hook` has installed its
    /// handler it would not install it again after `SIG_IGN`.
    #[test]
    fn ignored_signal_stays_ignored_and_others_are_caught() {
        set_disposition(libc::SIGHUP, libc::SIG_IGN);
        let mut signals = watch(false).expect("watch signals");
        assert!(is_ignored(libc::SIGHUP).expect("read disposition"));
        // SAFETY: SIGHUP is ignored, so raising it does nothing.
        assert_eq!(unsafe { libc::raise(libc::SIGHUP) }, 0);
        assert_eq!(signals.pending().count(), 0);
        drop(signals);

        set_disposition(libc::SIGHUP, libc::SIG_DFL);
        let mut signals = watch(false).expect("watch signals");
        // SAFETY: signal-hook's handler now catches SIGHUP.
        assert_eq!(unsafe { libc::raise(libc::SIGHUP) }, 0);
        assert_eq!(signals.pending().collect::<Vec<_>>(), [libc::SIGHUP]);
    }
}

//! Shared harness of the integration tests: the in-process server, the
//! bounded line client and the process helpers of `confab-testkit`, under
//! the names the tests have always used.

#![allow(dead_code, unused_imports)]

pub use confab_testkit::client_process;
pub use confab_testkit::pty;
pub use confab_testkit::{
    accounts, exit_within, isolated, open_descriptors, password, run_to_end, show, status_kib,
    three_users, two_users, wait_until, Client, FailOnPanic, Options, ProcessOptions, Rng,
    ServerProcess, TempDir, TestServer, ACCOUNTS, ACCOUNT_BANNED, HELP, INVALID_PASSWORD,
    INVALID_USERNAME, IO_TIMEOUT, PASSWORD, PASSWORD_BANNED, USERNAME, WELCOME,
};

//! The test accounts: five users every test server knows unless told
//! otherwise.

use confab::credentials::Account;

/// The test accounts: username and password.
pub const ACCOUNTS: [(&str, &str); 5] = [
    ("yoda", "wise"),
    ("hans", "falcon"),
    ("vader", "sithlord"),
    ("luke", "lightsaber"),
    ("leia", "blasterpistol"),
];

/// The test accounts as the server takes them.
pub fn accounts() -> Vec<Account> {
    ACCOUNTS
        .iter()
        .map(|&(username, password)| Account {
            username: username.into(),
            password: password.into(),
        })
        .collect()
}

/// The password of a test account; panics if `user` is not one.
pub fn password(user: &str) -> &'static str {
    ACCOUNTS
        .iter()
        .find(|(name, _)| *name == user)
        .map(|(_, password)| *password)
        .unwrap_or_else(|| panic!("no test account {user}"))
}

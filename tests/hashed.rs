//! Hashed passwords in the credentials file, against the real binary:
//! argon2-cffi's hashes log in, wrong passwords still count, what a client
//! pipelines after its password waits for the verification, and the loop
//! goes on serving others while a hash is verified.

use argon2::password_hash::{PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use confab_testkit::process::{ProcessOptions, ServerProcess};

/// (username, clear password, PHC string) from the shared vectors.
fn vectors() -> Vec<(String, String, String)> {
    include_str!("../../shared/vectors/argon2id-phc.txt")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[0].to_string(), f[1].to_string(), f[2].to_string())
        })
        .collect()
}

fn server(accounts: Vec<(String, String)>) -> ServerProcess {
    ServerProcess::start(ProcessOptions {
        accounts,
        ..ProcessOptions::default()
    })
}

#[test]
fn argon2_cffi_hashes_log_in_and_only_with_their_password() {
    let vectors = vectors();
    let accounts = vectors
        .iter()
        .map(|(u, _, hash)| (u.clone(), hash.clone()))
        .collect();
    let server = server(accounts);
    assert!(
        !server
            .lines_before_listening()
            .iter()
            .any(|l| l.contains("stored in clear")),
        "no clear password, no warning: {:?}",
        server.lines_before_listening()
    );
    let mut online = Vec::new();
    for (user, pass, _) in &vectors {
        let mut client = server.login(user, pass);
        client.barrier();
        online.push(client);
    }
    let (user, _, _) = &vectors[0];
    let mut wrong = server.connect();
    wrong.expect("Username: ");
    wrong.send(&format!("{user}\n"));
    wrong.expect("Password: ");
    wrong.send("not-it\n");
    wrong.expect("Invalid Password. Please try again\nPassword: ");
    wrong.send("still-not\n");
    wrong.expect("Invalid Password. Please try again\nPassword: ");
    wrong.send("nope\n");
    wrong.expect_line("Invalid Password. Your account has been blocked. Please try again later");
    wrong.expect_eof();
}

#[test]
fn clear_and_hashed_passwords_mix_and_the_clear_ones_are_counted_at_start() {
    let (user, pass, hash) = vectors().remove(4);
    let server = server(vec![
        (user.clone(), hash),
        ("yoda".into(), "wise".into()),
        ("hans".into(), "falcon".into()),
    ]);
    let early = server.lines_before_listening();
    assert!(
        early.iter().any(|l| l.contains("2 of 3 passwords in")
            && l.contains("are stored in clear; hash them with `confab-passwd upgrade")),
        "{early:?}"
    );
    let mut droid = server.login(&user, &pass);
    let mut yoda = server.login("yoda", "wise");
    droid.expect_line("yoda logged in");
    yoda.send(&format!("message {user} beep\n"));
    droid.expect_line("yoda: beep");
}

#[test]
fn what_a_client_pipelines_after_its_password_waits_for_the_verification() {
    let (user, pass, hash) = vectors().remove(4);
    let server = server(vec![(user.clone(), hash), ("yoda".into(), "wise".into())]);
    let mut yoda = server.login("yoda", "wise");
    let mut droid = server.connect();
    droid.send(&format!("{user}\n{pass}\nwhoelse\nbroadcast hi\n"));
    droid.expect("Username: Password: ");
    droid.expect_line("Welcome to the greatest messaging application ever!");
    droid.expect_line("yoda");
    yoda.expect_line(&format!("{user} logged in"));
    yoda.expect_line(&format!("{user}: hi"));
    droid.barrier();
}

#[test]
fn the_loop_serves_others_while_a_slow_hash_is_verified() {
    // About a second of Argon2id on this kind of machine: long enough that
    // a loop busy verifying it could not answer the round trips below.
    let params = Params::new(64 * 1024, 12, 1, None).expect("params");
    let salt = SaltString::encode_b64(b"confab-test-salt").expect("salt");
    let slow = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password(b"slowpoke", &salt)
        .expect("hash")
        .to_string();
    let server = server(vec![("sloth".into(), slow), ("yoda".into(), "wise".into())]);
    let mut yoda = server.login("yoda", "wise");
    let mut sloth = server.connect();
    sloth.expect("Username: ");
    sloth.send("sloth\n");
    sloth.expect("Password: ");
    sloth.send("slowpoke\n");
    for _ in 0..20 {
        yoda.send("whoelse\n");
        yoda.expect_line("No other users are online");
    }
    assert_eq!(
        sloth.poll_line(0),
        None,
        "the verification finished before 20 round trips of another user"
    );
    sloth.expect_line("Welcome to the greatest messaging application ever!");
    yoda.expect_line("sloth logged in");
}

#[test]
fn a_client_that_leaves_while_its_password_is_verified_changes_nothing() {
    let (user, pass, hash) = vectors().remove(0);
    let server = server(vec![(user.clone(), hash), ("yoda".into(), "wise".into())]);
    for _ in 0..5 {
        let mut gone = server.connect();
        gone.send(&format!("{user}\n{pass}\n"));
        gone.expect("Username: Password: ");
        drop(gone);
    }
    // None of them stays online: the user logs in, not `already logged in`.
    let mut client = server.login(&user, &pass);
    client.barrier();
}

#[test]
fn a_password_hashed_by_confab_passwd_logs_in() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_confab-passwd"))
        .arg("hash")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run confab-passwd");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"lightsaber\n")
        .expect("write");
    let output = child.wait_with_output().expect("wait");
    assert!(output.status.success());
    let hash = String::from_utf8(output.stdout).expect("utf-8");
    let server = server(vec![("luke".into(), hash.trim().to_string())]);
    server.login("luke", "lightsaber").barrier();
}

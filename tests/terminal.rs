//! The terminal client's line editor, read off the screen: the real
//! `confab` runs on a pseudo-terminal (`confab_testkit::pty`) against the
//! real `confab-server`, keys are typed as a terminal sends them, and the
//! screen a `vt100` emulator keeps is checked: the bottom row is the input
//! line, everything above it is stamped with the time, and what the server
//! gets (read by plain TCP clients) is the ground truth of an edit.
//!
//! The client runs with `TZ=UTC` and `NO_COLOR=1`. Every wait is bounded
//! (a few seconds) and a failed one shows the whole screen.

mod common;

use std::fs;
use std::process::Command;

use common::pty::{keys, Modes, Screen, Terminal, SCREEN_TIMEOUT};
use common::{password, Client, ProcessOptions, ServerProcess, TempDir};
use confab_testkit::stamps::Since;
use confab_testkit::store_mail;

/// The client's binary.
const CONFAB: &str = env!("CARGO_BIN_EXE_confab");

/// The window of most tests.
const ROWS: u16 = 24;
const COLS: u16 = 80;

/// The bottom row's index.
const BOTTOM: usize = ROWS as usize - 1;

/// The server's welcome, as it appears in the welcome line.
const WELCOME: &str = "Welcome to the greatest messaging application ever!";

/// The bottom row once the server has closed the connection.
const RECONNECT: &str = "Press Enter to reconnect, Ctrl-D to quit";

/// `confab-server` on a free port with the test accounts, a 0.5 s ban and
/// an inactivity timeout of `timeout` seconds.
fn server(timeout: &str) -> ServerProcess {
    ServerProcess::start(ProcessOptions {
        timeout: Some(timeout.into()),
        ..ProcessOptions::default()
    })
}

/// The environment every client gets: UTC, no colour, an xterm, UTF-8.
fn client_environment(command: &mut Command) -> &mut Command {
    command
        .env_remove("RUST_LOG")
        .env("TZ", "UTC")
        .env("NO_COLOR", "1")
        .env("TERM", "xterm")
        .env("LC_ALL", "C.UTF-8")
}

/// `confab 127.0.0.1 PORT` on a terminal of `rows` × `cols`.
fn confab_sized(server: &ServerProcess, rows: u16, cols: u16) -> Terminal {
    let mut command = Command::new(CONFAB);
    command.args(["127.0.0.1", &server.addr.port().to_string()]);
    client_environment(&mut command);
    Terminal::spawn(command, rows, cols).expect("start confab on a terminal")
}

/// `confab 127.0.0.1 PORT` on a terminal of [`ROWS`] × [`COLS`].
fn confab(server: &ServerProcess) -> Terminal {
    confab_sized(server, ROWS, COLS)
}

/// `sh -c SCRIPT` with `$1` the client's binary, `$2` the server's port
/// and `$3` `dir`, on a terminal of [`ROWS`] × [`COLS`].
fn confab_under_sh(script: &str, server: &ServerProcess, dir: &TempDir) -> Terminal {
    let mut command = Command::new("sh");
    command
        .args(["-c", script, "sh", CONFAB])
        .arg(server.addr.port().to_string())
        .arg(&dir.0);
    client_environment(&mut command);
    Terminal::spawn(command, ROWS, COLS).expect("start sh on a terminal")
}

/// Answers the prompts on the bottom row as `user` and waits for the
/// welcome and the `> ` prompt.
fn login(terminal: &mut Terminal, user: &str) {
    terminal.wait_bottom_row("Username: ");
    terminal.type_text(user);
    terminal.send(keys::ENTER);
    terminal.wait_bottom_row("Password: ");
    terminal.type_text(password(user));
    terminal.send(keys::ENTER);
    terminal.wait_until("the welcome and the > prompt", SCREEN_TIMEOUT, |s| {
        s.contains(WELCOME) && s.bottom_row() == ">"
    });
}

/// A plain TCP client logged in as `user`.
fn tcp_user(server: &ServerProcess, user: &str) -> Client {
    let mut client = Client::connect(server.addr);
    client.login(user, password(user));
    client
}

/// Whether `row` starts with an `HH:MM ` stamp.
fn has_stamp(row: &str) -> bool {
    let bytes = row.as_bytes();
    bytes.len() > 6
        && bytes[..5].iter().enumerate().all(|(i, b)| {
            if i == 2 {
                *b == b':'
            } else {
                b.is_ascii_digit()
            }
        })
        && bytes[5] == b' '
}

/// Fails unless every non-empty line above the input line is stamped (a
/// line the terminal wrapped onto more rows counts once).
fn assert_every_line_stamped(screen: &Screen) {
    let lines = screen.lines();
    for line in &lines[..lines.len() - 1] {
        assert!(
            line.is_empty() || has_stamp(line),
            "{line:?} has no HH:MM stamp\n{screen}"
        );
    }
}

/// Whether `shown`, the bottom row's part left of the cursor, is the end
/// of `> ` + `before` in view: the prompt scrolled out with the text, or
/// kept in front of the text that is in view.
fn shows_the_end(shown: &str, before: &str) -> bool {
    !shown.is_empty()
        && (format!("> {before}").ends_with(shown)
            || shown
                .strip_prefix("> ")
                .is_some_and(|text| before.ends_with(text)))
}

/// Waits until the bottom row shows the input line `> ` + `line`, where
/// `|` marks the cursor, as far as it is in view: the cursor on the bottom
/// row, left of it the end of what is before the cursor (see
/// [`shows_the_end`]), from it on the start of what is after it (nothing
/// if that is empty), and every row above still `above`: the input line
/// never takes a second row.
fn wait_edit(terminal: &Terminal, above: &[String], line: &str) -> Screen {
    let (before, after) = line.split_once('|').expect("a | marks the cursor");
    terminal.wait_until(
        &format!("the input line {line:?} on the bottom row alone"),
        SCREEN_TIMEOUT,
        |screen| {
            let (left, right) = (screen.left_of_cursor(), screen.right_of_cursor());
            usize::from(screen.cursor().0) == screen.height() - 1
                && shows_the_end(&left, before)
                && after.starts_with(&right)
                && (right.is_empty() == after.trim_end().is_empty())
                && screen.rows()[..screen.height() - 1] == *above
        },
    )
}

#[test]
fn the_stamp_helpers_read_utc() {
    assert!(has_stamp("09:05 hans: hi"));
    assert!(!has_stamp("9:05 hans: hi"));
    assert!(!has_stamp("09:05"));
    let since = Since::now();
    let stamps = since.stamps();
    assert!((1..=2).contains(&stamps.len()), "{stamps:?}");
    assert!(since.stamped(&format!("{} * x", stamps[0]), "* x"));
    assert!(!since.stamped("25:00 * x", "* x"));
}

#[test]
fn a_half_typed_line_survives_an_incoming_message() {
    let server = server("30");
    let mut yoda = confab(&server);
    login(&mut yoda, "yoda");
    let mut hans = tcp_user(&server, "hans");
    yoda.wait_for_text("hans logged in");

    let typed = "message hans I was typing";
    yoda.type_text(typed);
    yoda.wait_bottom_row(&format!("> {typed}"));
    let since = Since::now();
    hans.send("message yoda hello\n");

    let input = format!("> {typed}");
    let end = u16::try_from(input.len()).expect("a short line");
    yoda.wait_until(
        "hans's message above the input line, the input line intact",
        SCREEN_TIMEOUT,
        |screen| {
            since.stamped(&screen.row(BOTTOM - 1), "hans: hello")
                && screen.bottom_row() == input
                && screen.cursor() == (ROWS - 1, end)
        },
    );

    // The line is still whole underneath: Enter sends all of it.
    yoda.send(keys::ENTER);
    hans.expect_line("yoda: I was typing");
}

#[test]
fn up_recalls_the_previous_commands_and_never_the_login_answers() {
    let server = server("30");
    let mut yoda = confab(&server);
    login(&mut yoda, "yoda");
    let mut hans = tcp_user(&server, "hans");
    yoda.wait_for_text("hans logged in");
    for text in ["one", "two"] {
        yoda.type_text(&format!("message hans {text}"));
        yoda.send(keys::ENTER);
        hans.expect_line(&format!("yoda: {text}"));
    }
    yoda.wait_bottom_row(">");

    yoda.send(keys::UP);
    yoda.wait_bottom_row("> message hans two");
    yoda.send(keys::UP);
    yoda.wait_bottom_row("> message hans one");
    // Nothing is older: had the password (or username) been kept, this Up
    // would show it and the Down after it `message hans one`.
    yoda.send(keys::UP);
    yoda.send(keys::DOWN);
    yoda.wait_bottom_row("> message hans two");
    yoda.send(keys::DOWN);
    yoda.wait_bottom_row(">");
    assert!(!yoda.screen().contains("> wise"), "{}", yoda.dump());

    yoda.send(keys::UP);
    yoda.send(keys::UP);
    yoda.wait_bottom_row("> message hans one");
    yoda.send(keys::ENTER);
    hans.expect_line("yoda: one");
    yoda.send(keys::UP);
    yoda.wait_bottom_row("> message hans one");
}

#[test]
fn tab_completes_a_username_the_client_has_seen() {
    let server = server("30");
    let mut yoda = confab(&server);
    login(&mut yoda, "yoda");
    let mut hans = tcp_user(&server, "hans");
    yoda.wait_for_text("hans logged in");

    yoda.type_text("message ha");
    yoda.send(keys::TAB);
    let screen = yoda.wait_bottom_row("> message hans ");
    assert_eq!(
        screen.left_of_cursor(),
        "> message hans ",
        "completed with a trailing space, the cursor after it\n{screen}"
    );
    yoda.type_text("completed");
    yoda.send(keys::ENTER);
    hans.expect_line("yoda: completed");

    // vader is an account but the client has never seen the name.
    yoda.type_text("message va");
    yoda.send(keys::TAB);
    yoda.type_text("x");
    yoda.wait_bottom_row("> message vax");
}

#[test]
fn tab_completes_a_command_on_the_first_word() {
    let server = server("30");
    let mut yoda = confab(&server);
    login(&mut yoda, "yoda");

    yoda.type_text("broadc");
    yoda.send(keys::TAB);
    let screen = yoda.wait_bottom_row("> broadcast ");
    assert_eq!(screen.left_of_cursor(), "> broadcast ", "{screen}");

    yoda.send(keys::CTRL_U);
    yoda.type_text("whoelses");
    yoda.send(keys::TAB);
    let screen = yoda.wait_bottom_row("> whoelsesince ");
    assert_eq!(screen.left_of_cursor(), "> whoelsesince ", "{screen}");
}

#[test]
fn a_long_line_of_wide_characters_is_edited_on_the_bottom_row_alone() {
    let server = server("30");
    let mut hans = tcp_user(&server, "hans");
    let mut yoda = confab_sized(&server, ROWS, 40);
    login(&mut yoda, "yoda");
    hans.expect_line("yoda logged in");

    // Ctrl-U on a line whose cursor is at its end empties it.
    yoda.type_text("garbage 字 words");
    yoda.wait_bottom_row("> garbage 字 words");
    yoda.send(keys::CTRL_U);
    let screen = yoda.wait_bottom_row(">");
    let above = screen.rows()[..BOTTOM].to_vec();
    assert_eq!(screen.cursor(), (ROWS - 1, 2), "{screen}");

    // 63 columns with the prompt: longer than the window.
    let step = |yoda: &mut Terminal, keys: &[&[u8]], line: &str| {
        for key in keys {
            yoda.send(key);
        }
        wait_edit(yoda, &above, line)
    };
    let typed = "broadcast alpha 你好世界 beta 🙂🙂 gamma 漢字テスト delta zzz";
    step(&mut yoda, &[typed.as_bytes()], &format!("{typed}|"));
    // The keys of each step, and the line after them (`|` the cursor).
    let steps: [(&[&[u8]], &str); 18] = [
        (
            &[keys::CTRL_W],
            "broadcast alpha 你好世界 beta 🙂🙂 gamma 漢字テスト delta |",
        ),
        (
            &["ω終".as_bytes()],
            "broadcast alpha 你好世界 beta 🙂🙂 gamma 漢字テスト delta ω終|",
        ),
        (
            &[keys::LEFT, keys::LEFT],
            "broadcast alpha 你好世界 beta 🙂🙂 gamma 漢字テスト delta |ω終",
        ),
        (
            &[keys::BACKSPACE],
            "broadcast alpha 你好世界 beta 🙂🙂 gamma 漢字テスト delta|ω終",
        ),
        (
            &[keys::HOME],
            "|broadcast alpha 你好世界 beta 🙂🙂 gamma 漢字テスト deltaω終",
        ),
        (
            &[keys::ALT_F, keys::ALT_F],
            "broadcast alpha| 你好世界 beta 🙂🙂 gamma 漢字テスト deltaω終",
        ),
        (
            &[keys::RIGHT, keys::DELETE, keys::DELETE],
            "broadcast alpha |世界 beta 🙂🙂 gamma 漢字テスト deltaω終",
        ),
        (
            &[keys::CTRL_E],
            "broadcast alpha 世界 beta 🙂🙂 gamma 漢字テスト deltaω終|",
        ),
        (
            &[keys::ALT_B],
            "broadcast alpha 世界 beta 🙂🙂 gamma 漢字テスト |deltaω終",
        ),
        (
            &[keys::ALT_B],
            "broadcast alpha 世界 beta 🙂🙂 gamma |漢字テスト deltaω終",
        ),
        (
            &[keys::ALT_B],
            "broadcast alpha 世界 beta 🙂🙂 |gamma 漢字テスト deltaω終",
        ),
        (
            &[keys::LEFT, keys::LEFT],
            "broadcast alpha 世界 beta 🙂|🙂 gamma 漢字テスト deltaω終",
        ),
        (
            &[keys::BACKSPACE],
            "broadcast alpha 世界 beta |🙂 gamma 漢字テスト deltaω終",
        ),
        (
            &[keys::CTRL_A],
            "|broadcast alpha 世界 beta 🙂 gamma 漢字テスト deltaω終",
        ),
        (
            &[keys::END],
            "broadcast alpha 世界 beta 🙂 gamma 漢字テスト deltaω終|",
        ),
        (
            &[" junk尾巴".as_bytes()],
            "broadcast alpha 世界 beta 🙂 gamma 漢字テスト deltaω終 junk尾巴|",
        ),
        (
            &[keys::LEFT; 7],
            "broadcast alpha 世界 beta 🙂 gamma 漢字テスト deltaω終| junk尾巴",
        ),
        (
            &[keys::CTRL_K],
            "broadcast alpha 世界 beta 🙂 gamma 漢字テスト deltaω終|",
        ),
    ];
    for (keys, line) in steps {
        let screen = step(&mut yoda, keys, line);
        if line.starts_with('|') {
            // At the start, the prompt shows again.
            assert_eq!(screen.left_of_cursor(), "> ", "{screen}");
        }
    }

    yoda.send(keys::ENTER);
    hans.expect_line("yoda: alpha 世界 beta 🙂 gamma 漢字テスト deltaω終");
    let screen = yoda.wait_bottom_row(">");
    assert_eq!(screen.cursor(), (ROWS - 1, 2), "{screen}");
}

#[test]
fn own_messages_are_shown_as_sent() {
    let server = server("30");
    let mut hans = tcp_user(&server, "hans");
    let mut yoda = confab(&server);
    login(&mut yoda, "yoda");
    hans.expect_line("yoda logged in");
    let since = Since::now();

    yoda.type_text("message hans on my way");
    yoda.send(keys::ENTER);
    hans.expect_line("yoda: on my way");
    yoda.type_text("broadcast hi");
    yoda.send(keys::ENTER);
    hans.expect_line("yoda: hi");

    let screen = yoda.wait_until("both messages as sent", SCREEN_TIMEOUT, |s| {
        since.stamped(&s.row(BOTTOM - 2), "yoda → hans: on my way")
            && since.stamped(&s.row(BOTTOM - 1), "yoda → everyone: hi")
            && s.bottom_row() == ">"
    });
    assert_every_line_stamped(&screen);
}

#[test]
fn notices_and_errors_are_marked() {
    let server = server("30");
    let mut yoda = confab(&server);
    login(&mut yoda, "yoda");
    let since = Since::now();
    let mut hans = tcp_user(&server, "hans");
    yoda.wait_until("hans's login as a notice", SCREEN_TIMEOUT, |s| {
        since.stamped(&s.row(BOTTOM - 1), "* hans logged in")
    });

    yoda.type_text("frobnicate");
    yoda.send(keys::ENTER);
    yoda.wait_until("the error", SCREEN_TIMEOUT, |s| {
        since.stamped(
            &s.row(BOTTOM - 1),
            "! Error. Invalid command (type help for the list of commands)",
        )
    });

    hans.send("logout\n");
    hans.expect_line("Goodbye");
    let screen = yoda.wait_until("hans's logout as a notice", SCREEN_TIMEOUT, |s| {
        since.stamped(&s.row(BOTTOM - 1), "* hans logged out")
    });
    assert_eq!(screen.bottom_row(), ">", "{screen}");
    assert_every_line_stamped(&screen);
}

#[test]
fn offline_messages_come_under_the_away_marker_with_the_time_they_were_sent() {
    let server = server("30");
    let mut hans = tcp_user(&server, "hans");
    let sent = Since::now();
    for text in ["first", "second"] {
        hans.send(&format!("message yoda {text}\n"));
        hans.expect_line("yoda is offline. Your message will be delivered when they log in");
    }

    let arrived = Since::now();
    let mut yoda = confab(&server);
    login(&mut yoda, "yoda");
    let screen = yoda.wait_for_text("* end of offline messages");
    let rows = screen.rows();
    let marker = rows
        .iter()
        .position(|row| row.ends_with(" * while you were away"))
        .unwrap_or_else(|| panic!("no away marker\n{screen}"));
    assert!(
        arrived.stamped(&rows[marker], "* while you were away"),
        "the marker has the current time\n{screen}"
    );
    assert!(
        sent.stamped(&rows[marker + 1], "hans: first"),
        "the first message, with the time it was sent\n{screen}"
    );
    assert!(
        sent.stamped(&rows[marker + 2], "hans: second"),
        "the second message, with the time it was sent\n{screen}"
    );
    assert!(
        arrived.stamped(&rows[marker + 3], "* end of offline messages"),
        "the end marker next\n{screen}"
    );
    assert_every_line_stamped(&screen);
}

/// When the mail of the test of an earlier day was stored: 2021-03-04
/// 05:06:07 UTC, in milliseconds since the epoch.
const LONG_AGO_MS: u64 = 1_614_834_367_000;

#[test]
fn offline_mail_of_an_earlier_day_shows_its_date() {
    let dir = TempDir::new("terminal-old-mail");
    let data = dir.data();
    let durable = || {
        ServerProcess::start(ProcessOptions {
            args: vec!["--data-dir".into(), data.display().to_string()],
            ..ProcessOptions::default()
        })
    };
    let mut first = durable();
    first.signal(libc::SIGTERM);
    assert!(first.wait(SCREEN_TIMEOUT).success());
    store_mail(&data, "yoda", "hans", "from long ago", LONG_AGO_MS);

    let server = durable();
    let mut hans = tcp_user(&server, "hans");
    let sent = Since::now();
    hans.send("message yoda just now\n");
    hans.expect_line("yoda is offline. Your message will be delivered when they log in");
    let arrived = Since::now();
    let mut yoda = confab(&server);
    login(&mut yoda, "yoda");

    let screen = yoda.wait_for_text("* end of offline messages");
    let rows = screen.rows();
    let marker = rows
        .iter()
        .position(|row| row.ends_with(" * while you were away"))
        .unwrap_or_else(|| panic!("no away marker\n{screen}"));
    assert!(
        arrived.stamped(&rows[marker], "* while you were away"),
        "{screen}"
    );
    assert_eq!(
        rows[marker + 1],
        "2021-03-04 05:06 hans: from long ago",
        "the date and time it was stored, in UTC\n{screen}"
    );
    assert!(
        sent.stamped(&rows[marker + 2], "hans: just now"),
        "{screen}"
    );
    assert!(
        arrived.stamped(&rows[marker + 3], "* end of offline messages"),
        "{screen}"
    );
}

#[test]
fn the_login_prompts_are_the_input_line_and_the_password_is_never_written() {
    let server = server("30");
    let mut yoda = confab(&server);
    let screen = yoda.wait_bottom_row("Username: ");
    assert_eq!(screen.cursor(), (ROWS - 1, 10), "{screen}");
    yoda.type_text("yoda");
    yoda.wait_bottom_row("Username: yoda");
    yoda.send(keys::ENTER);
    let screen = yoda.wait_bottom_row("Password: ");
    assert_eq!(screen.cursor(), (ROWS - 1, 10), "{screen}");
    yoda.type_text("wise");
    yoda.send(keys::ENTER);
    let screen = yoda.wait_until("the welcome and the > prompt", SCREEN_TIMEOUT, |s| {
        s.contains(WELCOME) && s.bottom_row() == ">"
    });
    assert_eq!(screen.cursor(), (ROWS - 1, 2), "{screen}");
    let raw = yoda.raw_output();
    assert!(
        !raw.windows(4).any(|w| w == b"wise"),
        "the password was written to the terminal\n{}",
        yoda.dump()
    );
}

#[test]
fn ctrl_d_clears_a_line_and_on_an_empty_one_logs_out() {
    let server = server("30");
    let mut hans = tcp_user(&server, "hans");
    let mut yoda = confab(&server);
    login(&mut yoda, "yoda");
    hans.expect_line("yoda logged in");

    yoda.type_text("half a line");
    yoda.wait_bottom_row("> half a line");
    yoda.send(keys::CTRL_D);
    let screen = yoda.wait_bottom_row(">");
    assert_eq!(screen.cursor(), (ROWS - 1, 2), "{screen}");
    assert!(yoda.try_status().is_none(), "exited\n{}", yoda.dump());

    yoda.send(keys::CTRL_D);
    yoda.wait_for_text("Goodbye");
    assert_eq!(yoda.wait_exit(SCREEN_TIMEOUT).code(), Some(0));
    // Nothing of the cleared line went out.
    hans.expect_line("yoda logged out");
}

/// The script of the terminal-settings tests: the settings before and
/// after the client, its exit status as the shell sees it, and `DONE`
/// where the next output lands. The trap keeps the shell itself alive
/// through a SIGINT (and is reset to the default for the client).
const SETTINGS_SCRIPT: &str = r#"cd "$3" || exit 9
trap : INT
stty -g > before
"$1" 127.0.0.1 "$2"
echo $? > status
stty -g > after
echo DONE"#;

/// Runs the client under [`SETTINGS_SCRIPT`], lets `leave` make it exit,
/// and checks that the terminal is left as it was, the next output on a
/// line of its own, and that the shell saw `status`.
fn leaves_the_terminal_as_it_was(leave: impl FnOnce(&mut Terminal), status: &str) {
    let server = server("30");
    let dir = TempDir::new("terminal-settings");
    let mut terminal = confab_under_sh(SETTINGS_SCRIPT, &server, &dir);

    leave(&mut terminal);

    assert!(terminal.wait_exit(SCREEN_TIMEOUT).success());
    let screen = terminal.screen();
    let read = |name: &str| {
        fs::read_to_string(dir.0.join(name)).unwrap_or_else(|e| panic!("{name}: {e}\n{screen}"))
    };
    assert_eq!(read("status").trim(), status, "{screen}");
    let before = read("before");
    assert!(!before.trim().is_empty(), "{screen}");
    assert_eq!(read("after"), before, "stty -g after and before\n{screen}");
    assert!(
        screen.rows().iter().any(|row| row == "DONE"),
        "the shell's next output on a fresh line\n{screen}"
    );
    assert_eq!(screen.modes(), Modes::default(), "{screen}");
}

#[test]
fn ctrl_d_leaves_the_terminal_as_it_was() {
    leaves_the_terminal_as_it_was(
        |terminal| {
            login(terminal, "yoda");
            terminal.send(keys::CTRL_D);
            terminal.wait_for_text("Goodbye");
        },
        "0",
    );
}

#[test]
fn ctrl_c_leaves_the_terminal_as_it_was() {
    leaves_the_terminal_as_it_was(
        |terminal| {
            login(terminal, "yoda");
            terminal.type_text("half typed");
            terminal.wait_bottom_row("> half typed");
            terminal.send(keys::CTRL_C);
        },
        "130",
    );
}

#[test]
fn ctrl_c_at_the_password_prompt_leaves_the_terminal_as_it_was() {
    leaves_the_terminal_as_it_was(
        |terminal| {
            terminal.wait_bottom_row("Username: ");
            terminal.type_text("yoda");
            terminal.send(keys::ENTER);
            terminal.wait_bottom_row("Password: ");
            terminal.type_text("wi");
            terminal.send(keys::CTRL_C);
        },
        "130",
    );
}

#[test]
fn after_an_inactivity_logout_typing_reaches_nobody_and_enter_reconnects() {
    let server = server("1");
    let dir = TempDir::new("terminal-reconnect");
    let mut terminal = confab_under_sh(
        r#""$1" 127.0.0.1 "$2"
echo "status $?"
echo PARENT-READ
read line
echo "parent got [$line]""#,
        &server,
        &dir,
    );
    login(&mut terminal, "yoda");

    let screen = terminal.wait_bottom_row(RECONNECT);
    assert!(
        screen.contains("You have been logged out due to inactivity"),
        "the client shows why\n{screen}"
    );
    terminal.type_text("secret words");
    terminal.send(keys::ENTER);
    let screen = terminal.wait_bottom_row("Username: ");
    assert!(
        !screen.contains("PARENT-READ"),
        "the client exited\n{screen}"
    );

    // A fresh login: had `secret words` gone to the new connection, the
    // server would be past the username by now.
    login(&mut terminal, "yoda");
    terminal.send(keys::CTRL_D);
    terminal.wait_for_text("PARENT-READ");
    let screen = terminal.wait_for_text("status 0");
    assert!(screen.contains("Goodbye"), "{screen}");
    terminal.type_text("after");
    terminal.send(keys::ENTER);
    terminal.wait_for_text("parent got [after]");
    assert!(terminal.wait_exit(SCREEN_TIMEOUT).success());
    assert!(!terminal.screen().contains("secret"), "{}", terminal.dump());
}

/// yoda logged in on a terminal of [`ROWS`] × [`COLS`] with `text` typed
/// after `message hans ` and not entered yet, and hans reading.
fn typed_for_hans(server: &ServerProcess, text: &str) -> (Terminal, Client) {
    let mut hans = tcp_user(server, "hans");
    let mut yoda = confab(server);
    login(&mut yoda, "yoda");
    hans.expect_line("yoda logged in");
    yoda.type_text(&format!("message hans {text}"));
    yoda.wait_bottom_row(&format!("> message hans {text}"));
    (yoda, hans)
}

/// Resizes to `rows` × `cols` and waits for the whole input line `input`
/// on the new bottom row, the cursor at its end.
fn resize_keeps_the_input_line(yoda: &mut Terminal, rows: u16, cols: u16, input: &str) {
    yoda.resize(rows, cols);
    yoda.wait_until(
        &format!("the input line on the bottom row of {rows} x {cols}"),
        SCREEN_TIMEOUT,
        |s| {
            s.height() == usize::from(rows)
                && s.bottom_row() == input
                && s.cursor().0 == rows - 1
                && s.right_of_cursor().is_empty()
        },
    );
}

#[test]
fn the_input_line_stays_on_the_bottom_row_when_the_window_gets_shorter() {
    let server = server("30");
    let text = "a line that stays whole through resizes, 漢字 too";
    let (mut yoda, mut hans) = typed_for_hans(&server, text);
    let input = format!("> message hans {text}");
    resize_keeps_the_input_line(&mut yoda, 20, COLS, &input);
    resize_keeps_the_input_line(&mut yoda, 20, 100, &input);
    yoda.send(keys::ENTER);
    hans.expect_line(&format!("yoda: {text}"));
}

#[test]
fn the_input_line_stays_on_the_bottom_row_when_the_window_gets_taller() {
    let server = server("30");
    let text = "a line that stays whole through resizes, 漢字 too";
    let (mut yoda, mut hans) = typed_for_hans(&server, text);
    // Few rows scrolled off: the terminal adds blank rows at the bottom.
    resize_keeps_the_input_line(&mut yoda, 30, COLS, &format!("> message hans {text}"));
    yoda.send(keys::ENTER);
    hans.expect_line(&format!("yoda: {text}"));
}

#[test]
fn the_input_line_stays_on_the_bottom_row_when_the_window_narrows() {
    let server = server("30");
    // 75 columns: one row of 80, more than one of 40.
    let text = "a resized line that is much longer than forty columns, 漢字 too";
    let (mut yoda, mut hans) = typed_for_hans(&server, text);

    yoda.resize(ROWS, 40);
    yoda.wait_until(
        "the input line's end on the bottom row alone",
        SCREEN_TIMEOUT,
        |s| {
            s.cursor().0 == ROWS - 1
                && s.left_of_cursor().ends_with("columns, 漢字 too")
                && s.right_of_cursor().is_empty()
                && !s.row(BOTTOM - 1).contains("漢字 too")
        },
    );
    yoda.send(keys::ENTER);
    hans.expect_line(&format!("yoda: {text}"));
}

#[test]
fn a_paste_of_several_lines_sends_them_one_by_one_and_a_pasted_tab_is_text() {
    let server = server("30");
    let mut yoda = confab(&server);
    login(&mut yoda, "yoda");
    let mut hans = tcp_user(&server, "hans");
    yoda.wait_for_text("hans logged in");

    // What a terminal with bracketed paste on sends for a pasted text of
    // three lines, the last without its newline.
    yoda.send(b"\x1b[200~broadcast one\rbroadcast two\tthree\rbroadcast fo\x1b[201~");
    hans.expect_line("yoda: one");
    hans.expect_line("yoda: two three");
    yoda.wait_bottom_row("> broadcast fo");
    yoda.type_text("ur");
    yoda.send(keys::ENTER);
    hans.expect_line("yoda: four");
}

#[test]
fn help_is_answered_by_the_client_one_line_per_command() {
    let server = server("30");
    let mut yoda = confab(&server);
    login(&mut yoda, "yoda");
    yoda.type_text("help");
    yoda.send(keys::ENTER);
    let screen = yoda.wait_for_text("this list");
    for command in [
        "message <user> <text>",
        "broadcast <text>",
        "whoelse ",
        "whoelsesince <seconds>",
        "block <user>",
        "unblock <user>",
        "startprivate <user>",
        "private <user> <text>",
        "stopprivate <user>",
        "logout ",
    ] {
        let line = screen
            .lines()
            .into_iter()
            .find(|line| line.contains(&format!("* {command}")))
            .unwrap_or_else(|| panic!("no help line for {command}\n{screen}"));
        let explanation = line.split_once(command).map_or("", |(_, rest)| rest);
        assert!(
            explanation.trim().len() > 5,
            "{command} has no explanation: {line:?}\n{screen}"
        );
    }
    // The server's own help (its bare usage lines) was not asked for.
    assert!(!screen.contains("* message <user> <message>"), "{screen}");
}

/// Whether `bytes` hold an SGR sequence that sets a foreground colour.
fn has_colour(bytes: &[u8]) -> bool {
    let text = String::from_utf8_lossy(bytes);
    text.split("\x1b[").skip(1).any(|sequence| {
        sequence
            .split_once('m')
            .is_some_and(|(params, _)| params.split(';').any(|p| p.starts_with("3")))
    })
}

#[test]
fn names_are_coloured_unless_no_color_or_the_option_says_not_to() {
    let server = server("30");
    let port = server.addr.port().to_string();
    let start = |env_no_color: Option<&str>, option: bool| {
        let mut command = Command::new(CONFAB);
        command.args(["127.0.0.1", &port]);
        if option {
            command.arg("--no-color");
        }
        client_environment(&mut command);
        match env_no_color {
            Some(value) => command.env("NO_COLOR", value),
            None => command.env_remove("NO_COLOR"),
        };
        let mut terminal = Terminal::spawn(command, ROWS, COLS).expect("start confab");
        login(&mut terminal, "yoda");
        terminal.type_text("broadcast hi");
        terminal.send(keys::ENTER);
        terminal.wait_for_text("yoda → everyone: hi");
        terminal.send(keys::CTRL_D);
        terminal.wait_exit(SCREEN_TIMEOUT);
        has_colour(&terminal.raw_output())
    };
    assert!(start(None, false), "colours by default");
    assert!(start(Some(""), false), "an empty NO_COLOR is not set");
    assert!(!start(Some("1"), false), "NO_COLOR");
    assert!(!start(None, true), "--no-color");
}

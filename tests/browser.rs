//! The web page in a real browser: Debian's headless Chromium
//! (`confab_testkit::browser`) opens the page of the real `confab-server
//! --web-port` and is driven as a person would, typing and clicking,
//! while plain TCP users (the testkit's line client) talk to it. What the
//! page shows is read from its DOM; what the TCP users get is the ground
//! truth of what it sent. The page's time zone is UTC.
//!
//! The whole run must leave nothing in the console: no error, no
//! exception, no Content-Security-Policy report, no dialog. Every wait is
//! bounded (a few seconds) and a failed one shows the conversation.
//!
//! With `CONFAB_SCREENSHOT=PATH` the desktop screenshot is also written to
//! PATH (`CONFAB_SCREENSHOT=docs/web.png cargo test --test browser`
//! renews the README's picture).

mod common;

use std::env;
use std::fs;

use common::{Client, ProcessOptions, ServerProcess, TempDir, WELCOME};
use confab_testkit::artifacts;
use confab_testkit::browser::Browser;
use confab_testkit::stamps::Since;
use confab_testkit::store_mail;
use serde_json::Value;

/// The conversation's text, one entry a line, for failure messages.
const LOG: &str = "[...document.querySelectorAll('#log li')].map(li => li.textContent).join('\\n')";

/// The desktop window.
const DESKTOP: (u32, u32) = (1100, 700);

/// When the mail of an earlier day was stored: 2021-03-04 05:06:07 UTC, in
/// milliseconds since the epoch.
const LONG_AGO_MS: u64 = 1_614_834_367_000;

/// `text` as a JavaScript string literal.
fn js(text: &str) -> String {
    Value::String(text.to_owned()).to_string()
}

/// The conversation's entries as (kind, text), oldest first.
fn entries(browser: &Browser) -> Vec<(String, String)> {
    let value = browser.eval(
        "[...document.querySelectorAll('#log li')].map(li => [li.dataset.kind, li.textContent])",
    );
    let Value::Array(items) = value else {
        panic!("the entries are {value}");
    };
    items
        .iter()
        .map(|item| match item {
            Value::Array(pair) => match (&pair[0], &pair[1]) {
                (Value::String(kind), Value::String(text)) => (kind.clone(), text.clone()),
                _ => panic!("an entry is {item}"),
            },
            _ => panic!("an entry is {item}"),
        })
        .collect()
}

/// Waits for an entry of `kind` whose text, after its stamp, is `text`.
fn wait_entry(browser: &Browser, kind: &str, text: &str) {
    browser.wait_for(
        &format!("a {kind} entry {text:?}"),
        &format!(
            "[...document.querySelectorAll('#log li')].some(li => li.dataset.kind === {} \
             && li.textContent.endsWith(' ' + {}))",
            js(kind),
            js(text)
        ),
        LOG,
    );
}

/// The entry of `kind` ending in `text`; panics if there is none.
fn entry(browser: &Browser, kind: &str, text: &str) -> String {
    entries(browser)
        .into_iter()
        .find(|(k, t)| k == kind && t.ends_with(&format!(" {text}")))
        .map(|(_, t)| t)
        .unwrap_or_else(|| panic!("no {kind} entry {text:?} in {:?}", entries(browser)))
}

/// The computed text colour of the entry of `kind` ending in `text`.
fn colour(browser: &Browser, kind: &str, text: &str) -> String {
    browser.text(&format!(
        "getComputedStyle([...document.querySelectorAll('#log li')].find(li => \
         li.dataset.kind === {} && li.textContent.endsWith(' ' + {}))).color",
        js(kind),
        js(text)
    ))
}

/// Logs in through the form as yoda, typing into its fields and pressing
/// Enter, and waits for the welcome `count` times in the conversation.
fn log_in_through_the_form(browser: &Browser, count: usize) {
    browser.wait_for(
        "the login form, connected",
        "!document.getElementById('login').hidden \
         && document.getElementById('status').textContent === 'connected'",
        "document.body.innerText",
    );
    if browser.eval("document.getElementById('username').value === ''") == Value::Bool(true) {
        browser.click("#username");
        browser.type_text("yoda");
    }
    browser.click("#password");
    browser.type_text("wise");
    browser.press("Enter");
    browser.wait_for(
        "the welcome",
        &format!(
            "[...document.querySelectorAll('#log li')].filter(li => li.textContent.endsWith({})).length === {count}",
            js(&format!("* {WELCOME}"))
        ),
        "document.body.innerText",
    );
    // The password went to the server and nowhere else.
    assert_eq!(
        browser.text("document.getElementById('password').value"),
        ""
    );
    assert_eq!(
        browser.eval("localStorage.length + sessionStorage.length"),
        Value::from(0)
    );
    assert_eq!(browser.text("document.cookie"), "");
    assert!(!browser.text("document.body.innerText").contains("wise"));
}

/// Types `line` into the input box and presses Enter.
fn send(browser: &Browser, line: &str) {
    browser.click("#input");
    browser.type_text(line);
    browser.press("Enter");
}

/// Whether `png` is a PNG image of `width` × `height` pixels.
fn is_png_of(png: &[u8], (width, height): (u32, u32)) -> bool {
    let be = |at: usize| u32::from_be_bytes([png[at], png[at + 1], png[at + 2], png[at + 3]]);
    png.len() > 24 && png.starts_with(b"\x89PNG\r\n\x1a\n") && be(16) == width && be(20) == height
}

/// A durable server with `--web-port 0` whose yoda has mail stored long
/// ago (written into the journal while it was stopped).
fn server_with_old_mail(data: &std::path::Path) -> ServerProcess {
    let start = |web: bool| {
        let mut args = vec!["--data-dir".to_owned(), data.display().to_string()];
        if web {
            args.extend(["--web-port".to_owned(), "0".to_owned()]);
        }
        ServerProcess::start(ProcessOptions {
            args,
            ..ProcessOptions::default()
        })
    };
    let mut first = start(false);
    first.signal(libc::SIGTERM);
    assert!(first.wait(common::IO_TIMEOUT).success());
    store_mail(data, "yoda", "vader", "I have the high ground", LONG_AGO_MS);
    start(true)
}

#[test]
fn a_session_in_the_browser() {
    let dir = TempDir::new("browser");
    let mut server = server_with_old_mail(&dir.data());
    let page = format!("http://{}/", server.web_addr());

    // Mail for yoda, sent before the page logs in.
    let sent = Since::now();
    let mut luke = server.login("luke", "lightsaber");
    luke.send("message yoda back from Dagobah?\n");
    luke.expect_line("yoda is offline. Your message will be delivered when they log in");
    luke.logout();
    let mut hans = server.login("hans", "falcon");

    let browser = Browser::launch(DESKTOP.0, DESKTOP.1);
    // The console is watched: a probe is reported, then forgotten.
    browser.eval("console.error('probe')");
    common::wait_until("the console's probe reported", || {
        browser.problems().iter().any(|p| p.contains("probe"))
    });
    browser.clear_problems();

    browser.open(&page);
    let arrived = Since::now();
    log_in_through_the_form(&browser, 1);
    hans.expect_line("yoda logged in");

    // Offline mail under its marker, each with the time it was stored.
    wait_entry(&browser, "marker", "end of offline messages");
    let all = entries(&browser);
    let marker = all
        .iter()
        .position(|(kind, text)| kind == "marker" && text.ends_with(" while you were away"))
        .unwrap_or_else(|| panic!("no away marker in {all:?}"));
    assert!(
        arrived.stamped(&all[marker].1, "while you were away"),
        "{all:?}"
    );
    assert_eq!(
        all[marker + 1],
        (
            "queued".into(),
            "2021-03-04 05:06 vader: I have the high ground".into()
        ),
        "mail of an earlier day has its date: {all:?}"
    );
    assert_eq!(all[marker + 2].0, "queued", "{all:?}");
    assert!(
        sent.stamped(&all[marker + 2].1, "luke: back from Dagobah?"),
        "{all:?}"
    );
    assert_eq!(all[marker + 3].0, "marker", "{all:?}");
    assert!(
        arrived.stamped(&all[marker + 3].1, "end of offline messages"),
        "{all:?}"
    );

    // Who is online: from `whoelse`, then from presence.
    browser.wait_for(
        "hans in the list of who is online",
        "document.getElementById('people').textContent === 'hans'",
        "document.getElementById('people').textContent",
    );
    let mut leia = server.login("leia", "blasterpistol");
    hans.expect_line("leia logged in");
    wait_entry(&browser, "notice", "* leia logged in");
    browser.wait_for(
        "leia in the list, in order",
        "[...document.querySelectorAll('#people button')].map(b => b.textContent).join() === 'hans,leia'",
        "document.getElementById('people').textContent",
    );

    // A message from a TCP user, stamped.
    let since = Since::now();
    hans.send("message yoda hello from tcp\n");
    wait_entry(&browser, "message", "hans: hello from tcp");
    assert!(since.stamped(
        &entry(&browser, "message", "hans: hello from tcp"),
        "hans: hello from tcp"
    ));

    // A name in the list starts a message to that user.
    browser.click("#people li:first-child button");
    assert_eq!(
        browser.text("document.getElementById('input').value"),
        "message hans "
    );
    assert_eq!(browser.text("document.activeElement.id"), "input");
    browser.type_text("hello from the browser");
    browser.press("Enter");
    hans.expect_line("yoda: hello from the browser");
    wait_entry(&browser, "sent", "yoda → hans: hello from the browser");
    assert_eq!(browser.text("document.getElementById('input').value"), "");

    send(&browser, "broadcast hello all");
    hans.expect_line("yoda: hello all");
    leia.expect_line("yoda: hello all");
    wait_entry(&browser, "sent", "yoda → everyone: hello all");
    leia.send("message yoda the rebels are ready\n");
    wait_entry(&browser, "message", "leia: the rebels are ready");

    // A typo: the server's error, red, with the terminal's hint.
    send(&browser, "wisper luke hi");
    wait_entry(
        &browser,
        "error",
        "! Error. Invalid command (type help for the list of commands)",
    );
    let error = colour(
        &browser,
        "error",
        "! Error. Invalid command (type help for the list of commands)",
    );
    let notice = colour(&browser, "notice", "* leia logged in");
    let message = colour(&browser, "message", "leia: the rebels are ready");
    assert_eq!(error, "rgb(255, 107, 107)", "errors are red");
    assert!(
        notice != message && notice != error && message != error,
        "{notice} {message} {error}"
    );
    // hans and leia have colours of their own, the same every time.
    let names = browser.eval(
        "[...document.querySelectorAll('#log .name')].map(n => n.textContent + ' ' + n.className)",
    );
    let Value::Array(names) = names else {
        panic!("{names}")
    };
    let class_of = |user: &str| -> Vec<String> {
        let mut classes: Vec<String> = names
            .iter()
            .filter_map(Value::as_str)
            .filter_map(|n| n.strip_prefix(&format!("{user} ")))
            .map(str::to_owned)
            .collect();
        classes.dedup();
        classes
    };
    assert_eq!(class_of("hans").len(), 1, "{names:?}");
    assert_ne!(class_of("hans"), class_of("leia"), "{names:?}");

    // The README's picture: a line being typed at the bottom.
    browser.type_text("message luke meet us at the");
    let png = browser.screenshot();
    assert!(is_png_of(&png, DESKTOP), "a {DESKTOP:?} PNG");
    let tmp = artifacts::target_tmp().expect("cargo's temporary directory");
    fs::write(tmp.join("web.png"), &png).expect("write target/tmp/web.png");
    if let Some(path) = env::var_os("CONFAB_SCREENSHOT") {
        fs::write(&path, &png).unwrap_or_else(|e| panic!("write {path:?}: {e}"));
    }
    browser.eval("document.getElementById('input').value = ''");

    // `help` goes to the server: one usage line per command.
    send(&browser, "help");
    wait_entry(&browser, "notice", "* whoelsesince <seconds>");

    // Up and Down go through what was sent; past the newest, the draft.
    browser.click("#input");
    browser.type_text("draft");
    for expected in ["help", "wisper luke hi", "broadcast hello all"] {
        browser.press("ArrowUp");
        assert_eq!(
            browser.text("document.getElementById('input').value"),
            expected
        );
    }
    for expected in ["wisper luke hi", "help", "draft"] {
        browser.press("ArrowDown");
        assert_eq!(
            browser.text("document.getElementById('input').value"),
            expected
        );
    }
    browser.eval("document.getElementById('input').value = ''");

    // What another user sends is text, never markup.
    let markup = "<img src=x onerror=alert(1)> <b>bold</b> &amp;";
    hans.send(&format!("message yoda {markup}\n"));
    wait_entry(&browser, "message", &format!("hans: {markup}"));
    assert_eq!(
        browser
            .eval("document.querySelectorAll('#log img, #log b').length + document.images.length"),
        Value::from(0),
        "no element was made of a message"
    );
    hans.send("message yoda after the markup\n");
    wait_entry(&browser, "message", "hans: after the markup");
    assert_eq!(browser.dialogs(), Vec::<String>::new(), "no dialog opened");

    // A phone: one column, the list above the conversation, nothing wider
    // than the screen.
    browser.set_viewport(390, 844, true);
    browser.wait_for(
        "the phone layout",
        "innerWidth === 390 && document.getElementById('people').getBoundingClientRect().bottom \
         <= document.getElementById('log').getBoundingClientRect().top + 1",
        "[innerWidth, document.documentElement.scrollWidth]",
    );
    assert_eq!(
        browser.eval("document.documentElement.scrollWidth <= innerWidth"),
        Value::Bool(true),
        "no horizontal overflow at 390 px: {}",
        browser.eval("document.documentElement.scrollWidth")
    );
    fs::write(tmp.join("web-phone.png"), browser.screenshot()).expect("write web-phone.png");
    browser.set_viewport(DESKTOP.0, DESKTOP.1, false);

    // A shutdown: the server's last word, the conversation kept, Reconnect.
    server.signal(libc::SIGTERM);
    browser.wait_for(
        "the drop and its reason",
        "!document.getElementById('drop').hidden \
         && document.getElementById('drop-reason').textContent === 'Server is shutting down'",
        "document.body.innerText",
    );
    assert_eq!(browser.text("document.activeElement.id"), "reconnect");
    wait_entry(&browser, "notice", "* Connection closed by server");
    entry(&browser, "message", "hans: hello from tcp");
    assert!(server.wait(common::IO_TIMEOUT).success());
    drop((hans, leia));

    assert_eq!(
        browser.problems(),
        Vec::<String>::new(),
        "the console is clean"
    );
}

#[test]
fn after_an_inactivity_logout_enter_reconnects_through_the_form() {
    let server = ServerProcess::start(ProcessOptions {
        args: vec!["--web-port".into(), "0".into()],
        timeout: Some("4".into()),
        ..ProcessOptions::default()
    });
    let browser = Browser::launch(DESKTOP.0, DESKTOP.1);
    browser.open(&format!("http://{}/", server.web_addr()));
    log_in_through_the_form(&browser, 1);

    browser.wait_for(
        "the inactivity logout",
        "!document.getElementById('drop').hidden && document.getElementById('drop-reason').textContent \
         === 'You have been logged out due to inactivity'",
        LOG,
    );
    // Enter: the form again, the name kept, the password to type.
    browser.press("Enter");
    browser.wait_for(
        "the form with the password to type",
        "!document.getElementById('login').hidden && document.activeElement.id === 'password' \
         && document.getElementById('username').value === 'yoda'",
        "document.body.innerText",
    );
    log_in_through_the_form(&browser, 2);
    entry(
        &browser,
        "notice",
        "* You have been logged out due to inactivity",
    );
    let mut hans: Client = server.login("hans", "falcon");
    hans.send("message yoda welcome back\n");
    wait_entry(&browser, "message", "hans: welcome back");
    assert_eq!(
        browser.problems(),
        Vec::<String>::new(),
        "the console is clean"
    );
}

//! Fault tests: resets, half-closes, connection churn, floods, garbage
//! bytes, readers that never read, running out of descriptors, and shutdown
//! with many clients. Real sockets on 127.0.0.1; every wait is bounded.
//!
//! Tests that measure the server process (memory, CPU time, signals, a low
//! descriptor limit) run the `confab-server` binary as a child; the others
//! run the server in-process, the descriptor-leak test in a child copy of
//! this test binary so that tests running in parallel do not disturb its
//! count.

mod common;

use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use confab::server::READ_BUDGET;

use common::{
    open_descriptors, three_users, two_users, wait_until, Client, FailOnPanic, Options,
    ProcessOptions, Rng, ServerProcess, TestServer, HELP, INVALID_PASSWORD, INVALID_USERNAME,
    IO_TIMEOUT, PASSWORD, USERNAME, WELCOME,
};

const INVALID_COMMAND: &str = "Error. Invalid command";
const INVALID_USER: &str = "Error. Invalid user";
const LINE_TOO_LONG: &str = "Error. Line too long";
const SERVER_FULL: &str = "Error. Server is full";
const SHUTTING_DOWN: &str = "Server is shutting down";

// ---------------------------------------------------------------- resets

#[test]
fn reset_mid_line_is_announced_once_and_the_server_goes_on() {
    let server = TestServer::start();
    let (mut yoda, mut hans, mut vader) = three_users(server.addr);
    // The whoelse reply proves the server read the write that ends in the
    // unfinished line.
    hans.send("whoelse\nmessage yoda this line never ends");
    hans.expect_lines(&["vader", "yoda"]);
    // Output hans never reads, so the reset finds data pending both ways.
    for i in 0..200 {
        yoda.send(&format!("message hans unread {i}\n"));
    }
    yoda.barrier();
    hans.reset();

    yoda.expect_line("hans logged out");
    vader.expect_line("hans logged out");
    yoda.barrier();
    vader.barrier();
    yoda.expect_silence(100);
    vader.expect_silence(0);
    yoda.send("whoelse\n");
    yoda.expect_line("vader");
    server.wait_for_connections(2);
    // hans is really offline and can come back.
    let mut hans = server.login("hans");
    yoda.expect_line("hans logged in");
    vader.expect_line("hans logged in");
    hans.send("whoelse\n");
    hans.expect_lines(&["vader", "yoda"]);
    server.assert_running();
}

#[test]
fn reset_mid_login_announces_nothing() {
    let server = TestServer::start();
    let mut yoda = server.login("yoda");

    // Before the prompt is read.
    server.connect().reset();
    // In the middle of a username, after a wrong one.
    let mut c = server.connect();
    c.expect(USERNAME);
    c.send("nobody\nha");
    c.expect_line(INVALID_USERNAME);
    c.expect(USERNAME);
    c.reset();
    // In the middle of the right password.
    let mut c = server.connect();
    c.expect(USERNAME);
    c.send("hans\nfal");
    c.expect(PASSWORD);
    c.reset();
    // The whole right password but no newline, after a wrong one.
    let mut c = server.connect();
    c.expect(USERNAME);
    c.send("hans\nwrong\nfalcon");
    c.expect(PASSWORD);
    c.expect_line(INVALID_PASSWORD);
    c.expect(PASSWORD);
    c.reset();

    yoda.barrier();
    yoda.expect_silence(100);
    yoda.send("whoelse\n");
    yoda.expect_line("No other users are online");
    server.wait_for_connections(1);
    // hans was not left half logged in.
    let mut hans = server.login("hans");
    yoda.expect_line("hans logged in");
    hans.send("whoelse\n");
    hans.expect_line("yoda");
    yoda.barrier();
}

// ------------------------------------------------------------ half-close

#[test]
fn half_close_after_pipelined_commands_gets_every_reply() {
    // About 630 KB of replies: more than the socket buffers take while
    // hans is not reading, so the server must keep flushing after it saw
    // the end of hans's input, and less than the 1 MiB backlog limit.
    const ROUNDS: usize = 5000;
    let server = TestServer::start();
    let (mut yoda, mut hans, mut vader) = three_users(server.addr);
    let mut input = "whoelse\nhelp\n".repeat(ROUNDS);
    input.push_str("broadcast bye\nmessage yoda last words\n");
    hans.send(&input);
    hans.stream()
        .shutdown(Shutdown::Write)
        .expect("shut down the write side");
    for _ in 0..ROUNDS {
        hans.expect_lines(&["vader", "yoda"]);
        hans.expect_lines(&HELP);
    }
    hans.expect_eof();

    yoda.expect_lines(&["hans: bye", "hans: last words", "hans logged out"]);
    vader.expect_lines(&["hans: bye", "hans logged out"]);
    yoda.barrier();
    vader.barrier();
    yoda.expect_silence(100);
    vader.expect_silence(0);
    server.wait_for_connections(2);
}

// ------------------------------------------------------------------ churn

#[test]
fn connect_disconnect_cycles_leak_no_descriptors() {
    // The descriptor count is of the whole process, so this runs alone in
    // a child process.
    if !common::isolated("connect_disconnect_cycles_leak_no_descriptors") {
        return;
    }
    const CYCLES: usize = 5000;
    /// Descriptors the harness itself may have opened meanwhile.
    const SLACK: usize = 3;
    const USERS: [&str; 4] = ["hans", "vader", "luke", "leia"];

    let server = TestServer::start();
    let before = open_descriptors();
    let mut observer = server.login("yoda");
    let mut logins = Vec::new();
    for i in 0..CYCLES {
        match i % 6 {
            // Connect and close at once, before the prompt arrives.
            0 | 3 => drop(server.connect()),
            // Log in and drop the connection.
            1 | 4 => {
                let user = USERS[logins.len() % USERS.len()];
                drop(server.login(user));
                logins.push(user);
            }
            // A partial username, then a reset.
            2 => {
                let mut c = server.connect();
                c.send("ha");
                c.reset();
            }
            // A partial password, then a reset.
            _ => {
                let mut c = server.connect();
                c.send("vader\nsith");
                c.expect(USERNAME);
                c.expect(PASSWORD);
                c.reset();
            }
        }
    }
    // Every login and every departure was announced once, in order.
    for user in &logins {
        observer.expect_line(&format!("{user} logged in"));
        observer.expect_line(&format!("{user} logged out"));
    }
    observer.barrier();
    drop(observer);
    server.wait_for_connections(0);
    let after = open_descriptors();
    assert!(
        after <= before + SLACK,
        "{before} descriptors open before {CYCLES} connections, {after} after"
    );
    server.assert_running();
}

#[test]
fn max_clients_reached_and_recovered_under_churn() {
    const MAX: usize = 12;
    const ROUNDS: usize = 6;
    let server = TestServer::with(Options {
        max_clients: MAX,
        ..Options::default()
    });
    let mut rng = Rng::new(0x5eed);
    let mut open: Vec<Client> = Vec::new();
    for round in 0..ROUNDS {
        // Exactly the places freed in the last round are available again.
        while open.len() < MAX {
            let mut c = server.connect();
            c.expect(USERNAME);
            open.push(c);
        }
        for _ in 0..3 {
            let mut refused = server.connect();
            refused.expect_line(SERVER_FULL);
            refused.expect_eof();
        }
        server.wait_for_connections(MAX);

        // Some leave, each in its own way.
        let leaving = 1 + rng.below(MAX);
        for k in 0..leaving {
            let mut c = open.swap_remove(rng.below(open.len()));
            match (round + k) % 5 {
                0 => drop(c),
                1 => c.reset(),
                2 => {
                    c.stream().shutdown(Shutdown::Write).expect("shutdown");
                    c.expect_eof();
                }
                3 => {
                    c.enter("luke", "lightsaber");
                    c.logout();
                }
                _ => {
                    // A different user each time in a round, so that none
                    // is still online from an earlier drop.
                    let user = ["leia", "hans", "vader"][k / 5];
                    c.enter(user, common::password(user));
                    drop(c);
                }
            }
        }
        server.wait_for_connections(MAX - leaving);
    }
    // The ones still open were served all along.
    let mut first = open.remove(0);
    first.enter("yoda", "wise");
    first.barrier();
    drop(open);
    drop(first);
    server.wait_for_connections(0);
}

// ----------------------------------------------------------------- floods

/// Writes `total` bytes of `chunk` repeated, then `tail`, counting what is
/// written in `written` and setting `done` at the end.
fn flood(
    mut writer: TcpStream,
    chunk: Vec<u8>,
    total: usize,
    tail: &'static [u8],
    written: Arc<AtomicUsize>,
    done: Arc<AtomicBool>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        // `done` is set even if writing fails, so that probing ends.
        let _done = SetOnDrop(done);
        writer
            .set_write_timeout(Some(IO_TIMEOUT))
            .expect("write timeout");
        let mut sent = 0;
        while sent < total {
            let n = chunk.len().min(total - sent);
            writer.write_all(&chunk[..n]).expect("flood");
            sent += n;
            written.store(sent, Ordering::SeqCst);
        }
        writer.write_all(tail).expect("flood tail");
    })
}

/// Sets the flag when dropped.
struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Sends `whoelse` from `probe` until `done`; returns how many replies came
/// while the flood was still being written. Each reply must be `expected`.
fn probe_until(probe: &mut Client, expected: &str, done: &AtomicBool) -> usize {
    let mut during = 0;
    while !done.load(Ordering::SeqCst) {
        probe.send("whoelse\n");
        probe.expect_line(expected);
        if !done.load(Ordering::SeqCst) {
            during += 1;
        }
    }
    during
}

#[test]
fn fifty_megabytes_without_a_newline() {
    const TOTAL: usize = 50 << 20;
    let server = TestServer::start();
    let (mut yoda, mut hans) = two_users(server.addr);

    let written = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let writer = flood(
        yoda.writer(),
        vec![b'x'; 64 * 1024],
        TOTAL,
        b"\nwhoelse\n",
        Arc::clone(&written),
        Arc::clone(&done),
    );
    // More than the socket buffers take: the server is reading the line.
    wait_until("8 MB of the line to be written", || {
        written.load(Ordering::SeqCst) >= 8 << 20
    });
    // hans is served meanwhile.
    let during = probe_until(&mut hans, "yoda", &done);
    writer.join().expect("writer thread");
    eprintln!("50 MB line: {during} commands of hans answered while it was written");
    assert!(
        during >= 3,
        "only {during} of hans's commands were answered while 50 MB were written"
    );

    // One error for the whole line; the next line is a command again.
    yoda.expect_line(LINE_TOO_LONG);
    yoda.expect_line("hans");
    yoda.barrier();
    yoda.expect_silence(100);
    server.assert_running();
}

#[test]
fn a_flooding_client_does_not_starve_the_others() {
    /// Flood bytes from one marker line to the next.
    const SPACING: usize = 4096;
    /// The flood: 480 chunks of 64 KiB, 30 MiB.
    const CHUNK: usize = 64 * 1024;
    const CHUNKS: usize = 480;
    /// Most flood bytes the server may handle between a probe's arrival and
    /// its reply. A fair server finishes the iteration in progress and
    /// answers in the next, reading at most [`READ_BUDGET`] of the flood in
    /// each: about 2 budgets; 8 leave room for scheduling delays of the
    /// probing thread.
    const MAX_DELAY: usize = 8 * READ_BUDGET;
    const MARKER: &[u8] = b"message hans +\n";

    let server = TestServer::start();
    let (mut yoda, mut hans) = two_users(server.addr);

    // Blank lines (ignored, no reply) and, every SPACING bytes, a message
    // to hans: his stream shows how far the flood had been handled when his
    // own command was.
    let mut rng = Rng::new(3);
    let mut chunk = Vec::with_capacity(CHUNK);
    while chunk.len() < CHUNK {
        let mut filler = SPACING - MARKER.len();
        while filler > 0 {
            let len = filler.min(1 + rng.below(1000));
            if len >= 2 && rng.below(4) == 0 {
                chunk.extend(std::iter::repeat_n(b' ', len - 2));
                chunk.extend_from_slice(b"\r\n");
            } else {
                chunk.extend(std::iter::repeat_n(b' ', len - 1));
                chunk.push(b'\n');
            }
            filler -= len;
        }
        chunk.extend_from_slice(MARKER);
    }
    assert_eq!(chunk.len(), CHUNK);
    let markers_total = CHUNKS * CHUNK / SPACING;

    let written = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let writer = flood(
        yoda.writer(),
        chunk,
        CHUNKS * CHUNK,
        b"",
        Arc::clone(&written),
        Arc::clone(&done),
    );
    wait_until("8 MB of the flood to be written", || {
        written.load(Ordering::SeqCst) >= 8 << 20
    });

    let mut markers = 0;
    let marker = |line: String, markers: &mut usize| {
        assert_eq!(line, "yoda: +", "unexpected line");
        *markers += 1;
        *markers
    };
    let mut during = 0;
    let mut worst = 0;
    while !done.load(Ordering::SeqCst) {
        hans.read_available();
        let mut before = markers;
        while let Some(line) = hans.poll_line(0) {
            before = marker(line, &mut markers);
        }
        hans.send("whoelse\n");
        let mut after = before;
        loop {
            let line = hans.read_line();
            if line == "yoda" {
                break;
            }
            after = marker(line, &mut markers);
        }
        worst = worst.max((after - before) * SPACING);
        if !done.load(Ordering::SeqCst) {
            during += 1;
        }
    }
    writer.join().expect("flooder thread");
    eprintln!("flood: {during} commands answered meanwhile, the slowest after {worst} bytes");
    assert!(
        during >= 5,
        "only {during} of hans's commands were answered while yoda flooded"
    );
    assert!(
        worst <= MAX_DELAY,
        "hans's command waited while the server handled {worst} bytes of yoda's flood \
         (at most {MAX_DELAY} expected with a read budget of {READ_BUDGET})"
    );
    // Nothing of the flood was lost, and both are still served.
    while markers < markers_total {
        marker(hans.read_line(), &mut markers);
    }
    hans.barrier();
    yoda.barrier();
}

// ------------------------------------------------------------ bad bytes

#[test]
fn nul_bytes_and_control_characters() {
    let server = TestServer::start();
    let mut hans = server.login("hans");
    let mut yoda = server.connect();
    yoda.expect(USERNAME);
    let names: [&[u8]; 12] = [
        b"\0",
        b"yoda\0",
        b"\0yoda",
        b"yo\0da",
        b"yoda\x07",
        b"\x1b[2Jyoda",
        b"yoda\t",
        b"\tyoda",
        b"yoda\r\r",
        b"yo\rda",
        b"\x7f",
        b"\x01\x02\x03\x04",
    ];
    for name in names {
        yoda.send_bytes(name);
        yoda.send("\n");
        yoda.expect_line(INVALID_USERNAME);
        yoda.expect(USERNAME);
    }
    yoda.send("yoda\n");
    yoda.expect(PASSWORD);
    for password in [&b"wise\0"[..], b"\x08wise"] {
        yoda.send_bytes(password);
        yoda.send("\n");
        yoda.expect_line(INVALID_PASSWORD);
        yoda.expect(PASSWORD);
    }
    yoda.send("wise\n");
    yoda.expect_line(WELCOME);
    hans.expect_line("yoda logged in");

    let commands: [(&[u8], &str); 20] = [
        (b"\0", INVALID_COMMAND),
        (b"\0\0\0\0", INVALID_COMMAND),
        (b"whoelse\0", INVALID_COMMAND),
        (b"\0whoelse", INVALID_COMMAND),
        (b"who\0else", INVALID_COMMAND),
        (b"whoelse\t", INVALID_COMMAND),
        (b"\twhoelse", INVALID_COMMAND),
        (b"whoelse\r\r", INVALID_COMMAND),
        (b"help\x1b", INVALID_COMMAND),
        (b"\x04", INVALID_COMMAND),
        (b"whoelse \0", "Error. Usage: whoelse"),
        (b"help \x07", "Error. Usage: help"),
        (b"logout \0", "Error. Usage: logout"),
        (b"whoelsesince \0", "Error. Usage: whoelsesince <seconds>"),
        (b"whoelsesince 1\0", "Error. Usage: whoelsesince <seconds>"),
        (b"block \0", INVALID_USER),
        (b"block hans\0", INVALID_USER),
        (b"unblock \x01", INVALID_USER),
        (b"message \0 hi", INVALID_USER),
        (b"message hans\0 hi", INVALID_USER),
    ];
    for (command, reply) in commands {
        yoda.send_bytes(command);
        yoda.send("\n");
        yoda.expect_line(reply);
    }
    // Message text is the rest of the line, byte for byte.
    yoda.send_bytes(b"message hans a\0b\x07c\x1b[0m\x7f\rd\n");
    hans.expect_bytes(b"yoda: a\0b\x07c\x1b[0m\x7f\rd\n");
    yoda.send_bytes(b"broadcast \0\x01\x02\n");
    hans.expect_bytes(b"yoda: \0\x01\x02\n");
    yoda.barrier();
    hans.barrier();
    yoda.send("whoelse\n");
    yoda.expect_line("hans");
    let mut other = server.connect();
    other.expect(USERNAME);
    server.assert_running();
}

// ------------------------------------------------------------ slow reader

/// The broadcasters of the slow-reader test, with their passwords.
const BROADCASTERS: [(&str, &str); 3] =
    [("yoda", "wise"), ("hans", "falcon"), ("vader", "sithlord")];
/// Broadcasts each of them sends: 3 × 7000 lines of about 1000 bytes, a
/// little over 20 MB received by the server.
const PER_SENDER: usize = 7000;
/// Padding of each broadcast, so that the line stays under the default
/// 1024-byte limit.
const PAD: usize = 990;
/// Most broadcasts of one sender not yet read by one of the other two: the
/// server does not slow a sender down for its recipients, so the test
/// paces them to keep every active reader far below the 1 MiB backlog
/// limit (at most 2 × 64 × 1 KB pending for each).
const WINDOW: usize = 64;

/// Shared counters of the slow-reader test.
#[derive(Default)]
struct Flow {
    /// `received[r][s]`: broadcasts of sender `s` read by reader `r`.
    received: [[AtomicUsize; 3]; 3],
    /// Something failed: everyone stops.
    failed: AtomicBool,
}

fn pad() -> String {
    "p".repeat(PAD)
}

fn broadcaster(mut writer: TcpStream, me: usize, flow: &Flow) {
    let (name, _) = BROADCASTERS[me];
    let pad = pad();
    for k in 0..PER_SENDER {
        let deadline = Instant::now() + IO_TIMEOUT;
        while (0..3)
            .filter(|&r| r != me)
            .any(|r| k >= flow.received[r][me].load(Ordering::SeqCst) + WINDOW)
        {
            if flow.failed.load(Ordering::SeqCst) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{name}'s broadcast {k} is not read"
            );
            thread::sleep(Duration::from_micros(50));
        }
        writer
            .write_all(format!("broadcast {name}-{k} {pad}\n").as_bytes())
            .expect("broadcast");
    }
    writer
        .write_all(format!("broadcast {name}-end\n").as_bytes())
        .expect("end marker");
}

/// Reads the other two's broadcasts in order up to both end markers;
/// returns the client and how many `luke logged out` lines came.
fn reader(mut client: Client, me: usize, flow: &Flow) -> (Client, usize) {
    let pad = pad();
    let mut announced = 0;
    let mut ended = 0;
    while ended < 2 {
        let line = client.read_line();
        if line == "luke logged out" {
            announced += 1;
            continue;
        }
        let (sender, rest) = line
            .split_once(": ")
            .unwrap_or_else(|| panic!("unexpected line {}", common::show(line.as_bytes())));
        let s = BROADCASTERS
            .iter()
            .position(|&(name, _)| name == sender)
            .filter(|&s| s != me)
            .unwrap_or_else(|| panic!("unexpected line {}", common::show(line.as_bytes())));
        let count = &flow.received[me][s];
        let k = count.load(Ordering::SeqCst);
        if rest == format!("{sender}-end") {
            assert_eq!(k, PER_SENDER, "{sender} ended early");
            ended += 1;
        } else if rest.strip_prefix(&format!("{sender}-{k} ")) == Some(pad.as_str()) {
            count.store(k + 1, Ordering::SeqCst);
        } else {
            panic!(
                "expected broadcast {k} of {sender}, got {}",
                common::show(line.as_bytes())
            );
        }
    }
    (client, announced)
}

#[test]
fn reader_that_never_reads_is_cut_off_and_memory_stays_bounded() {
    // Bound on the server's peak resident memory. What it should hold: a
    // baseline of about 5 MiB (the debug binary's code and data, the
    // allocator, the 64 KiB read buffer); luke's backlog, at most 1 MiB
    // (`--max-pending`) in a vector whose capacity may double to 2 MiB; for
    // each active reader at most 2 × WINDOW lines of ~1 KB; and the line
    // being handled. About 8 MiB at most, so 16 MiB leaves room for
    // allocator slack, while a server that kept buffering for luke (20 MB
    // came for him) or kept what it sent would go past it.
    const MAX_HWM_KIB: u64 = 16 * 1024;

    let server = ServerProcess::start(ProcessOptions::default());
    let mut clients: Vec<Client> = Vec::new();
    for (i, &(name, password)) in BROADCASTERS.iter().enumerate() {
        let client = server.login(name, password);
        for earlier in clients.iter_mut().take(i) {
            earlier.expect_line(&format!("{name} logged in"));
        }
        clients.push(client);
    }
    let luke = server.login("luke", "lightsaber");
    for client in &mut clients {
        client.expect_line("luke logged in");
    }
    // From now on luke reads nothing until the end.
    let baseline_kib = server.status_kib("VmRSS");

    let flow = Arc::new(Flow::default());
    let mut threads = Vec::new();
    for (me, client) in clients.into_iter().enumerate() {
        let writer = client.writer();
        let f = Arc::clone(&flow);
        let sending = thread::spawn(move || {
            let _guard = FailOnPanic(&f.failed);
            broadcaster(writer, me, &f);
        });
        let f = Arc::clone(&flow);
        let reading = thread::spawn(move || {
            let _guard = FailOnPanic(&f.failed);
            reader(client, me, &f)
        });
        threads.push((sending, reading));
    }
    let mut results = Vec::new();
    for (sending, reading) in threads {
        let sent = sending.join();
        let read = reading.join();
        sent.expect("broadcaster");
        results.push(read.expect("reader"));
    }

    let hwm_kib = server.status_kib("VmHWM");
    let rss_kib = server.status_kib("VmRSS");
    eprintln!(
        "slow reader: server VmRSS {baseline_kib} KiB before, \
         VmHWM {hwm_kib} KiB, VmRSS {rss_kib} KiB after"
    );
    for (me, (client, announced)) in results.iter_mut().enumerate() {
        let (name, _) = BROADCASTERS[me];
        for s in (0..3).filter(|&s| s != me) {
            assert_eq!(
                flow.received[me][s].load(Ordering::SeqCst),
                PER_SENDER,
                "{name} missed broadcasts of {}",
                BROADCASTERS[s].0
            );
        }
        assert_eq!(
            *announced, 1,
            "{name} was told `luke logged out` {announced} times"
        );
        client.barrier();
    }
    let (yoda, _) = &mut results[0];
    yoda.send("whoelse\n");
    yoda.expect_lines(&["hans", "vader"]);
    // luke was cut off: what reached his socket, then the end.
    let mut luke = luke;
    luke.drain_to_close();
    assert!(
        hwm_kib < MAX_HWM_KIB,
        "the server's peak resident memory was {hwm_kib} KiB (bound {MAX_HWM_KIB} KiB)"
    );
}

#[test]
fn lagging_reader_does_not_grow_server_memory() {
    // hans reads everything, at 32 MB/s, while yoda keeps up to WINDOW bytes
    // of messages to him unread. The kernel holds at most about 4.2 MB of
    // them on the way to hans (the server's send buffer, at most 4 MiB by
    // tcp_wmem, and hans's receive buffer, fixed at 64 KiB), and the server
    // reads yoda's lines faster than hans reads, so the server always has
    // several MB pending for hans, yet never more than WINDOW, under its
    // limit (`--max-pending` 16 MiB): hans is never cut off. The server
    // should hold only what is pending: a baseline of about 5 MiB plus at
    // most twice WINDOW (a buffer that compacts lazily and doubles as it
    // grows), about 21 MiB, so the bound is 32 MiB. One that keeps written
    // bytes until its buffer empties completely grows by all that flows
    // through while something is pending, here 64 MB.
    const WINDOW: usize = 8 << 20;
    const TOTAL: usize = 64 << 20;
    const RATE: f64 = 32e6;
    const MAX_HWM_KIB: u64 = 32 * 1024;

    let server = ServerProcess::start(ProcessOptions {
        args: ["--max-pending", "16777216", "--max-line", "32768"]
            .map(String::from)
            .to_vec(),
        ..ProcessOptions::default()
    });
    let (mut yoda, mut hans) = two_users(server.addr);
    hans.set_receive_buffer(64 * 1024);
    // Long lines, so that the server's work per byte is small and hans's
    // reading, not the server, sets the pace.
    let text = "m".repeat(16_000);
    let line = format!("message hans {text}\n");
    let delivered = format!("yoda: {text}\n");
    let count = TOTAL / delivered.len();

    let received = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicBool::new(false));
    let reading = {
        let received = Arc::clone(&received);
        let failed = Arc::clone(&failed);
        let delivered = delivered.clone();
        let mut stream = hans.writer();
        thread::spawn(move || {
            use std::io::Read;
            let _guard = FailOnPanic(&failed);
            stream
                .set_read_timeout(Some(IO_TIMEOUT))
                .expect("read timeout");
            let mut buf = vec![0u8; 64 * 1024];
            let mut total = 0;
            let start = Instant::now();
            while total < count * delivered.len() {
                let due = Duration::from_secs_f64(total as f64 / RATE);
                if let Some(wait) = due.checked_sub(start.elapsed()) {
                    thread::sleep(wait);
                }
                let n = stream.read(&mut buf).expect("hans reads");
                assert!(n > 0, "hans was cut off after {total} bytes");
                for piece in buf[..n].split_inclusive(|&b| b == b'\n') {
                    let offset = total % delivered.len();
                    assert_eq!(
                        piece,
                        &delivered.as_bytes()[offset..offset + piece.len()],
                        "hans's stream at byte {total}"
                    );
                    total += piece.len();
                }
                received.store(total, Ordering::SeqCst);
            }
        })
    };
    let mut writer = yoda.writer();
    for k in 0..count {
        let deadline = Instant::now() + IO_TIMEOUT;
        while k * delivered.len() > received.load(Ordering::SeqCst) + WINDOW {
            assert!(!failed.load(Ordering::SeqCst), "hans's reader failed");
            assert!(Instant::now() < deadline, "hans stopped reading");
            thread::sleep(Duration::from_micros(100));
        }
        writer.write_all(line.as_bytes()).expect("message");
    }
    reading.join().expect("hans's reader");
    let hwm_kib = server.status_kib("VmHWM");
    eprintln!(
        "lagging reader: server VmHWM {hwm_kib} KiB after {} MB",
        (count * delivered.len()) >> 20
    );
    hans.barrier();
    yoda.barrier();
    assert!(
        hwm_kib < MAX_HWM_KIB,
        "the server's peak resident memory was {hwm_kib} KiB (bound {MAX_HWM_KIB} KiB) \
         though never more than {WINDOW} bytes were pending"
    );
}

// -------------------------------------------------- running out of files

#[test]
fn running_out_of_descriptors_backs_off_and_recovers() {
    /// Soft and hard `RLIMIT_NOFILE` of the server.
    const LIMIT: usize = 64;
    /// Connections opened beyond the two logged-in users.
    const EXTRA: usize = 100;
    /// Most CPU time the server may use in a second of waiting: far more
    /// than a 100 ms back-off needs, far less than a loop retrying accept.
    const MAX_CPU: Duration = Duration::from_millis(300);

    let mut server = ServerProcess::start(ProcessOptions {
        max_open_files: Some(LIMIT as u64),
        ..ProcessOptions::default()
    });
    let (mut yoda, mut hans) = two_users(server.addr);

    let mut extra: Vec<Client> = (0..EXTRA).map(|_| server.connect()).collect();
    // The server takes what fits at once; the rest wait in the backlog.
    thread::sleep(Duration::from_millis(300));
    let mut admitted = Vec::new();
    let mut waiting = Vec::new();
    for mut c in extra.drain(..) {
        if c.arrives_within(USERNAME, 1) {
            admitted.push(c);
        } else {
            waiting.push(c);
        }
    }
    assert!(
        !admitted.is_empty() && !waiting.is_empty(),
        "{} admitted, {} waiting: the limit of {LIMIT} was not reached",
        admitted.len(),
        waiting.len()
    );
    let descriptors = server.descriptors();
    assert_eq!(
        descriptors
            .iter()
            .filter(|(fd, _)| *fd < LIMIT as u32)
            .count(),
        LIMIT,
        "the server should be using every descriptor it may: {descriptors:?}"
    );

    // It keeps serving the logged-in users without spinning.
    let cpu_before = server.cpu_time();
    let start = Instant::now();
    let mut messages = 0;
    while start.elapsed() < Duration::from_secs(1) {
        yoda.send(&format!("message hans ping {messages}\n"));
        hans.expect_line(&format!("yoda: ping {messages}"));
        messages += 1;
        thread::sleep(Duration::from_millis(50));
    }
    let cpu = server.cpu_time() - cpu_before;
    let elapsed = start.elapsed();
    assert!(
        cpu < MAX_CPU,
        "the server used {cpu:?} of CPU in {elapsed:?} while out of descriptors"
    );
    assert!(
        !waiting[0].arrives_within(USERNAME, 1),
        "a connection got in while the server was out of descriptors"
    );
    server.assert_running();

    // Closing connections lets the waiting ones in.
    let freed = waiting.len() + 2;
    assert!(
        admitted.len() >= freed,
        "not enough admitted connections to close"
    );
    admitted.drain(..freed);
    for c in &mut waiting {
        c.expect(USERNAME);
    }
    let mut vader = waiting.pop().expect("a waiting connection");
    vader.enter("vader", "sithlord");
    yoda.expect_line("vader logged in");
    hans.expect_line("vader logged in");
    vader.send("whoelse\n");
    vader.expect_lines(&["hans", "yoda"]);
    server.assert_running();
}

// ---------------------------------------------------------------- SIGTERM

#[test]
fn sigterm_with_a_hundred_clients() {
    const LOGGED_IN: usize = 50;
    const AT_PROMPT: usize = 50;
    let accounts: Vec<(String, String)> = (0..LOGGED_IN)
        .map(|i| (format!("user{i:02}"), format!("pass{i:02}")))
        .collect();
    let mut server = ServerProcess::start(ProcessOptions {
        accounts: accounts.clone(),
        ..ProcessOptions::default()
    });
    let mut clients: Vec<Client> = accounts
        .iter()
        .map(|(user, pass)| server.login(user, pass))
        .collect();
    // Each was told of every later login; read those, so that the shutdown
    // line is next.
    for (i, client) in clients.iter_mut().enumerate() {
        for (user, _) in &accounts[i + 1..] {
            client.expect_line(&format!("{user} logged in"));
        }
    }
    for _ in 0..AT_PROMPT {
        let mut client = server.connect();
        client.expect(USERNAME);
        clients.push(client);
    }

    server.signal(libc::SIGTERM);
    for client in &mut clients {
        client.expect_line(SHUTTING_DOWN);
        client.expect_eof();
    }
    let status = server.wait(IO_TIMEOUT);
    assert_eq!(
        status.code(),
        Some(0),
        "expected exit status 0, got {status}; stderr: {:?}",
        server.stderr_lines()
    );
}

//! Smoke tests of the comparison driver (`confab_load::peers`): every
//! workload at a tiny scale against a minimal NATS broker in this file (no
//! nats-server needed), checking behaviour — everything published arrives,
//! nothing unexpected is said — never speed. The Redis side shares the
//! driver; its parser has unit tests of its own.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use confab_load::peers::{self, Peer, PeerConfig, PeerReport, PeerWorkload};

/// One connection's writing half, shared by every thread that delivers to
/// it.
type Writer = Arc<Mutex<TcpStream>>;

/// A NATS broker just big enough for the driver: `INFO` on connect,
/// `CONNECT` ignored, `SUB`, `PUB` relayed as `MSG` to every subscriber of
/// the subject, `PING` answered; a thread per connection, stopped with the
/// broker.
struct Broker {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    acceptor: Option<thread::JoinHandle<()>>,
}

/// Every subscription: subject, subscription id, the subscriber.
type Subscriptions = Arc<Mutex<Vec<(String, String, Writer)>>>;

impl Broker {
    fn start() -> Broker {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("address");
        let stop = Arc::new(AtomicBool::new(false));
        let subscriptions: Subscriptions = Arc::default();
        let stopping = Arc::clone(&stop);
        let acceptor = thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let subscriptions = Arc::clone(&subscriptions);
                        thread::spawn(move || {
                            // A connection ends when the driver closes it.
                            let _ = serve(stream, &subscriptions);
                        });
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        thread::sleep(Duration::from_millis(1));
                    }
                    Err(e) => panic!("accept: {e}"),
                }
            }
        });
        Broker {
            addr,
            stop,
            acceptor: Some(acceptor),
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// Serves one connection until it closes.
fn serve(stream: TcpStream, subscriptions: &Subscriptions) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let writer: Writer = Arc::new(Mutex::new(stream.try_clone()?));
    let send = |w: &Writer, bytes: &[u8]| -> io::Result<()> {
        w.lock().expect("writer lock").write_all(bytes)
    };
    send(
        &writer,
        b"INFO {\"server_id\":\"test\",\"max_payload\":1048576}\r\n",
    )?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let words: Vec<&str> = line.trim_end().split(' ').collect();
        match words.as_slice() {
            ["CONNECT", ..] => {}
            ["PING"] => send(&writer, b"PONG\r\n")?,
            ["SUB", subject, sid] => {
                let entry = (subject.to_string(), sid.to_string(), Arc::clone(&writer));
                subscriptions
                    .lock()
                    .expect("subscriptions lock")
                    .push(entry);
            }
            ["PUB", subject, size] => {
                let size: usize = size.parse().expect("a PUB size");
                let mut payload = vec![0; size + 2];
                reader.read_exact(&mut payload)?;
                payload.truncate(size);
                let subscriptions = subscriptions.lock().expect("subscriptions lock");
                for (_, sid, to) in subscriptions.iter().filter(|(s, ..)| s == subject) {
                    let mut frame = format!("MSG {subject} {sid} {size}\r\n").into_bytes();
                    frame.extend_from_slice(&payload);
                    frame.extend_from_slice(b"\r\n");
                    send(to, &frame)?;
                }
            }
            other => panic!("the broker got {other:?}"),
        }
    }
}

/// Runs `workload` briefly with `clients` clients against a fresh broker.
fn run_small(workload: PeerWorkload, clients: usize) -> PeerReport {
    let broker = Broker::start();
    let mut config = PeerConfig::new(Peer::Nats, workload, broker.addr);
    config.clients = clients;
    config.in_flight = 4;
    config.duration = Duration::from_millis(300);
    config.drain = Duration::from_secs(5);
    config.setup_timeout = Duration::from_secs(20);
    peers::run(&config).expect("comparison run")
}

/// Everything published arrived and nothing unexpected happened.
fn assert_clean(report: &PeerReport) {
    assert_eq!(report.lost, 0, "{report}");
    assert_eq!(report.delivered, report.expected, "{report}");
    assert_eq!(report.disconnects, 0, "{report}");
    assert_eq!(report.notice_count, 0, "{report}");
}

#[test]
fn fanout_reaches_every_subscriber() {
    let report = run_small(PeerWorkload::Fanout, 4);
    assert_clean(&report);
    assert!(report.sent > 0, "{report}");
    assert_eq!(report.expected, report.sent * 4, "{report}");
    assert!(report.latency.is_some(), "{report}");
}

#[test]
fn direct_delivers_every_message() {
    let report = run_small(PeerWorkload::Direct, 3);
    assert_clean(&report);
    assert!(report.delivered > 0, "{report}");
    assert_eq!(report.clients, 6);
}

#[test]
fn pingpong_keeps_one_message_per_client_in_flight() {
    let report = run_small(PeerWorkload::Pingpong, 4);
    assert_clean(&report);
    assert!(report.delivered > 4, "{report}");
}

#[test]
fn a_storm_hears_every_later_presence() {
    let report = run_small(PeerWorkload::Storm, 12);
    assert_clean(&report);
    assert_eq!(report.sent, 12, "{report}");
    // Each client hears at least its own presence and every later one.
    assert!(report.expected >= 12, "{report}");
    assert!(report.expected + report.extra <= 12 * 12, "{report}");
}

#[test]
fn idle_connections_are_held_without_a_figure_unless_the_pid_is_given() {
    let report = run_small(PeerWorkload::Idle, 10);
    assert_clean(&report);
    assert_eq!(report.clients, 10);
    assert_eq!(report.figure(), None, "{report}");
}

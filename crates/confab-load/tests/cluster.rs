//! The direct workload against cluster mode at a tiny scale: a
//! nats-server with JetStream (`confab_testkit::NatsServer`) and two
//! in-process nodes, each pair's sender on one node and its receiver on
//! the other (`LoadConfig::peer_target`), and one node alone. They check
//! behaviour — every message sent arrives, nothing unexpected is said —
//! never speed.

use std::time::Duration;

use confab::cluster::ClusterConfig;
use confab_load::{self as load, LoadConfig, Report, Workload};
use confab_testkit::{NatsServer, Options, TestServer};

/// Pairs of the runs.
const PAIRS: usize = 3;

/// A node named `name` of the cluster at `nats`, knowing the accounts of
/// the runs.
fn node(nats: &NatsServer, name: &str, config: &LoadConfig) -> TestServer {
    let mut cluster = ClusterConfig::new(&nats.url());
    cluster.node = Some(name.to_owned());
    TestServer::try_with(Options {
        cluster: Some(cluster),
        ..Options::for_accounts(load::accounts(config.users_needed()))
    })
    .expect("the node joins")
}

/// A brief direct run's configuration (its targets set by the caller).
fn small_direct() -> LoadConfig {
    let mut config = LoadConfig::new(Workload::Direct, "127.0.0.1:9".parse().expect("address"));
    config.clients = PAIRS;
    config.duration = Duration::from_millis(300);
    config.drain = Duration::from_secs(10);
    config.setup_timeout = Duration::from_secs(30);
    config
}

/// Everything sent arrived and nothing unexpected happened.
fn assert_clean(report: &Report) {
    assert!(report.delivered > 0, "{report}");
    assert_eq!(report.lost, 0, "{report}");
    assert_eq!(report.delivered, report.expected, "{report}");
    assert_eq!(report.delivered, report.sent, "{report}");
    assert_eq!(report.disconnects, 0, "{report}");
    assert_eq!(report.notice_count, 0, "{report}");
    assert!(report.latency.is_some(), "{report}");
}

#[test]
fn direct_messages_across_two_nodes_all_arrive() {
    let nats = NatsServer::start();
    let mut config = small_direct();
    let a = node(&nats, "a", &config);
    let b = node(&nats, "b", &config);
    config.target = a.addr;
    config.peer_target = Some(b.addr);
    let report = load::run(&config).expect("load run");
    b.stop().expect("node b stops cleanly");
    a.stop().expect("node a stops cleanly");
    assert_clean(&report);
    assert_eq!(report.clients, 2 * PAIRS);
}

#[test]
fn direct_messages_through_one_node_all_arrive() {
    let nats = NatsServer::start();
    let mut config = small_direct();
    let a = node(&nats, "a", &config);
    config.target = a.addr;
    let report = load::run(&config).expect("load run");
    a.stop().expect("the node stops cleanly");
    assert_clean(&report);
}

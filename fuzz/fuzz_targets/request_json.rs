//! Request bodies: the gateway's JSON parsing and validation never panic, whatever the bytes
//! (errors name a field or report malformed JSON), and payment events validate or name the
//! bad field.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgfleet_gateway::jobs::CreateJobs;
use pgfleet_gateway::problem::{parse_json, ApiError};
use pgfleet_gateway::push::NotifyRequest;

fuzz_target!(|data: &[u8]| {
    for result in [
        parse_json::<CreateJobs>(data).map(|_| ()),
        parse_json::<NotifyRequest>(data).map(|_| ()),
        parse_json::<pgfleet_gateway::messages::MessageRequest>(data).map(|_| ()),
    ] {
        match result {
            Ok(()) | Err(ApiError::MalformedJson(_)) => {}
            Err(ApiError::Invalid { field, .. }) => assert!(!field.is_empty()),
            Err(other) => panic!("unexpected error kind: {other:?}"),
        }
    }
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        if let Err(e) = pgfleet_payments::validate(&v) {
            assert!(!e.field.is_empty());
        }
    }
});

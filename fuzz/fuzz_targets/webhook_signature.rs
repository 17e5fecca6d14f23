//! The Standard Webhooks verifier and the request-HMAC verifier never panic, and accept
//! nothing that was not signed with the secret.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use pgfleet_messages::signature::{sign_request, verify_request, verify_webhook, SignedParts, WebhookSecret};

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    id: Option<&'a str>,
    timestamp: Option<&'a str>,
    signature: Option<&'a str>,
    body: &'a [u8],
    now: i64,
    secret: &'a str,
    sign_it: bool,
}

fuzz_target!(|i: Input<'_>| {
    let key = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
    let _ = WebhookSecret::parse(i.secret);
    let result = verify_webhook(
        std::slice::from_ref(&key),
        i.id,
        i.timestamp,
        i.signature,
        i.body,
        i.now,
        300,
    );
    if result.is_ok() {
        // Only a signature made with the key can pass.
        let (id, ts) = (i.id.unwrap(), i.timestamp.unwrap().trim().parse::<i64>().unwrap());
        let expected = key.sign(id, ts, i.body);
        assert!(i.signature.unwrap().split_whitespace().any(|s| s == expected));
    }
    if i.sign_it {
        if let (Some(id), Ok(ts)) = (i.id, i.timestamp.unwrap_or("0").parse::<i64>()) {
            let sig = key.sign(id, ts, i.body);
            assert!(verify_webhook(&[key.clone()], Some(id), Some(&ts.to_string()), Some(&sig), i.body, ts, 300).is_ok());
        }
    }
    let parts = SignedParts { method: "POST", path: i.id.unwrap_or("/"), body: i.body };
    let _ = verify_request(i.secret.as_bytes(), i.timestamp, i.signature, parts, i.now, 300);
    let sig = sign_request(i.secret.as_bytes(), i.now, "POST", parts.path, i.body);
    assert!(verify_request(i.secret.as_bytes(), Some(&i.now.to_string()), Some(&sig), parts, i.now, 300).is_ok());
});

// Fuzzes the KG1 canonical query: never panics, output is canonical and idempotent.
// Must not assert anything the spec does not promise.
#![no_main]

use keygate_sign::query::canonical_query;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else { return };
    if let Ok(c) = canonical_query(raw) {
        assert!(c.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~%=&".contains(&b)));
        assert_eq!(canonical_query(&c).as_deref(), Ok(c.as_str()));
    }
});

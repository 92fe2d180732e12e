// Fuzzes the raw path rule: never panics; an accepted path is ASCII, rooted, without `\`.
// Must not assert anything the spec does not promise.
#![no_main]

use keygate_sign::path::check_raw_path;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else { return };
    if check_raw_path(raw).is_ok() {
        assert!(raw.starts_with('/') && raw.is_ascii() && !raw.contains('\\'));
        for seg in raw.split('/') {
            let seg = seg.split(';').next().unwrap_or(seg);
            assert!(seg != "." && seg != "..");
        }
    }
});

// Canonical query rules of docs/signing.md 1.4, one row per edge case.
// Must not compare against this crate's own output: every expected string is written by hand.

use keygate_sign::query::canonical_query;
use keygate_sign::SignError;

#[test]
fn canonical_query_table() {
    let cases: &[(&str, &str, &str)] = &[
        ("empty", "", ""),
        ("only separators", "&&&", ""),
        ("already sorted", "a=1&b=2", "a=1&b=2"),
        ("unsorted names", "b=2&a=1", "a=1&b=2"),
        ("repeated names sort by value", "a=2&a=1", "a=1&a=2"),
        ("repeated names, three", "a=b&a=B&a=_", "a=B&a=_&a=b"),
        ("identical pairs kept", "a=1&a=1", "a=1&a=1"),
        ("empty value", "a=&b=1", "a=&b=1"),
        ("no equals", "flag", "flag="),
        ("no equals among others", "z=1&flag", "flag=&z=1"),
        ("empty name", "=v", "=v"),
        ("lone equals", "=", "="),
        ("equals in value", "x=a=b=c", "x=a%3Db%3Dc"),
        ("value is equals", "eq==", "eq=%3D"),
        ("empty pieces", "&&a=1&", "a=1"),
        ("plus is literal", "p=a+b", "p=a%2Bb"),
        ("encoded plus", "p=%2B", "p=%2B"),
        ("lowercase hex", "p=%2b", "p=%2B"),
        ("encoded space", "p=%20", "p=%20"),
        ("raw space", "p=a b", "p=a%20b"),
        ("tilde raw", "p=~", "p=~"),
        ("tilde encoded upper", "p=%7E", "p=~"),
        ("tilde encoded lower", "p=%7e", "p=~"),
        ("unreserved decoded", "%41%2d%2E%5f=%61%30", "A-._=a0"),
        ("utf-8 encoded", "p=%E4%BD%A0", "p=%E4%BD%A0"),
        ("utf-8 lowercase", "p=%e4%bd%a0", "p=%E4%BD%A0"),
        ("utf-8 raw", "p=你", "p=%E4%BD%A0"),
        ("utf-8 in name", "名=1", "%E5%90%8D=1"),
        ("reserved raw", "p=!*'();:@$,/?[]", "p=%21%2A%27%28%29%3B%3A%40%24%2C%2F%3F%5B%5D"),
        (
            "reserved encoded",
            "p=%21%2A%27%28%29%3B%3A%40%26%3D%2B%24%2C%2F%3F%23%5B%5D",
            "p=%21%2A%27%28%29%3B%3A%40%26%3D%2B%24%2C%2F%3F%23%5B%5D",
        ),
        ("encoded ampersand is data", "a=x%26b%3Dy", "a=x%26b%3Dy"),
        ("NUL byte", "p=%00", "p=%00"),
        ("high byte not utf-8", "p=%FF", "p=%FF"),
        ("name before value", "a-b=1&a=2", "a=2&a-b=1"),
        ("encoded sort order", "b=1&%7F=1&B=1&_=1&~=1&%20=1", "%20=1&%7F=1&B=1&_=1&b=1&~=1"),
        ("prefix names", "ab=1&a=2", "a=2&ab=1"),
        ("prefix values", "a=12&a=1", "a=1&a=12"),
        ("five params tricky", "z=%7e&y=a+b&x=&w&v=%E4%BD%A0", "v=%E4%BD%A0&w=&x=&y=a%2Bb&z=~"),
    ];
    for (name, raw, want) in cases {
        assert_eq!(canonical_query(raw).as_deref(), Ok(*want), "{name}: {raw:?}");
        // Canonicalization is idempotent: a canonical query is its own canonical form.
        assert_eq!(canonical_query(want).as_deref(), Ok(*want), "{name} (idempotent)");
    }
}

#[test]
fn invalid_percent_encoding() {
    for raw in ["p=%zz", "p=%4", "p=%", "%=1", "p=%%41", "p=%g0", "p=%0g", "a=1&b=%", "%E4%BD%A=1"] {
        let err = canonical_query(raw).expect_err(raw);
        assert_eq!(err, SignError::InvalidPercentEncoding, "{raw:?}");
        assert_eq!(err.code(), "malformed_auth");
    }
}

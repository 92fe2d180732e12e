// Redis key layout: prefix, kind, hash-tagged scope, escaped components.
// It must never let caller text forge a separator, a hash tag or another kind's key.

use aws_lc_rs::digest;

/// Longest escaped component kept verbatim; longer ones are replaced by their SHA-256 so one
/// oversized scope or nonce cannot make keys (and Redis memory) grow without bound.
const MAX_COMPONENT: usize = 128;

/// Builds every key this crate writes. All keys start with the configured prefix so one Redis
/// can be shared with other applications and a test can delete exactly its own keys.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    pub(crate) fn new(prefix: String) -> Self {
        Self { prefix }
    }

    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `<prefix>nonce:{<scope>}:<nonce>`
    pub(crate) fn nonce(&self, scope: &str, nonce: &str) -> String {
        self.scoped("nonce:", scope, nonce)
    }

    /// `<prefix>idem:{<scope>}:<key>`
    pub(crate) fn idempotency(&self, scope: &str, key: &str) -> String {
        self.scoped("idem:", scope, key)
    }

    /// `<prefix>rl:{<bucket>}`
    pub(crate) fn bucket(&self, name: &str) -> String {
        let mut k = String::with_capacity(self.prefix.len() + 5 + name.len());
        k.push_str(&self.prefix);
        k.push_str("rl:{");
        push_component(&mut k, name);
        k.push('}');
        k
    }

    fn scoped(&self, kind: &str, scope: &str, item: &str) -> String {
        let mut k = String::with_capacity(self.prefix.len() + kind.len() + scope.len() + item.len() + 4);
        k.push_str(&self.prefix);
        k.push_str(kind);
        k.push('{');
        push_component(&mut k, scope);
        k.push_str("}:");
        push_component(&mut k, item);
        k
    }
}

/// Appends `raw` with every byte outside `[A-Za-z0-9._~-]` written as `%XX`, so `{`, `}` and `:`
/// in caller text can never end a hash tag or a field. Components whose escaped form exceeds
/// [`MAX_COMPONENT`] become `#` + hex SHA-256 of the raw bytes; `#` never appears in an escaped
/// component, so a hashed name cannot collide with a verbatim one.
fn push_component(out: &mut String, raw: &str) {
    let escaped_len: usize = raw.bytes().map(|b| if is_plain(b) { 1 } else { 3 }).sum();
    if escaped_len > MAX_COMPONENT {
        let d = digest::digest(&digest::SHA256, raw.as_bytes());
        out.push('#');
        for b in d.as_ref() {
            push_hex(out, *b);
        }
        return;
    }
    for b in raw.bytes() {
        if is_plain(b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            push_hex(out, b);
        }
    }
}

fn is_plain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-')
}

fn push_hex(out: &mut String, b: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(char::from(HEX[usize::from(b >> 4)]));
    out.push(char::from(HEX[usize::from(b & 0x0f)]));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_prefix_kind_tag_item() {
        let k = Keys::new("kg:".into());
        assert_eq!(k.nonce("AK1", "abc_DEF-12"), "kg:nonce:{AK1}:abc_DEF-12");
        assert_eq!(k.idempotency("app-1", "order 7"), "kg:idem:{app-1}:order%207");
        assert_eq!(k.bucket("key:AK1"), "kg:rl:{key%3aAK1}");
    }

    #[test]
    fn caller_text_cannot_forge_tags_or_separators() {
        let k = Keys::new("p:".into());
        let hostile = k.nonce("a}:{b", "c:d{e}");
        assert_eq!(hostile, "p:nonce:{a%7d%3a%7bb}:c%3ad%7be%7d");
        // Exactly one `{` and one `}`: the hash tag is always the scope.
        assert_eq!(hostile.matches('{').count(), 1);
        assert_eq!(hostile.matches('}').count(), 1);
        // Concatenation ambiguity: ("a:b","c") vs ("a","b:c").
        assert_ne!(k.nonce("a:b", "c"), k.nonce("a", "b:c"));
    }

    #[test]
    fn long_components_are_hashed_and_bounded() {
        let k = Keys::new("p:".into());
        let long = "x".repeat(10_000);
        let key = k.nonce("AK", &long);
        assert!(key.len() < 100, "{key}");
        assert!(key.starts_with("p:nonce:{AK}:#"));
        assert_ne!(k.nonce("AK", &long), k.nonce("AK", &"x".repeat(10_001)));
        // Non-ASCII is escaped byte by byte, then hashed if it grows past the limit.
        assert_eq!(k.bucket("é"), "p:rl:{%c3%a9}");
        assert!(k.bucket(&"é".repeat(30)).contains('#'));
        assert!(!k.bucket(&"é".repeat(21)).contains('#'));
    }
}

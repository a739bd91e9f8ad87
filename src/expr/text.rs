//! Text values: short strings kept inline, longer ones shared.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::sync::Arc;

use smol_str::SmolStr;

/// The text of a string value. Up to [`Text::INLINE`] bytes are stored in
/// the value itself: most fields of a record (ids, codes, statuses) then
/// cost no allocation and no reference counting, which matters when
/// records are decoded on one thread and matched on another. Longer text
/// is shared, and cheap to clone. Reading it is free: inline text is not
/// checked as UTF-8 again ([`SmolStr`] keeps it as a `str`).
#[derive(Clone)]
pub struct Text(SmolStr);

impl Text {
    /// The most bytes stored inline.
    pub const INLINE: usize = 23;

    /// The text as a string slice.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The text's bytes.
    fn bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl Deref for Text {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Text {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl From<&str> for Text {
    fn from(text: &str) -> Self {
        Self(SmolStr::new(text))
    }
}

impl From<String> for Text {
    fn from(text: String) -> Self {
        Self(SmolStr::from(text))
    }
}

impl From<Arc<str>> for Text {
    fn from(text: Arc<str>) -> Self {
        Self(SmolStr::from(text))
    }
}

// Compared and hashed as bytes, as `str` is, without turning them into a
// `str` first.
impl PartialEq for Text {
    fn eq(&self, other: &Self) -> bool {
        self.bytes() == other.bytes()
    }
}

impl Eq for Text {}

impl PartialOrd for Text {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Text {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.bytes().cmp(other.bytes())
    }
}

impl Hash for Text {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // As `str` hashes itself.
        state.write(self.bytes());
        state.write_u8(0xff);
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_inline_and_long_text_shared_and_both_read_the_same() {
        for text in [
            "",
            "EUR",
            "A-000001",
            "exactly twenty-three b.",
            "é对账",
            "a little longer than twenty-two bytes",
        ] {
            let value = Text::from(text);
            assert_eq!(value.as_str(), text);
            assert_eq!(Text::from(text.to_string()), value);
            assert_eq!(Text::from(Arc::<str>::from(text)), value);
            assert_eq!(
                !value.0.is_heap_allocated(),
                text.len() <= Text::INLINE,
                "{text}"
            );
        }
        assert!(Text::from("a") < Text::from("b"));
        assert_eq!(std::mem::size_of::<crate::expr::Value>(), 24);
    }
}

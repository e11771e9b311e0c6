//! Durations as Synapse writes them: a number of milliseconds, or a string
//! of a number and a unit (`500ms`, `30s`, `5m`, `1h`, `2d`, `1w`, `1y`).

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer, de::Error};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SynapseDuration(pub Duration);

impl SynapseDuration {
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let number: u64 = number.parse().ok()?;
        let unit_ms: u64 = match unit {
            "" | "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 7 * 86_400_000,
            "y" => 365 * 86_400_000,
            _ => return None,
        };
        Some(Self(Duration::from_millis(number.checked_mul(unit_ms)?)))
    }
}

impl<'de> Deserialize<'de> for SynapseDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Millis(u64),
            Text(String),
        }
        match Written::deserialize(deserializer)? {
            Written::Millis(ms) => Ok(Self(Duration::from_millis(ms))),
            Written::Text(text) => Self::parse(&text).ok_or_else(|| D::Error::custom(format!("`{text}` is not a duration such as `30s`, `5m` or `1h`"))),
        }
    }
}

impl Serialize for SynapseDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(self.0.as_millis() as u64)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::SynapseDuration;

    #[test]
    fn units_and_plain_milliseconds() {
        assert_eq!(SynapseDuration::parse("1h"), Some(SynapseDuration(Duration::from_secs(3600))));
        assert_eq!(SynapseDuration::parse("90s"), Some(SynapseDuration(Duration::from_secs(90))));
        assert_eq!(SynapseDuration::parse("250"), Some(SynapseDuration(Duration::from_millis(250))));
        assert_eq!(SynapseDuration::parse("2x"), None);
        assert_eq!(SynapseDuration::parse("h"), None);
    }
}

//! How a setting's value is read, whatever layer it comes from: the
//! environment gives text (`"120s"`, `"16384"`, `"1"`), a TOML file gives
//! typed values (`"120s"`, `16384`, `true`), flags give what clap parsed.
//! Each kind of value accepts both its text and its typed form, so that one
//! [`super::Settings`] type reads every layer.

use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// A duration, written as humantime does everywhere: `120s`, `500ms`, `30d`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("{text:?} is not a duration like `120s` or `500ms` ({e})"))
}

/// `1`, `true`, `yes`, `on` or `0`, `false`, `no`, `off` (any case).
pub fn parse_bool(text: &str) -> Result<bool, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(format!("{text:?} is neither `1`/`true` nor `0`/`false`")),
    }
}

/// `(de)serialize_with` for an optional duration.
pub mod duration {
    use super::*;

    pub fn serialize<S: Serializer>(value: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        value
            .map(|d| humantime::format_duration(d).to_string())
            .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        struct Text;
        impl Visitor<'_> for Text {
            type Value = Duration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration like `120s` or `500ms`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
                parse_duration(v).map_err(E::custom)
            }
        }
        optional(d, Text)
    }
}

/// `deserialize_with` for an optional yes/no setting.
pub mod boolean {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
        struct Flag;
        impl Visitor<'_> for Flag {
            type Value = bool;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("`1`/`true` or `0`/`false`")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
                Ok(v)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<bool, E> {
                parse_bool(&v.to_string()).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<bool, E> {
                parse_bool(&v.to_string()).map_err(E::custom)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
                parse_bool(v).map_err(E::custom)
            }
        }
        optional(d, Flag)
    }
}

/// `deserialize_with` for an optional count or size.
pub mod number {
    use super::*;

    pub fn deserialize<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
    where
        D: Deserializer<'de>,
        T: FromStr + TryFrom<u64>,
    {
        struct Count<T>(PhantomData<T>);
        impl<T: FromStr + TryFrom<u64>> Visitor<'_> for Count<T> {
            type Value = T;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a whole number")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
                T::try_from(v).map_err(|_| E::custom(format!("{v} is too large")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
                let v = u64::try_from(v)
                    .map_err(|_| E::custom(format!("{v} is not a whole number")))?;
                self.visit_u64(v)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
                v.trim()
                    .parse()
                    .map_err(|_| E::custom(format!("{v:?} is not a whole number")))
            }
        }
        optional(d, Count(PhantomData))
    }
}

/// An absent setting or one value read by `visitor`.
fn optional<'de, D, V>(d: D, visitor: V) -> Result<Option<V::Value>, D::Error>
where
    D: Deserializer<'de>,
    V: Visitor<'de>,
{
    struct Some_<V>(V);
    impl<'de, V: Visitor<'de>> Visitor<'de> for Some_<V> {
        type Value = Option<V::Value>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            self.0.expecting(f)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(self.0).map(Some)
        }
    }
    d.deserialize_option(Some_(visitor))
}

/// A list: comma-separated text (the environment, flags, or TOML) or a TOML
/// array.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum StringList {
    Joined(String),
    List(Vec<String>),
}

impl StringList {
    pub fn items(&self) -> Vec<String> {
        match self {
            Self::Joined(text) => split_list(text),
            Self::List(list) => list.iter().map(|s| s.trim().to_owned()).collect(),
        }
    }
}

impl FromStr for StringList {
    type Err = std::convert::Infallible;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(Self::Joined(text.to_owned()))
    }
}

pub fn split_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Sample {
        #[serde(default, with = "duration")]
        wait: Option<Duration>,
        #[serde(default, deserialize_with = "boolean::deserialize")]
        on: Option<bool>,
        #[serde(default, deserialize_with = "number::deserialize")]
        count: Option<u32>,
    }

    #[test]
    fn settings_read_the_same_from_text_and_from_typed_values() {
        let typed: Sample = toml::from_str("wait = \"2m\"\non = true\ncount = 7").unwrap();
        let text: Sample = toml::from_str("wait = \"120s\"\non = \"1\"\ncount = \"7\"").unwrap();
        for s in [typed, text] {
            assert_eq!(s.wait, Some(Duration::from_secs(120)));
            assert_eq!(s.on, Some(true));
            assert_eq!(s.count, Some(7));
        }
        let none: Sample = toml::from_str("").unwrap();
        assert!(none.wait.is_none() && none.on.is_none() && none.count.is_none());
    }

    #[test]
    fn bad_values_say_what_was_expected() {
        for (text, expected) in [
            ("wait = 120", "a duration like `120s`"),
            ("wait = \"soon\"", "not a duration"),
            ("on = \"maybe\"", "neither `1`/`true` nor `0`/`false`"),
            ("count = -1", "not a whole number"),
            ("count = 5000000000", "too large"),
        ] {
            let err = toml::from_str::<Sample>(text).unwrap_err().to_string();
            assert!(err.contains(expected), "{text}: {err}");
        }
    }

    #[test]
    fn lists_split_on_commas_or_come_as_arrays() {
        assert_eq!(
            " a, b ,,c ".parse::<StringList>().unwrap().items(),
            ["a", "b", "c"]
        );
        assert_eq!(
            StringList::List(vec!["a".into(), " b".into()]).items(),
            ["a", "b"]
        );
    }
}

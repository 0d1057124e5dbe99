//! The layers settings come from, merged by figment in rising priority: a
//! TOML file, the environment, the command line's flags (the defaults come
//! last, in [`super::Config::load`]). Each layer remembers where it came
//! from, so that a message about a setting names what the user wrote:
//! `--bind`, `SWITCHBOARD_BIND` or `bind` in `switchboard.toml`.
//!
//! A TOML key the server does not know is refused; so is a setting given
//! twice in one layer under its current and its deprecated name. The
//! deprecated names are read as their replacement, each with a notice for
//! the log.

use std::path::{Path, PathBuf};

use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider, Source};
use serde::Deserialize;

use super::ConfigError;
use super::settings::{Settings, env_var};

/// A deprecated setting, read as `new` (its value in milliseconds).
struct Deprecated {
    old: &'static str,
    new: &'static str,
}

const DEPRECATED: &[Deprecated] = &[Deprecated {
    old: "tool_timeout_ms",
    new: "tool_timeout",
}];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    File,
    Environment,
    Flags,
}

impl Kind {
    const fn label(self) -> &'static str {
        match self {
            Self::File => "TOML file",
            Self::Environment => "environment",
            Self::Flags => "command line",
        }
    }

    fn of(metadata: &Metadata) -> Option<Self> {
        [Self::File, Self::Environment, Self::Flags]
            .into_iter()
            .find(|kind| metadata.name == kind.label())
    }
}

/// The merged layers.
pub struct Layers {
    figment: Figment,
    file: Option<PathBuf>,
    /// Deprecation notices, to log once logging is set up.
    pub notices: Vec<String>,
}

impl Layers {
    pub fn new(file: Option<&Path>, flags: &Settings) -> Result<Self, ConfigError> {
        let mut layers = Self {
            figment: Figment::new(),
            file: file.map(Path::to_owned),
            notices: Vec::new(),
        };
        if let Some(path) = file {
            let dict = read_toml(path)?;
            layers.add(Kind::File, dict)?;
        }
        layers.add(Kind::Environment, environment()?)?;
        layers.add(Kind::Flags, flag_values(flags)?)?;
        Ok(layers)
    }

    fn add(&mut self, kind: Kind, mut dict: Dict) -> Result<(), ConfigError> {
        for d in DEPRECATED {
            let Some(value) = dict.remove(d.old) else {
                continue;
            };
            let (old, new) = (self.name_in(kind, d.old), self.name_in(kind, d.new));
            if dict.contains_key(d.new) {
                return Err(ConfigError::Invalid {
                    name: old,
                    reason: format!("is deprecated and {new} is set too: keep only {new}"),
                });
            }
            let millis = match &value {
                Value::Num(_, n) => n.to_u128().map(|n| n.to_string()),
                Value::String(_, s) => s.trim().parse::<u64>().ok().map(|n| n.to_string()),
                _ => None,
            }
            .ok_or_else(|| ConfigError::Invalid {
                name: old.clone(),
                reason: "is not a whole number of milliseconds".into(),
            })?;
            self.notices.push(format!(
                "{old} is deprecated and will be removed: write {new} as a duration, \
                 e.g. `{millis}ms` or `120s`"
            ));
            dict.insert(d.new.into(), Value::from(format!("{millis}ms")));
        }
        let mut metadata = Metadata::named(kind.label());
        if let (Kind::File, Some(path)) = (kind, &self.file) {
            metadata = metadata.source(Source::File(path.clone()));
        }
        let figment = std::mem::take(&mut self.figment);
        self.figment = figment.merge(Layer { metadata, dict });
        Ok(())
    }

    /// Reads the merged settings as `T`; an error names the setting as the
    /// layer that set it spells it.
    pub fn extract<'a, T: Deserialize<'a>>(&self) -> Result<T, ConfigError> {
        self.figment.extract().map_err(|error| {
            let key = error.path.join(".");
            let name = match error.metadata.as_ref().and_then(Kind::of) {
                Some(kind) => self.name_in(kind, &key),
                None => format!("`{key}`"),
            };
            ConfigError::Invalid {
                name,
                reason: error.kind.to_string(),
            }
        })
    }

    /// How the user wrote `key` in the layer that set it: `--bind`,
    /// `SWITCHBOARD_BIND`, `` `bind` in FILE ``; `key` itself when no layer
    /// set it (a default).
    pub fn name(&self, key: &str) -> String {
        match self.figment.find_metadata(key).and_then(Kind::of) {
            Some(kind) => self.name_in(kind, key),
            None => format!("`{key}`"),
        }
    }

    fn name_in(&self, kind: Kind, key: &str) -> String {
        match kind {
            Kind::Flags => format!("--{}", key.replace('_', "-")),
            Kind::Environment => env_var(key),
            Kind::File => match &self.file {
                Some(path) => format!("`{key}` in {}", path.display()),
                None => format!("`{key}`"),
            },
        }
    }
}

/// One layer for figment: its values and where they came from.
struct Layer {
    metadata: Metadata,
    dict: Dict,
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        self.metadata.clone()
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.dict.clone()))
    }
}

fn read_toml(path: &Path) -> Result<Dict, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|cause| ConfigError::ReadFile {
        path: path.to_owned(),
        cause,
    })?;
    let table: toml::Table = toml::from_str(&text).map_err(|e| ConfigError::ParseFile {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    let known = Settings::keys();
    if let Some(key) = table.keys().find(|key| !known.contains(key)) {
        return Err(ConfigError::UnknownKey {
            path: path.to_owned(),
            key: key.clone(),
        });
    }
    let value = Value::serialize(table).map_err(|e| ConfigError::ParseFile {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    Ok(value.into_dict().unwrap_or_default())
}

/// The settings' variables that are set, as text; an empty variable counts
/// as unset. Other variables, `SWITCHBOARD_`-prefixed or not, are not read.
fn environment() -> Result<Dict, ConfigError> {
    let mut dict = Dict::new();
    for key in Settings::keys() {
        let name = env_var(key);
        match std::env::var(&name) {
            Ok(value) if value.is_empty() => {}
            Ok(value) => {
                dict.insert(key.to_owned(), Value::from(value));
            }
            Err(std::env::VarError::NotPresent) => {}
            Err(std::env::VarError::NotUnicode(_)) => {
                return Err(ConfigError::Invalid {
                    name,
                    reason: "is not valid UTF-8".into(),
                });
            }
        }
    }
    Ok(dict)
}

/// The flags that were given (clap leaves the others `None`).
fn flag_values(flags: &Settings) -> Result<Dict, ConfigError> {
    let mut dict = Dict::new();
    for value in [Value::serialize(flags), Value::serialize(&flags.limits)] {
        let value = value.map_err(|e| ConfigError::Invalid {
            name: "a flag".into(),
            reason: e.to_string(),
        })?;
        dict.extend(
            value
                .into_dict()
                .unwrap_or_default()
                .into_iter()
                .filter(|(_, v)| !matches!(v, Value::Empty(..))),
        );
    }
    Ok(dict)
}

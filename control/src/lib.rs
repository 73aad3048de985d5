//! Business configuration of the edge: the TOML model (`model`), value parsers
//! (`values`), validation with file/line/field errors (`error`, `validate`) and the
//! immutable [`Snapshot`] that hot paths read (routing by number, tokens → users).
//!
//! A snapshot is built once per load, never mutated, and swapped as a whole on reload.

mod error;
pub mod hours;
mod model;
mod snapshot;
mod validate;
pub mod values;

pub use error::ConfigError;
pub use model::*;
pub use snapshot::{AfterHoursRoute, CallSettings, Destination, Snapshot, MAX_AFTER_HOURS_HOPS};
pub use values::{ListenAddr, PortRange, SipTarget, Transport};

/// The embedded default configuration (a loopback demo), as TOML text.
pub const DEFAULT_CONFIG: &str = include_str!("default.toml");

/// Parse and validate configuration text. `file` names the source in errors.
pub fn parse(file: &str, text: &str) -> Result<Snapshot, ConfigError> {
    let config: Config =
        toml::from_str(text).map_err(|e| ConfigError::from_toml(file, text, &e))?;
    validate::validate(&config).map_err(|issue| issue.into_error(file, text))?;
    Ok(Snapshot::new(config))
}

/// Read, parse and validate a configuration file.
pub fn load(path: &std::path::Path) -> Result<Snapshot, ConfigError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        file: file.clone(),
        source,
    })?;
    parse(&file, &text)
}

/// The embedded default configuration, parsed.
pub fn embedded_default() -> Snapshot {
    parse("<embedded default>", DEFAULT_CONFIG).expect("embedded default config is valid")
}

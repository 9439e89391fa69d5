//! Logs on stderr: `tracing` events and spans, human or JSON, at the verbosity asked for —
//! and never a secret, at any level.
//!
//! Secrets reach logs through dependencies, not through crmsync's own events (which carry
//! ids, counts, kinds and durations only): yup-oauth2 logs whole token requests (the signed
//! JWT assertion) and responses (the access token) at `debug`, and "found valid token in
//! cache: {token:?}"; reqwest and hyper can dump raw connection bytes (including
//! `Authorization` headers) at `trace`. So each such target has a ceiling that no verbosity
//! and no `CRMSYNC_LOG` directive can raise ([`SECRET_BEARING_TARGETS`]).

use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::{EnvFilter, FilterExt, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// How log lines look on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One readable line per event.
    Human,
    /// One JSON object per event (fields, span fields, target, level, timestamp).
    Json,
}

/// Targets that log credentials or raw traffic below a level, and the most they may log.
pub const SECRET_BEARING_TARGETS: &[(&str, LevelFilter)] = &[
    // Token requests (the signed JWT), responses (access tokens), cached tokens: debug.
    ("yup_oauth2", LevelFilter::WARN),
    // Raw reads and writes of connections (headers included) at trace.
    ("reqwest", LevelFilter::DEBUG),
    ("hyper", LevelFilter::DEBUG),
    ("hyper_util", LevelFilter::DEBUG),
    ("h2", LevelFilter::DEBUG),
    ("rustls", LevelFilter::DEBUG),
];

/// The filter for a verbosity: crmsync's own targets at the asked level, dependencies one
/// step quieter (they are noisy and rarely what an operator needs).
fn verbosity_filter(verbose: u8) -> EnvFilter {
    let directives = match verbose {
        0 => "warn",
        1 => "warn,crmsync=info",
        2 => "info,crmsync=debug",
        _ => "debug,crmsync=trace",
    };
    EnvFilter::new(directives)
}

/// The ceilings of [`SECRET_BEARING_TARGETS`]; everything else passes.
pub fn secret_ceilings() -> Targets {
    SECRET_BEARING_TARGETS.iter().fold(
        Targets::new().with_default(LevelFilter::TRACE),
        |t, (target, level)| t.with_target(*target, *level),
    )
}

/// Installs the subscriber: `CRMSYNC_LOG` (EnvFilter syntax) overrides the verbosity, but
/// never the secret ceilings.
pub fn init_tracing(verbose: u8, format: LogFormat) {
    let wanted =
        EnvFilter::try_from_env("CRMSYNC_LOG").unwrap_or_else(|_| verbosity_filter(verbose));
    let filter = wanted.and(secret_ceilings());
    let layer = match format {
        LogFormat::Human => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_target(true)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(std::io::stderr)
            .boxed(),
    };
    let _ = tracing_subscriber::registry()
        .with(layer.with_filter(filter))
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;

    fn allowed(target: &str, level: Level) -> bool {
        secret_ceilings().would_enable(target, &level)
    }

    #[test]
    fn secret_bearing_targets_are_capped_whatever_the_verbosity() {
        assert!(!allowed("yup_oauth2::authenticator", Level::DEBUG));
        assert!(!allowed("yup_oauth2::service_account", Level::INFO));
        assert!(allowed("yup_oauth2", Level::WARN));
        assert!(!allowed("reqwest::connect", Level::TRACE));
        assert!(!allowed("hyper_util::client::legacy::client", Level::TRACE));
        assert!(allowed("crmsync::sync::engine", Level::TRACE));
    }
}

//! Log output of the long-running commands: `tracing` events to stderr, level from
//! `VIGIL_LOG` (error, warn, info, debug, trace; default info).

pub fn init() {
    init_with_default(tracing::Level::INFO);
}

/// As [`init`], with `default` when `VIGIL_LOG` does not say (`vigil demo` prints its own
/// progress and keeps the log to warnings).
pub fn init_with_default(default: tracing::Level) {
    let level = std::env::var("VIGIL_LOG")
        .ok()
        .and_then(|text| text.parse::<tracing::Level>().ok())
        .unwrap_or(default);
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}

//! Log output of the long-running commands: `tracing` events to stderr, level from
//! `VIGIL_LOG` (error, warn, info, debug, trace; default info).

pub fn init() {
    let level = std::env::var("VIGIL_LOG")
        .ok()
        .and_then(|text| text.parse::<tracing::Level>().ok())
        .unwrap_or(tracing::Level::INFO);
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}

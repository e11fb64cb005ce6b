//! The `kessai` binary: see [`kessai::cli`].

use clap::Parser;

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KESSAI_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    // Any panic is a bug. Stop the whole process (fail-stop) rather than let
    // a half-dead actor system limp on: every acknowledged change is durable,
    // and a restart recovers from the disk. (A hook, not `panic = "abort"` in
    // the profile, so tests and dependencies keep one build.)
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        std::process::abort();
    }));
    let cli = kessai::cli::Cli::parse();
    std::process::exit(kessai::cli::run(cli));
}

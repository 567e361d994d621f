//! `cargo run --release -p meridian-demo`: the demo on 127.0.0.1:8080.

use std::net::SocketAddr;
use std::process::ExitCode;

use meridian_demo::DemoConfig;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let listen: SocketAddr =
        match std::env::var("MERIDIAN_DEMO_LISTEN").as_deref().unwrap_or("127.0.0.1:8080").parse() {
            Ok(listen) => listen,
            Err(e) => {
                eprintln!("meridian-demo: MERIDIAN_DEMO_LISTEN is not an address: {e}");
                return ExitCode::FAILURE;
            }
        };
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("meridian-demo: cannot listen on {listen}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let config = match DemoConfig::from_env(listener.local_addr().unwrap_or(listen)) {
        Ok(config) => config,
        Err(message) => {
            eprintln!("meridian-demo: {message}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(secret) = &config.generated_secret {
        println!("MERIDIAN_VERIFY_SECRET was unset; this run's verify secret is {secret}");
    }
    let origin = format!("http://{}", config.serve.listen);
    if let Some(secret) = &config.generated_console_secret {
        println!(
            "MERIDIAN_CONSOLE_SECRET was unset; the operator console at {origin}/console opens with {secret}"
        );
    }
    let demo = match meridian_demo::Demo::build(config).await {
        Ok(demo) => demo,
        Err(message) => {
            eprintln!("meridian-demo: {message}");
            return ExitCode::FAILURE;
        }
    };
    println!("Meridian demo: open {origin}/");
    // SIGTERM or Ctrl-C: the same limits and graceful shutdown as `meridian serve`.
    match demo.serve(listener, meridian_verifier::http::shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("meridian-demo: {e}");
            ExitCode::FAILURE
        }
    }
}

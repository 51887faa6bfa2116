//! `beacon serve`: the HTTP API over the embedded engine (see `beacon-server`), and
//! `beacon serve token create|list|revoke`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use beacon_server::tokens::{Role, TokenFile};
use clap::{Args, Subcommand};

use crate::exit;
use crate::session::{FlowArgs, Session, load_flow_config};

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ServeArgs {
    #[command(subcommand)]
    command: Option<ServeCommand>,
    /// The address to listen on [default: serve.bind, 127.0.0.1:8080]. A non-loopback address
    /// needs tokens (beacon serve token create).
    #[arg(long, value_name = "ADDR")]
    bind: Option<String>,
    /// The tokens file [default: serve.tokens, else <data dir>/tokens.json].
    #[arg(long, value_name = "FILE")]
    tokens: Option<PathBuf>,
    /// Serve HTTPS with this PEM certificate (chain) [default: serve.tls_cert]; needs --tls-key.
    #[arg(long, value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert [default: serve.tls_key].
    #[arg(long, value_name = "FILE")]
    tls_key: Option<PathBuf>,
    #[command(flatten)]
    flow: FlowArgs,
}

#[derive(Subcommand, Debug)]
pub enum ServeCommand {
    /// Manage the API's tokens (only their hashes are stored).
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Create a token and print it once (alone on the last line of stdout).
    Create {
        /// viewer: reads; submitter: also uploads, stops, resumes; admin: also deletes.
        #[arg(long, value_name = "admin|submitter|viewer")]
        role: Role,
        /// A name for it (default: <role>-<n>).
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        file: TokenFileArgs,
    },
    /// List the tokens (names, roles, creation times; never the tokens).
    List {
        #[command(flatten)]
        file: TokenFileArgs,
    },
    /// Revoke the token named NAME (a running server refuses it from its next request).
    Revoke {
        name: String,
        #[command(flatten)]
        file: TokenFileArgs,
    },
}

#[derive(Args, Debug)]
pub struct TokenFileArgs {
    /// The tokens file [default: serve.tokens, else <data dir>/tokens.json].
    #[arg(long, value_name = "FILE")]
    tokens: Option<PathBuf>,
    /// Directory of the local object store and execution journal [default: $XDG_DATA_HOME/beacon].
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

pub async fn serve(config_path: Option<&Path>, args: ServeArgs) -> u8 {
    match args.command {
        Some(ServeCommand::Token(command)) => token(config_path, command),
        None => run_server(config_path, args).await,
    }
}

fn tokens_path(config: &beacon_pipeline::Config, flag: Option<&Path>) -> PathBuf {
    flag.map(Path::to_path_buf)
        .or_else(|| config.serve.tokens.clone())
        .unwrap_or_else(|| config.data_dir.join("tokens.json"))
}

fn token(config_path: Option<&Path>, command: TokenCommand) -> u8 {
    let file_args = match &command {
        TokenCommand::Create { file, .. } | TokenCommand::List { file } | TokenCommand::Revoke { file, .. } => file,
    };
    let flow = FlowArgs { data_dir: file_args.data_dir.clone(), ..FlowArgs::default() };
    let config = match crate::session::load_config(config_path, &flow) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let path = tokens_path(&config, file_args.tokens.as_deref());
    let mut file = match TokenFile::load(&path) {
        Ok(file) => file,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::INTERNAL;
        }
    };
    let result = match command {
        TokenCommand::Create { role, name, .. } => file.create(name.as_deref(), role).map(|(entry, token)| {
            eprintln!("created token '{}' ({}) in {}; it is shown once, here:", entry.name, entry.role, path.display());
            println!("{token}");
        }),
        TokenCommand::List { .. } => {
            if file.is_empty() {
                println!("no tokens ({})", path.display());
            } else {
                println!("{:<32} {:<10} CREATED", "NAME", "ROLE");
                for entry in file.entries() {
                    println!("{:<32} {:<10} {}", entry.name, entry.role.to_string(), entry.created_at);
                }
            }
            Ok(())
        }
        TokenCommand::Revoke { name, .. } => file.revoke(&name).map(|entry| {
            println!("revoked token '{}' ({})", entry.name, entry.role);
        }),
    };
    match result {
        Ok(()) => exit::SUCCESS,
        Err(e @ (beacon_server::tokens::TokenError::Read { .. } | beacon_server::tokens::TokenError::Write { .. })) => {
            eprintln!("error: {e}");
            exit::INTERNAL
        }
        Err(e) => {
            eprintln!("error: {e}");
            exit::USAGE
        }
    }
}

async fn run_server(config_path: Option<&Path>, args: ServeArgs) -> u8 {
    let config = match load_flow_config(config_path, &args.flow).await {
        Ok(config) => config,
        Err(code) => return code,
    };
    let bind = args.bind.clone().unwrap_or_else(|| config.serve.bind.clone());
    let Ok(address) = bind.parse::<SocketAddr>() else {
        eprintln!("error: --bind {bind}: expected an address and port, e.g. 127.0.0.1:8080 or 0.0.0.0:8080");
        return exit::USAGE;
    };
    let tokens_file = tokens_path(&config, args.tokens.as_deref());
    let tokens = match TokenFile::load(&tokens_file) {
        Ok(tokens) => tokens,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::USAGE;
        }
    };
    let tls = match tls_files(&config, &args) {
        Ok(None) => None,
        Ok(Some((cert, key))) => match beacon_server::Tls::from_pem_files(&cert, &key).await {
            Ok(tls) => Some(tls),
            Err(e) => {
                eprintln!("error: {e}");
                return exit::USAGE;
            }
        },
        Err(message) => {
            eprintln!("error: {message}");
            return exit::USAGE;
        }
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let session = match Session::new(config, &args.flow).await {
        Ok(session) => session,
        Err(code) => return code,
    };
    let (services, journal, tasks, observed) = session.into_parts();
    let open = tokens.is_empty();
    let parts =
        beacon_server::Parts { services, journal, tasks, observed, tokens, loopback: address.ip().is_loopback() };
    let state = match beacon_server::state(parts, &bind) {
        Ok(state) => state,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::USAGE;
        }
    };
    let listener = match tokio::net::TcpListener::bind(address).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("error: cannot listen on {bind}: {e}");
            return exit::USAGE;
        }
    };
    let local = listener.local_addr().map_or(bind.clone(), |a| a.to_string());
    if open {
        eprintln!(
            "warning: no tokens in {}: every request on this loopback address is let in as admin (beacon serve token create --role admin)",
            tokens_file.display()
        );
    }
    println!("beacon serve: listening on {scheme}://{local} (API under /v1, OpenAPI at /openapi.json)");
    match beacon_server::serve(listener, state, shutdown_signal(), tls).await {
        Ok(()) => {
            eprintln!("beacon serve: stopped; unfinished executions resume when it starts again");
            exit::SUCCESS
        }
        Err(e) => {
            eprintln!("error: the server failed: {e}");
            exit::INTERNAL
        }
    }
}

/// The certificate and key to serve HTTPS with: the flags, else `[serve]`; both or neither.
fn tls_files(config: &beacon_pipeline::Config, args: &ServeArgs) -> Result<Option<(PathBuf, PathBuf)>, String> {
    let cert = args.tls_cert.clone().or_else(|| config.serve.tls_cert.clone());
    let key = args.tls_key.clone().or_else(|| config.serve.tls_key.clone());
    match (cert, key) {
        (Some(cert), Some(key)) => Ok(Some((cert, key))),
        (None, None) => Ok(None),
        (Some(_), None) => {
            Err("a TLS certificate (--tls-cert, serve.tls_cert) needs its key: --tls-key or serve.tls_key".into())
        }
        (None, Some(_)) => {
            Err("a TLS key (--tls-key, serve.tls_key) needs its certificate: --tls-cert or serve.tls_cert".into())
        }
    }
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}

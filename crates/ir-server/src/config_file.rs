//! `--config FILE`: the command line kept in a TOML file, and
//! `--print-config`, the effective configuration written back as one.
//!
//! Every long option is a key of the same name in the table of its
//! `--help` heading (`[listener] port = 8080`). Values are handed to the
//! same clap parsers as flags, so a file cannot say what a flag could not.
//! Precedence: flags > environment > file > defaults. This is done with
//! clap, not beside it: the command line is parsed once to learn where
//! each value came from, the file's values are added as flags for the
//! options that only had a default, and the result is parsed again.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches};
use toml::Spanned;

use crate::cli::Args;

/// Largest configuration file read.
const MAX_FILE: u64 = 1 << 20;

/// The `--help` headings, each with its options; a heading is also the
/// configuration file's table (lowercase, spaces as dashes).
pub const GROUPS: &[(&str, &[&str])] = &[
    (
        "Registry",
        &[
            "root",
            "name",
            "watch",
            "verify_threads",
            "io_threads",
            "seal_memory",
            "blob_cache",
            "check",
            "format",
        ],
    ),
    (
        "Listener",
        &[
            "port",
            "bind",
            "backlog",
            "max_connections",
            "max_handshakes_per_address",
            "handshake_timeout",
            "header_timeout",
            "send_timeout",
            "idle_timeout",
            "shutdown_grace",
            "flight_timeout",
            "ipv6_prefix_len",
            "proxy_protocol",
            "proxy_protocol_from",
        ],
    ),
    ("TLS", &["tls", "cert", "key", "client_ca"]),
    (
        "Authentication",
        &[
            "access_map",
            "htpasswd",
            "token_key",
            "token_ttl",
            "token_realm",
            "token_service",
            "token_issuer",
            "token_jwks",
        ],
    ),
    (
        "RA-TLS",
        &[
            "veraison_url",
            "veraison_ca",
            "veraison_pubkey",
            "reference_json",
            "cpak",
            "cpak_any_firmware",
            "veraison_timeout",
            "veraison_verifier_id",
            "max_attestations",
            "ratls_tls12",
            "max_connection_age",
            "insecure_skip_challenge",
            "insecure_dev_keys",
        ],
    ),
    (
        "Signatures",
        &[
            "policy",
            "registry_host",
            "signature_cache",
            "notation_trust_policy",
            "notation_trust_store",
        ],
    ),
    (
        "Logs and metrics",
        &["log_format", "no_access_log", "metrics_addr"],
    ),
    (
        "Receipts and events",
        &[
            "receipts",
            "receipts_key",
            "receipts_checkpoint",
            "receipts_file_size",
            "events_url",
        ],
    ),
    ("Configuration", &["config", "print_config"]),
];

/// Options that make no sense inside a configuration file.
const NOT_IN_FILE: &[&str] = &["config", "print_config"];

/// The configuration file's table for a heading.
fn table_of(heading: &str) -> String {
    heading.to_ascii_lowercase().replace(' ', "-")
}

/// The command with its options under their headings.
pub fn command() -> clap::Command {
    let mut cmd = Args::command();
    for (heading, ids) in GROUPS {
        for id in *ids {
            cmd = cmd.mut_arg(*id, |a| a.help_heading(*heading));
        }
    }
    cmd
}

/// Why the command line and configuration file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A flag or a value is wrong (clap prints it with the usage).
    #[error(transparent)]
    Flags(#[from] clap::Error),
    /// The configuration file cannot be read.
    #[error("configuration file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The configuration file is larger than [`MAX_FILE`].
    #[error("configuration file {path}: larger than {MAX_FILE} bytes")]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// The file is not TOML, or a key or value is wrong.
    #[error("configuration file {path}:{line}: {why}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The line (1-based).
        line: usize,
        /// What is wrong, naming the key.
        why: String,
    },
}

/// Parsed flags, with the matches that say where each value came from.
pub struct Parsed {
    /// The typed flags.
    pub args: Args,
    /// clap's matches of the final parse.
    pub matches: ArgMatches,
}

/// Parses `argv` (the program name first), reading `--config` if given.
pub fn parse<I, T>(argv: I) -> Result<Parsed, CliError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let argv: Vec<OsString> = argv.into_iter().map(Into::into).collect();
    let cmd = command();
    let first = cmd.clone().try_get_matches_from(&argv)?;
    let matches = match first.get_one::<PathBuf>("config") {
        None => first,
        Some(path) => {
            let text = read(path)?;
            let mut extended = argv.clone();
            extended.extend(file_flags(&cmd, &first, path, &text)?);
            cmd.try_get_matches_from(&extended)?
        }
    };
    let args = Args::from_arg_matches(&matches)?;
    Ok(Parsed { args, matches })
}

fn read(path: &Path) -> Result<String, CliError> {
    use std::io::Read;
    let read_err = |source| CliError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_err)?;
    let mut text = String::new();
    file.take(MAX_FILE + 1)
        .read_to_string(&mut text)
        .map_err(read_err)?;
    if text.len() as u64 > MAX_FILE {
        return Err(CliError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    Ok(text)
}

/// The flags the file adds: one per key whose option was given neither on
/// the command line nor in the environment. Every key and value is checked
/// first, whether or not it is used, so a file that is wrong is refused
/// even where flags override it.
fn file_flags(
    cmd: &clap::Command,
    given: &ArgMatches,
    path: &Path,
    text: &str,
) -> Result<Vec<OsString>, CliError> {
    let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
    let invalid = |offset: usize, why: String| CliError::Invalid {
        path: path.to_path_buf(),
        line: line_of(offset),
        why,
    };
    let doc: BTreeMap<Spanned<String>, toml::Value> = toml::from_str(text)
        .map_err(|e| invalid(e.span().map_or(0, |s| s.start), e.message().to_string()))?;
    let heading_of = |id: &str| {
        GROUPS
            .iter()
            .find(|(_, ids)| ids.contains(&id))
            .map(|(h, _)| table_of(h))
    };
    let mut flags = Vec::new();
    // Every key's flag, used or overridden, for checking its value.
    let mut every: Vec<(String, usize, OsString)> = Vec::new();
    for (table, value) in &doc {
        let start = table.span().start;
        if !GROUPS.iter().any(|(h, _)| table_of(h) == **table.get_ref()) {
            let why = match cmd
                .get_arguments()
                .find(|a| a.get_long() == Some(table.get_ref()))
            {
                Some(a) => format!(
                    "`{}` must be in its table [{}]",
                    table.get_ref(),
                    heading_of(a.get_id().as_str()).unwrap_or_default()
                ),
                None => format!(
                    "unknown table [{}] (the tables are the headings of `ir-server --help`)",
                    table.get_ref()
                ),
            };
            return Err(invalid(start, why));
        }
        let toml::Value::Table(entries) = value else {
            return Err(invalid(
                start,
                format!("[{}] must be a table", table.get_ref()),
            ));
        };
        for (key, value) in entries {
            // Nested values carry no spans: find the key's line under its
            // table header (the header's line for dotted or inline keys).
            let at = locate(text, table.get_ref(), key).unwrap_or(start);
            let Some(arg) = cmd
                .get_arguments()
                .find(|a| a.get_long() == Some(key.as_str()))
                .filter(|a| !NOT_IN_FILE.contains(&a.get_id().as_str()))
            else {
                return Err(invalid(
                    at,
                    format!(
                        "unknown key `{}` in [{}] (keys are the long options of `ir-server --help`)",
                        key,
                        table.get_ref()
                    ),
                ));
            };
            let id = arg.get_id().as_str();
            let home = heading_of(id).unwrap_or_default();
            if home != **table.get_ref() {
                return Err(invalid(
                    at,
                    format!("`{}` belongs in [{home}], not [{}]", key, table.get_ref()),
                ));
            }
            let flag = format!("--{}", key);
            let from_default = matches!(
                given.value_source(id),
                None | Some(ValueSource::DefaultValue)
            );
            if !arg.get_action().takes_values() {
                let toml::Value::Boolean(on) = value else {
                    return Err(invalid(at, format!("`{}` must be true or false", key)));
                };
                if *on {
                    every.push((key.clone(), at, flag.clone().into()));
                    if from_default {
                        flags.push(OsString::from(flag));
                    }
                }
                continue;
            }
            let text_value = match value {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                // A list, for an option that takes one separated by its
                // delimiter (`proxy-protocol-from = ["10.0.0.0/8", "::1/128"]`).
                toml::Value::Array(items) if arg.get_value_delimiter().is_some() => {
                    let sep = arg.get_value_delimiter().unwrap_or(',').to_string();
                    let mut parts = Vec::with_capacity(items.len());
                    for item in items {
                        match item {
                            toml::Value::String(s) => parts.push(s.clone()),
                            toml::Value::Integer(i) => parts.push(i.to_string()),
                            _ => {
                                return Err(invalid(
                                    at,
                                    format!("`{key}` must be a list of strings"),
                                ))
                            }
                        }
                    }
                    parts.join(&sep)
                }
                _ => {
                    return Err(invalid(
                        at,
                        format!("`{}` must be a string, a number or a boolean", key),
                    ))
                }
            };
            every.push((key.clone(), at, format!("{flag}={text_value}").into()));
            if from_default {
                flags.push(OsString::from(format!("{flag}={text_value}")));
            }
        }
    }
    check_values(cmd, &every).map_err(|(offset, why)| invalid(offset, why))?;
    Ok(flags)
}

/// Parses the file's flags alone, without the environment, so that a value
/// clap refuses is reported with its key and line even when a flag or a
/// variable overrides it. Errors that depend on other options (conflicts,
/// requirements) are left to the real parse.
fn check_values(
    cmd: &clap::Command,
    every: &[(String, usize, OsString)],
) -> Result<(), (usize, String)> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let bare = cmd.clone().mut_args(|a| a.env(None));
    let argv =
        std::iter::once(OsString::from("ir-server")).chain(every.iter().map(|(_, _, f)| f.clone()));
    let Err(e) = bare.try_get_matches_from(argv) else {
        return Ok(());
    };
    if !matches!(
        e.kind(),
        ErrorKind::InvalidValue | ErrorKind::ValueValidation | ErrorKind::InvalidUtf8
    ) {
        return Ok(());
    }
    let Some(ContextValue::String(arg)) = e.get(ContextKind::InvalidArg) else {
        return Ok(());
    };
    let long = arg
        .trim_start_matches('-')
        .split([' ', '='])
        .next()
        .unwrap_or_default();
    let Some((key, at, _)) = every.iter().find(|(k, _, _)| k == long) else {
        return Ok(());
    };
    let msg = e.to_string();
    let first = msg.lines().next().unwrap_or_default();
    let first = first.strip_prefix("error: ").unwrap_or(first);
    Err((*at, format!("`{key}`: {first}")))
}

/// The offset of `key`'s line inside `[table]`, for error messages: the
/// first line after the table's header that starts with the key.
fn locate(text: &str, table: &str, key: &str) -> Option<usize> {
    let header = format!("[{table}]");
    let mut offset = 0;
    let mut inside = false;
    for line in text.split_inclusive('\n') {
        let t = line.trim_start();
        if t.starts_with('[') {
            inside = t.trim_end().starts_with(&header);
        } else if inside {
            let k = t.split('=').next().unwrap_or_default().trim();
            if k == key || k.trim_matches('"') == key {
                return Some(offset);
            }
        }
        offset += line.len();
    }
    None
}

/// The effective configuration as a file `--config` reads back: every
/// option that has a value, in its table. Secrets are files, so only their
/// paths appear.
pub fn print(matches: &ArgMatches) -> String {
    let cmd = command();
    let mut out = String::from(
        "# ir-server configuration (ir-server --print-config): flags > environment > this file > defaults\n",
    );
    for (heading, ids) in GROUPS {
        let mut body = String::new();
        for id in *ids {
            if NOT_IN_FILE.contains(id) {
                continue;
            }
            let Some(arg) = cmd.get_arguments().find(|a| a.get_id() == *id) else {
                continue;
            };
            let Some(long) = arg.get_long() else { continue };
            if !arg.get_action().takes_values() {
                let on = matches.get_flag(id);
                let _ = writeln!(body, "{long} = {on}");
                continue;
            }
            let Some(raw) = matches.get_raw(id) else {
                continue;
            };
            let values: Vec<String> = raw.map(|v| v.to_string_lossy().into_owned()).collect();
            if values.is_empty() {
                continue;
            }
            if arg.get_value_delimiter().is_some() {
                let list: Vec<String> = values
                    .iter()
                    .map(|v| toml::Value::String(v.clone()).to_string())
                    .collect();
                let _ = writeln!(body, "{long} = [{}]", list.join(", "));
                continue;
            }
            let value = &values[0];
            let numeric = !value.is_empty()
                && value.bytes().all(|b| b.is_ascii_digit())
                && value.len() < 16
                && !value.starts_with('0');
            if numeric {
                let _ = writeln!(body, "{long} = {value}");
            } else {
                let _ = writeln!(body, "{long} = {}", toml::Value::String(value.clone()));
            }
        }
        if !body.is_empty() {
            let _ = write!(out, "\n[{}]\n{body}", table_of(heading));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_option_has_exactly_one_heading() {
        let cmd = Args::command();
        for a in cmd.get_arguments() {
            let id = a.get_id().as_str();
            if matches!(id, "help" | "version") {
                continue;
            }
            let n = GROUPS.iter().filter(|(_, ids)| ids.contains(&id)).count();
            assert_eq!(n, 1, "{id} is under {n} headings");
        }
        for (_, ids) in GROUPS {
            for id in *ids {
                assert!(cmd.get_arguments().any(|a| a.get_id() == *id), "{id}");
            }
        }
    }
}

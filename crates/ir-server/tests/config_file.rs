//! `--config FILE` and `--print-config`, through the binary: precedence
//! (flags > environment > file > defaults), the printed configuration read
//! back unchanged, and every wrong file refused with its line and key.

use std::path::Path;
use std::process::{Command, Output};

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ir-server"));
    cmd.args(args);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("IR_SERVER_") {
            cmd.env_remove(key);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn print_config(file: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let mut all = vec!["--config", file.to_str().unwrap(), "--print-config"];
    all.extend_from_slice(args);
    let out = run(&all, env);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn refused(text: &str) -> String {
    let dir = tempfile::TempDir::new().unwrap();
    let file = dir.path().join("ir-server.toml");
    std::fs::write(&file, text).unwrap();
    let out = run(&["--config", file.to_str().unwrap(), "--print-config"], &[]);
    assert_eq!(out.status.code(), Some(2), "{text}");
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains(&format!("{}:", file.display())), "{err}");
    err
}

#[test]
fn flags_beat_the_environment_which_beats_the_file_which_beats_defaults() {
    let dir = tempfile::TempDir::new().unwrap();
    let file = dir.path().join("ir-server.toml");
    std::fs::write(
        &file,
        "[listener]\nport = 2000\nidle-timeout = 7\n\n[logs-and-metrics]\nno-access-log = true\n",
    )
    .unwrap();
    let line = |out: &str, key: &str| {
        out.lines()
            .find(|l| l.starts_with(&format!("{key} = ")))
            .unwrap_or_else(|| panic!("no {key} in {out}"))
            .to_string()
    };
    let out = print_config(&file, &[], &[]);
    assert_eq!(line(&out, "port"), "port = 2000");
    assert_eq!(line(&out, "idle-timeout"), "idle-timeout = 7");
    assert_eq!(line(&out, "no-access-log"), "no-access-log = true");
    assert_eq!(
        line(&out, "header-timeout"),
        "header-timeout = 20",
        "default"
    );
    let out = print_config(&file, &[], &[("IR_SERVER_PORT", "3000")]);
    assert_eq!(line(&out, "port"), "port = 3000");
    let out = print_config(&file, &["-p", "4000"], &[("IR_SERVER_PORT", "3000")]);
    assert_eq!(line(&out, "port"), "port = 4000");
    // The file through the environment, as the container image gives it.
    let out = run(
        &["--print-config"],
        &[("IR_SERVER_CONFIG", file.to_str().unwrap())],
    );
    assert_eq!(
        line(&String::from_utf8(out.stdout).unwrap(), "port"),
        "port = 2000"
    );
}

#[test]
fn the_printed_configuration_reads_back_to_itself() {
    let dir = tempfile::TempDir::new().unwrap();
    let first = dir.path().join("first.toml");
    std::fs::write(
        &first,
        "[registry]\nroot = \"/srv/a \\\"b\\\"\"\nwatch = true\n[tls]\ntls = \"tls\"\ncert = \"/etc/ir/server.crt\"\nkey = \"/etc/ir/server.key\"\n[signatures]\npolicy = \"/etc/ir/policy.json\"\n[listener]\nproxy-protocol = true\nproxy-protocol-from = [\"10.0.0.0/8\", \"192.0.2.7\"]\n",
    )
    .unwrap();
    let printed = print_config(&first, &[], &[]);
    assert!(
        printed.contains("key = \"/etc/ir/server.key\""),
        "{printed}"
    );
    let second = dir.path().join("second.toml");
    std::fs::write(&second, &printed).unwrap();
    assert_eq!(print_config(&second, &[], &[]), printed);
}

#[test]
fn a_configured_server_serves_as_configured() {
    let dir = tempfile::TempDir::new().unwrap();
    let root = ir_testkit::Root::new();
    root.good("app");
    let file = dir.path().join("ir-server.toml");
    std::fs::write(
        &file,
        format!(
            "[registry]\nroot = {:?}\ncheck = true\nformat = \"json\"\n",
            root.path().display().to_string()
        ),
    )
    .unwrap();
    let out = run(&["--config", file.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(0));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["applications"][0]["name"], "app");
}

#[test]
fn wrong_files_are_refused_naming_the_line_and_the_key() {
    let err = refused("[listener]\nport = 80\nprot = 81\n");
    assert!(
        err.contains(":3: unknown key `prot` in [listener]"),
        "{err}"
    );
    let err = refused("[registry]\n\nport = 80\n");
    assert!(
        err.contains(":3: `port` belongs in [listener], not [registry]"),
        "{err}"
    );
    let err = refused("port = 80\n");
    assert!(
        err.contains(":1: `port` must be in its table [listener]"),
        "{err}"
    );
    let err = refused("[listener]\nport = \"eighty\"\n");
    assert!(err.contains(":2: `port`: invalid value 'eighty'"), "{err}");
    let err = refused("[listener]\nport = 0\nidle-timeout = 0\n");
    assert!(
        err.contains(":2: `port`") || err.contains(":3: `idle-timeout`"),
        "{err}"
    );
    let err = refused("[listener]\nproxy-protocol = \"yes\"\n");
    assert!(
        err.contains(":2: `proxy-protocol` must be true or false"),
        "{err}"
    );
    let err = refused("[tls]\ntls = \"ssl\"\n");
    assert!(err.contains(":2: `tls`: invalid value 'ssl'"), "{err}");
    let err = refused("[listener]\nport = [1, 2]\n");
    assert!(
        err.contains(":2: `port` must be a string, a number or a boolean"),
        "{err}"
    );
    let err = refused("[nonsense]\nx = 1\n");
    assert!(err.contains(":1: unknown table [nonsense]"), "{err}");
    let err = refused("[listener]\nport = 80\nport = 81\n");
    assert!(err.contains(":3:"), "a repeated key is a TOML error: {err}");
    let err = refused("[configuration]\nconfig = \"/etc/other.toml\"\n");
    assert!(err.contains(":2: unknown key `config`"), "{err}");
    // A value a flag overrides is still checked.
    let dir = tempfile::TempDir::new().unwrap();
    let file = dir.path().join("x.toml");
    std::fs::write(&file, "[listener]\nport = \"x\"\n").unwrap();
    let out = run(
        &[
            "--config",
            file.to_str().unwrap(),
            "-p",
            "80",
            "--print-config",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    // A file that does not exist.
    let out = run(&["--config", "/nonexistent/ir.toml", "--print-config"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/ir.toml"));
}

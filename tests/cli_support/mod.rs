//! A temp-dir crmsync configuration with the security fixture loaded, and the built binary
//! run against it: shared by the CLI tests of `access` and `scope`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub struct Env {
    pub dir: tempfile::TempDir,
}

impl Env {
    pub fn new(extra_config: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("crmsync.toml"),
            format!("[state]\npath = \"state.db\"\n[crm]\npath = \"crm.db\"\n{extra_config}"),
        )
        .unwrap();
        let env = Env { dir };
        let fixture =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/security-org.json");
        for args in [&["crm", "load", fixture.to_str().unwrap()][..], &["init"]] {
            let out = env.run(args);
            assert!(
                out.status.success(),
                "{args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        env
    }

    pub fn config(&self) -> PathBuf {
        self.dir.path().join("crmsync.toml")
    }

    pub fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_crmsync"))
            .arg("--config")
            .arg(self.config())
            .args(args)
            .env_remove("CRMSYNC_CONFIG")
            .output()
            .unwrap()
    }

    pub fn json(&self, args: &[&str]) -> Value {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{:?}: {}",
            args,
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{:?} should exit 2: {}",
            args,
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

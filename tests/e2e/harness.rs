//! Helpers shared by the end-to-end tests.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The built `etl` binary.
pub fn etl() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_etl"));
    cmd.env_remove("ETL_STATE").env_remove("ETL_LOG");
    cmd
}

/// The repository root (pipelines/, schemas/).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A scratch directory with a pipeline file written into it.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Scratch {
        Scratch {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, text).unwrap();
        p
    }

    pub fn state(&self) -> PathBuf {
        self.path("state.db")
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The command ended with exit code 0; otherwise what it printed is the failure.
#[track_caller]
pub fn assert_success(out: &Output) {
    assert_eq!(out.status.code(), Some(0), "{}{}", stdout(out), stderr(out));
}

/// Run a command, returning its output; panics with both streams if it could not start.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("etl runs")
}

pub fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

pub fn read_jsonl(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

use emulators::bitrix24::{BackgroundEmulator, Emulator, EmulatorConfig, Portal};
use emulators::otmechalka::{OtmechalkaConfig, OtmechalkaEmulator};

/// A Bitrix24 emulator on its own thread (the test thread blocks while `etl` runs).
pub fn b24(portal: Portal) -> BackgroundEmulator {
    b24_with(EmulatorConfig::default(), portal)
}

pub fn b24_with(config: EmulatorConfig, portal: Portal) -> BackgroundEmulator {
    Emulator::start_background(config, portal).expect("Bitrix24 emulator starts")
}

pub fn otmechalka() -> OtmechalkaEmulator {
    OtmechalkaEmulator::start(OtmechalkaConfig::default()).expect("otmechalka emulator starts")
}

/// `etl run` with the emulators' endpoints in the environment.
pub fn etl_run(
    pipeline: &Path,
    state: &Path,
    b24: Option<&Emulator>,
    otm: Option<&OtmechalkaEmulator>,
) -> Command {
    let mut cmd = etl();
    cmd.arg("run")
        .arg(pipeline)
        .arg("--state")
        .arg(state)
        .arg("--no-progress");
    if let Some(b) = b24 {
        cmd.env("B24_WEBHOOK_URL", b.webhook_url());
    }
    if let Some(o) = otm {
        cmd.env("OTMECHALKA_URL", o.url())
            .env("OTMECHALKA_TOKEN", o.token());
    }
    cmd
}

/// A row for the Bitrix24 emulator.
pub fn row(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    v.as_object().cloned().expect("an object")
}

/// The number of `method` commands in each `batch` request, in the order they came.
pub fn batch_sizes(emu: &emulators::bitrix24::Emulator, method: &str) -> Vec<usize> {
    emu.calls("batch")
        .iter()
        .map(|c| {
            c.params["cmd"]
                .as_object()
                .map(|cmd| {
                    cmd.values()
                        .filter(|v| {
                            v.as_str()
                                .is_some_and(|s| s.split('?').next() == Some(method))
                        })
                        .count()
                })
                .unwrap_or(0)
        })
        .filter(|&n| n > 0)
        .collect()
}

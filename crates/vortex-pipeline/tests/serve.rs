//! `vortex serve` as an operator runs it for days: a bounded queue drained on SIGTERM, a probe
//! port of its own, a process killed in the middle of a slot and started again, a full disk,
//! and a cache it cannot write. Each test spawns the `vortex` binary and speaks HTTP to it.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::Shipped;

fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vortex-serve-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn free_port() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("127.0.0.1:{port}")
}

/// One HTTP/1.1 request: its status and body (`None`: no answer).
fn http(addr: &str, method: &str, path: &str, body: Option<&str>) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let body = body.unwrap_or("");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Some((status, body.to_owned()))
}

fn post(addr: &str, id: u64) -> (u16, String) {
    let recipe = format!(r#"{{"slot_id": {id}, "script": "Hello."}}"#);
    http(addr, "POST", "/slots", Some(&recipe)).expect("POST /slots answered")
}

/// `GET /slots/{id}`'s status once it is neither queued nor running.
fn settled(addr: &str, id: u64) -> serde_json::Value {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        if let Some((200, body)) = http(addr, "GET", &format!("/slots/{id}"), None) {
            let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
            if doc["status"] != "running" && doc["status"] != "queued" {
                return doc;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("slot {id} did not finish in 60 s");
}

/// `vortex serve` on `addr` (probes also on `probe`), slots under `out`, started through
/// `bash -c PRELUDE; exec vortex …` (a prelude sets limits), stdout into `log`.
struct Server {
    child: Child,
    addr: String,
    probe: String,
}

impl Server {
    fn start(config: &Path, out: &Path, log: &Path, prelude: &str) -> Server {
        let (addr, probe) = (free_port(), free_port());
        let child = Command::new("bash")
            .arg("-c")
            .arg(format!(r#"{prelude} exec "$0" "$@""#))
            .arg(env!("CARGO_BIN_EXE_vortex"))
            .args(["--config", config.to_str().unwrap(), "serve"])
            .args(["--addr", &addr, "--probe-addr", &probe, "--out"])
            .arg(out)
            .stdout(std::fs::File::create(log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let server = Server { child, addr, probe };
        server.wait_ready();
        server
    }

    fn wait_ready(&self) {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(60) {
            if http(&self.probe, "GET", "/ready", None).is_some_and(|(s, _)| s == 200) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("vortex serve was not ready in 60 s");
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Its exit status within `limit`.
    fn exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let started = Instant::now();
        while started.elapsed() < limit {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        panic!("vortex serve did not exit within {limit:?}");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The slot folders under `out`, sorted.
fn folders(out: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(out)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A whole slot folder: every file there, the manifest readable.
fn whole(dir: &Path) -> bool {
    ["video.mp4", "audio.wav", "actor.png"]
        .iter()
        .all(|f| dir.join(f).metadata().is_ok_and(|m| m.len() > 0))
        && std::fs::read_to_string(dir.join("manifest.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .is_some()
}

/// Two recipes wait behind the running slot (the default `[server] queue = 2`), a fourth is
/// told to come back; on SIGTERM the queued ones are cancelled (their status says so while
/// the running one finishes), the running one is written whole, and the process exits 0.
#[test]
fn serve_queues_two_refuses_the_next_and_drains_on_sigterm() {
    let dir = tempdir("queue");
    // A slot of about 3.3 s: seed-targets at a quarter.
    let config = Shipped::small_slot()
        .set("timing.time_scale", "0.25")
        .write_into(&dir);
    let out = dir.join("slots");
    let mut server = Server::start(&config, &out, &dir.join("log"), "");
    let addr = server.addr.clone();
    assert_eq!(post(&addr, 1).0, 202);
    let (status, body) = post(&addr, 2);
    assert_eq!(status, 202, "{body}");
    assert!(body.contains("\"place\":1"), "{body}");
    let (status, body) = post(&addr, 3);
    assert_eq!(status, 202, "{body}");
    assert!(body.contains("\"place\":2"), "{body}");
    let (status, body) = post(&addr, 4);
    assert_eq!(status, 429, "{body}");
    server.signal("-TERM");
    // While the running slot finishes: queued ones cancelled, /ready 503, no new recipes.
    let started = Instant::now();
    let mut cancelled = false;
    while started.elapsed() < Duration::from_secs(5) {
        if http(&addr, "GET", "/slots/3", None).is_some_and(|(_, b)| b.contains("cancelled")) {
            cancelled = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(cancelled, "queued slot 3 marked cancelled after SIGTERM");
    let (_, list) = http(&addr, "GET", "/slots", None).unwrap();
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(
        list["slots"],
        serde_json::json!([
            {"slot_id": 3, "status": "cancelled"},
            {"slot_id": 2, "status": "cancelled"},
            {"slot_id": 1, "status": "running"},
        ]),
        "{list}"
    );
    let (status, body) = http(&server.probe, "GET", "/ready", None).unwrap();
    assert_eq!((status, body.contains("stopping")), (503, true), "{body}");
    assert_eq!(post(&addr, 5).0, 503, "no new slots while stopping");
    let exit = server.exit(Duration::from_secs(30));
    assert!(exit.success(), "exit 0 after SIGTERM: {exit:?}");
    assert_eq!(folders(&out), ["slot-0001"]);
    assert!(whole(&out.join("slot-0001")));
    let _ = std::fs::remove_dir_all(&dir);
}

/// SIGKILL while the video stage runs: the folder holds only `slot-0001.partial`; a restart
/// removes it and says so, and the next slot is written whole.
#[test]
fn a_process_killed_mid_video_stage_leaves_only_whole_slots_after_restart() {
    let dir = tempdir("kill");
    // 240 frames: the video stage lasts about 0.25 s of seed-targets at half speed after
    // the actor's 6 s, its frames piped to ffmpeg as they come.
    let config = Shipped::small_slot()
        .with(&[
            ("buffers.seconds", "60"),
            ("timing.time_scale", "0.5"),
            ("timing.deadline", "\"60s\""),
        ])
        .write_into(&dir);
    let out = dir.join("slots");
    let log = dir.join("log");
    {
        let mut server = Server::start(&config, &out, &log, "");
        assert_eq!(post(&server.addr, 1).0, 202);
        let video = out.join("slot-0001.partial").join("video.mp4");
        let started = Instant::now();
        while !video.exists() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the video stage started"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        server.signal("-KILL");
        server.exit(Duration::from_secs(10));
    }
    assert_eq!(folders(&out), ["slot-0001.partial"], "killed mid-slot");
    assert!(!out.join("slot-0001.partial/manifest.json").exists());
    let mut server = Server::start(&config, &out, &log, "");
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("removed an unfinished slot") && logged.contains("slot-0001.partial"),
        "{logged}"
    );
    assert!(folders(&out).is_empty(), "{:?}", folders(&out));
    assert_eq!(post(&server.addr, 2).0, 202);
    assert_eq!(settled(&server.addr, 2)["status"], "done");
    assert_eq!(folders(&out), ["slot-0002"]);
    assert!(whole(&out.join("slot-0002")));
    server.signal("-TERM");
    assert!(server.exit(Duration::from_secs(30)).success());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Mounts a 1 MiB tmpfs on `dir`; `false` where mounts are not allowed.
fn mount_tmpfs(dir: &Path) -> bool {
    std::env::var_os("VORTEX_TEST_NO_TMPFS").is_none()
        && Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
            .arg(dir)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}

/// The output disk full: the slot fails saying so, nothing of it is left, `/ready` stays 200,
/// and once there is space again the next slot is written whole. A 1 MiB tmpfs filled up
/// (`ENOSPC`) where the test may mount one; else a file size limit on the server process
/// (`EFBIG`, SIGXFSZ ignored; the soft limit only), lifted with `prlimit` for the next slot.
#[test]
fn a_full_disk_fails_the_slot_cleanly_and_the_next_one_once_space_is_back() {
    let dir = tempdir("full");
    let config = Shipped::small_slot()
        .set("timing.cost_profile", "\"zero\"")
        .write_into(&dir);
    let out = dir.join("slots");
    std::fs::create_dir_all(&out).unwrap();
    let tmpfs = mount_tmpfs(&out);
    let prelude = if tmpfs {
        ""
    } else {
        // 8 KiB: the slot's audio.wav (48 KB) is larger.
        "trap '' XFSZ; ulimit -S -f 8;"
    };
    let mut server = Server::start(&config, &out, &dir.join("log"), prelude);
    let filler = out.join("filler");
    if tmpfs {
        let mut file = std::fs::File::create(&filler).unwrap();
        let block = vec![0u8; 4096];
        while file.write_all(&block).is_ok() {}
    }
    assert_eq!(post(&server.addr, 1).0, 202);
    let failed = settled(&server.addr, 1);
    let error = failed["error"].as_str().unwrap_or_default().to_owned();
    let said = if tmpfs {
        "No space left on device"
    } else {
        "File too large"
    };
    assert_eq!(failed["status"], "failed", "{failed}");
    assert!(error.contains(said), "{error}");
    assert!(
        !out.join("slot-0001").exists() && !out.join("slot-0001.partial").exists(),
        "nothing partial"
    );
    let (status, body) = http(&server.probe, "GET", "/ready", None).unwrap();
    assert_eq!(status, 200, "{body}");
    // Space back.
    let lifted = if tmpfs {
        std::fs::remove_file(&filler).unwrap();
        true
    } else {
        Command::new("prlimit")
            .args(["--pid", &server.child.id().to_string(), "--fsize=unlimited"])
            .status()
            .is_ok_and(|s| s.success())
    };
    if lifted {
        assert_eq!(post(&server.addr, 2).0, 202);
        let done = settled(&server.addr, 2);
        assert_eq!(done["status"], "done", "{done}");
        assert!(whole(&out.join("slot-0002")));
    } else {
        eprintln!(
            "prlimit could not lift the file size limit: the slot after the full disk was not tried"
        );
    }
    server.signal("-TERM");
    assert!(server.exit(Duration::from_secs(30)).success());
    drop(server);
    eprintln!(
        "full disk: {}",
        if tmpfs {
            "a 1 MiB tmpfs filled up (ENOSPC)"
        } else {
            "a file size limit (EFBIG)"
        }
    );
    if tmpfs {
        let _ = Command::new("umount").arg(&out).status();
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A cache folder that cannot be written (a folder under a file, whoever runs the test):
/// `vortex serve` and `vortex run` fail at once with what to set, before any model loads.
#[test]
fn an_unwritable_cache_fails_before_any_model_loads() {
    let dir = tempdir("cache");
    // Kokoro's real network: its files come from the cache.
    let config = Shipped::new()
        .with(&[
            ("buffers.image_size", "16"),
            ("buffers.seconds", "1"),
            ("buffers.fps", "4"),
            ("buffers.staging_frames", "2"),
            ("timing.verified_frames", "2"),
        ])
        .write_into(&dir);
    let file = dir.join("a-file");
    std::fs::write(&file, b"").unwrap();
    let cache = file.join("cache");
    for args in [
        vec!["serve", "--addr", "127.0.0.1:0", "--out"],
        vec!["run", "--out"],
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_vortex"))
            .args(["--config", config.to_str().unwrap()])
            .args(&args)
            .arg(dir.join("slots"))
            .env("VORTEX_CACHE", &cache)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(!output.status.success(), "{args:?}");
        assert!(
            stderr.contains(&cache.display().to_string())
                && stderr.contains("set VORTEX_CACHE")
                && stderr.contains("before loading any model"),
            "{args:?}: {stderr}"
        );
        assert!(
            !stdout.contains("resident") && !stdout.contains("profile"),
            "{args:?}: nothing loaded: {stdout}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The end of a slot blocks on files (the encoder's tail, the PNG and WAV, the fsyncs): an
/// ffmpeg that takes 2 s to exit after its last frame holds the slot's finish that long, and
/// the probes must still answer fast meanwhile (the server's workers are not all held by it).
#[test]
fn a_slow_encoder_tail_does_not_stall_the_probes() {
    use vortex_pipeline::output::Ffmpeg;
    let dir = tempdir("tail");
    let real =
        Ffmpeg::resolve_in(None, &vortex_runtime::fetch::cache_dir()).expect("the pinned ffmpeg");
    let script = dir.join("ffmpeg");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\nif [ \"$1\" = -version ]; then exec '{real}' \"$@\"; fi\n'{real}' \"$@\"\nstatus=$?\nsleep 2\nexit $status\n",
                real = real.program().display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let config = Shipped::small_slot().write_into(&dir);
    let out = dir.join("slots");
    let log = dir.join("log");
    let mut server = Server::start(
        &config,
        &out,
        &log,
        &format!("export VORTEX_FFMPEG='{}';", script.display()),
    );
    assert_eq!(post(&server.addr, 1).0, 202);
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut probes = 0;
    loop {
        let asked = Instant::now();
        let (status, _) = http(&server.probe, "GET", "/health", None).expect("/health answered");
        assert_eq!(status, 200);
        slowest = slowest.max(asked.elapsed());
        probes += 1;
        let (_, body) = http(&server.addr, "GET", "/slots/1", None).expect("status answered");
        let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
        if doc["status"] != "running" && doc["status"] != "queued" {
            assert_eq!(doc["status"], "done", "{doc}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the slot finished"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "the encoder's tail held the slot"
    );
    assert!(
        slowest < Duration::from_millis(500),
        "/health took {slowest:?} at worst over {probes} probes while the slot ended"
    );
    assert!(whole(&out.join("slot-0001")));
    server.signal("-TERM");
    assert!(server.exit(Duration::from_secs(30)).success());
    let _ = std::fs::remove_dir_all(&dir);
}

//! Shared helpers for end-to-end tests: run the real `lograft` binary, talk Forward to it with
//! an independent client (plain `rmp`, not lograft's codec), and read what it wrote.
#![allow(dead_code)]

pub mod prometheus;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub mod cluster;

pub const BIN: &str = env!("CARGO_BIN_EXE_lograft");

/// Ports handed out by [`free_port`]: below the kernel's ephemeral range (32768 and up on
/// Linux), so no `bind(0)` or outgoing connection is ever given one while a test holds it.
const TEST_PORTS: std::ops::Range<u16> = 20_000..32_000;

/// A TCP (and UDP) port on 127.0.0.1 reserved for this test process, for a lograft process to
/// listen on.
///
/// Binding port 0 and passing the number on is racy: the port is free again until the binary
/// binds it, and any other bind(0) may get it. Instead ports are taken from [`TEST_PORTS`],
/// counting up from an offset derived from the process id; each one is claimed across
/// processes by an exclusive lock on `<tmp>/lograft-test-ports/<port>.lock`, held until this
/// process exits (the OS releases it even after a crash), and checked free (TCP and UDP) before
/// it is returned. A port is never handed out twice in one process.
pub fn free_port() -> u16 {
    static NEXT: AtomicU64 = AtomicU64::new(u64::MAX);
    static HELD: Mutex<Vec<std::fs::File>> = Mutex::new(Vec::new());
    let span = (TEST_PORTS.end - TEST_PORTS.start) as u64;
    let dir = std::env::temp_dir().join("lograft-test-ports");
    std::fs::create_dir_all(&dir).unwrap();
    let _ = NEXT.compare_exchange(
        u64::MAX,
        (std::process::id() as u64 * 997) % span,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..span {
        let port = TEST_PORTS.start + (NEXT.fetch_add(1, Ordering::SeqCst) % span) as u16;
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(format!("{port}.lock")))
            .unwrap();
        if lock.try_lock().is_err() {
            continue; // another test process holds it
        }
        let free = TcpListener::bind(("127.0.0.1", port)).is_ok()
            && std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok();
        if free {
            HELD.lock().unwrap().push(lock);
            return port;
        }
    }
    panic!("no free port left in {TEST_PORTS:?}");
}

/// A running `lograft run` process with its config and data dir.
pub struct Node {
    pub child: Option<Child>,
    pub config: PathBuf,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    pub wait_ports: Vec<u16>,
    /// Extra environment variables for the process (e.g. fault points).
    pub env: Vec<(String, String)>,
}

impl Node {
    /// Write `config_text` to `<dir>/lograft.conf` and start the binary; waits for `ports`.
    pub fn start(dir: &Path, config_text: &str, ports: &[u16]) -> Node {
        Self::start_with_env(dir, config_text, ports, &[])
    }

    /// [`Node::start`] with extra environment variables.
    pub fn start_with_env(
        dir: &Path,
        config_text: &str,
        ports: &[u16],
        env: &[(&str, &str)],
    ) -> Node {
        std::fs::create_dir_all(dir).unwrap();
        let config = dir.join("lograft.conf");
        std::fs::write(&config, config_text).unwrap();
        let mut n = Node {
            child: None,
            config,
            data_dir: dir.join("data"),
            log: dir.join("lograft.log"),
            wait_ports: ports.to_vec(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        n.spawn();
        n
    }

    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(BIN)
            .arg("run")
            .arg("-c")
            .arg(&self.config)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .env("RUST_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn lograft");
        self.child = Some(child);
        for p in self.wait_ports.clone() {
            self.wait_port(p);
        }
    }

    fn wait_port(&mut self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "lograft exited with {status} before listening on {port}; log:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "lograft did not listen on {port}; log:\n{}",
            self.log_text()
        );
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait; returns the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        let mut c = self.child.take()?;
        signal(c.id() as i32, "TERM");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(st) = c.try_wait().unwrap() {
                return st.code();
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                panic!(
                    "lograft did not exit after SIGTERM; log:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub fn signal(pid: i32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

/// Encode `[time, record]` entries for records `{"seq": n, "msg": pad}`.
pub fn entries(seqs: impl IntoIterator<Item = u64>, pad: usize) -> (Vec<u8>, u32) {
    let filler = "x".repeat(pad);
    let mut out = Vec::new();
    let mut n = 0;
    for seq in seqs {
        rmp::encode::write_array_len(&mut out, 2).unwrap();
        // EventTime fixext8
        out.extend_from_slice(&[0xd7, 0x00]);
        out.extend_from_slice(&1_700_000_000u32.to_be_bytes());
        out.extend_from_slice(&(seq as u32 % 1_000_000_000).to_be_bytes());
        rmp::encode::write_map_len(&mut out, 2).unwrap();
        rmp::encode::write_str(&mut out, "seq").unwrap();
        rmp::encode::write_uint(&mut out, seq).unwrap();
        rmp::encode::write_str(&mut out, "msg").unwrap();
        rmp::encode::write_str(&mut out, &filler).unwrap();
        n += 1;
    }
    (out, n)
}

/// A PackedForward frame with `{size, chunk}` options.
pub fn packed_forward(tag: &str, entries: &[u8], count: u32, chunk: Option<&str>) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() + 64);
    rmp::encode::write_array_len(&mut out, 3).unwrap();
    rmp::encode::write_str(&mut out, tag).unwrap();
    rmp::encode::write_bin(&mut out, entries).unwrap();
    rmp::encode::write_map_len(&mut out, if chunk.is_some() { 2 } else { 1 }).unwrap();
    rmp::encode::write_str(&mut out, "size").unwrap();
    rmp::encode::write_uint(&mut out, count as u64).unwrap();
    if let Some(c) = chunk {
        rmp::encode::write_str(&mut out, "chunk").unwrap();
        rmp::encode::write_str(&mut out, c).unwrap();
    }
    out
}

/// A blocking Forward client that sends chunks and waits for their acks.
pub struct ForwardClient {
    stream: TcpStream,
    counter: u64,
}

impl ForwardClient {
    pub fn connect(addr: SocketAddr) -> std::io::Result<Self> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        stream.set_nodelay(true)?;
        Ok(ForwardClient { stream, counter: 0 })
    }

    /// Send events with the given sequence numbers and wait for the ack.
    pub fn send_acked(
        &mut self,
        tag: &str,
        seqs: impl IntoIterator<Item = u64>,
        pad: usize,
    ) -> std::io::Result<()> {
        let (e, n) = entries(seqs, pad);
        // Unique across every client of the test process: receivers dedup by chunk id.
        static NEXT_CHUNK: AtomicU64 = AtomicU64::new(1);
        self.counter = NEXT_CHUNK.fetch_add(1, Ordering::Relaxed);
        let chunk = format!("chunk-{}-{}", std::process::id(), self.counter);
        self.stream
            .write_all(&packed_forward(tag, &e, n, Some(&chunk)))?;
        let ack = read_msgpack(&mut self.stream)?;
        let got = ack
            .as_map()
            .and_then(|m| m.iter().find(|(k, _)| k.as_str() == Some("ack")))
            .and_then(|(_, v)| v.as_str().map(str::to_string));
        if got.as_deref() != Some(chunk.as_str()) {
            return Err(std::io::Error::other(format!(
                "bad ack {ack:?} for {chunk}"
            )));
        }
        Ok(())
    }

    pub fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    pub fn stream(&mut self) -> &mut TcpStream {
        &mut self.stream
    }
}

/// Read one msgpack value from a blocking stream (small replies only).
pub fn read_msgpack(stream: &mut TcpStream) -> std::io::Result<rmpv::Value> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 4096];
    loop {
        let mut cur = std::io::Cursor::new(&buf[..]);
        if let Ok(v) = rmpv::decode::read_value(&mut cur) {
            return Ok(v);
        }
        let n = stream.read(&mut byte)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed without a reply",
            ));
        }
        buf.extend_from_slice(&byte[..n]);
    }
}

/// Every out_file line under `dir` (recursively, `.log` and `.log.gz`), as `(tag, record)`.
pub fn read_out_file_records(dir: &Path) -> Vec<(String, serde_json::Value)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            let text = if name.ends_with(".gz") {
                let mut s = String::new();
                flate2::read::MultiGzDecoder::new(std::fs::File::open(&p).unwrap())
                    .read_to_string(&mut s)
                    .unwrap();
                s
            } else if name.ends_with(".log") {
                std::fs::read_to_string(&p).unwrap()
            } else {
                continue;
            };
            for line in text.lines() {
                let mut parts = line.splitn(3, '\t');
                let (_t, tag, json) = (parts.next(), parts.next(), parts.next());
                let (Some(tag), Some(json)) = (tag, json) else {
                    panic!("malformed out_file line in {}: {line:?}", p.display())
                };
                out.push((tag.to_string(), serde_json::from_str(json).unwrap()));
            }
        }
    }
    out
}

/// Count each `seq` value found in the records.
pub fn seq_counts(records: &[(String, serde_json::Value)]) -> std::collections::HashMap<u64, u32> {
    let mut m = std::collections::HashMap::new();
    for (_, r) in records {
        if let Some(s) = r.get("seq").and_then(|v| v.as_u64()) {
            *m.entry(s).or_insert(0) += 1;
        }
    }
    m
}

/// Chunk files (`buffer.*.log`) a file buffer directory still holds, `quarantine/` not
/// counted: 0 once every chunk it stored was delivered (acknowledged) and purged.
pub fn buffered_chunks(buffer_dir: &Path) -> usize {
    std::fs::read_dir(buffer_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.starts_with("buffer.") && name.ends_with(".log")
        })
        .count()
}

/// Poll until `f` returns true or the timeout passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

/// Wait until `count()` stayed the same for `quiet` (polling every 50 ms), at most `timeout`;
/// whether it did. For "whatever was in flight has landed" before checking that nothing more
/// comes.
pub fn wait_quiet(timeout: Duration, quiet: Duration, mut count: impl FnMut() -> usize) -> bool {
    let deadline = Instant::now() + timeout;
    let mut last = count();
    let mut since = Instant::now();
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        let now = count();
        if now != last {
            last = now;
            since = Instant::now();
        } else if since.elapsed() >= quiet {
            return true;
        }
    }
    false
}

/// A Python interpreter with `fluent-logger` and `msgpack` installed (a venv under target/).
pub fn python_with_fluent_logger() -> PathBuf {
    python_venv_with(
        "import fluent.sender, msgpack",
        &["fluent-logger", "msgpack"],
    )
}

/// The venv's python once `check` (python code) succeeds in it, installing `packages` if not.
pub fn python_venv_with(check: &str, packages: &[&str]) -> PathBuf {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-venv");
    let python = venv.join("bin/python");
    let ok = |p: &Path| {
        Command::new(p)
            .args(["-c", check])
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    if ok(&python) {
        return python;
    }
    // Serialise set-up between test binaries running at once.
    let lock = venv.with_extension("lock");
    let _guard = FileLock::acquire(&lock);
    if !ok(&python) {
        if !python.exists() {
            let st = Command::new("python3")
                .arg("-m")
                .arg("venv")
                .arg(&venv)
                .status()
                .unwrap();
            assert!(st.success(), "python3 -m venv failed");
        }
        let st = Command::new(venv.join("bin/pip"))
            .args(["install", "-q"])
            .args(packages)
            .status()
            .unwrap();
        assert!(st.success(), "pip install {packages:?} failed");
    }
    python
}

struct FileLock(PathBuf);

impl FileLock {
    fn acquire(path: &Path) -> FileLock {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
            {
                Ok(_) => return FileLock(path.to_path_buf()),
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(200))
                }
                Err(e) => panic!("lock {}: {e}", path.display()),
            }
        }
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Clients streaming uniquely numbered events to the forwarder, `per_send` per acked frame.
/// Sequence numbers run from `first` up to `total`; only acked ones are recorded. A client
/// whose connection fails (forwarder killed) reconnects and goes on with new numbers.
pub struct Stream {
    acked: Arc<Mutex<Vec<u64>>>,
    errors: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Stream {
    pub fn start(
        tag: &'static str,
        port: u16,
        clients: usize,
        per_send: u64,
        (first, total): (u64, u64),
        pace: Option<Duration>,
    ) -> Self {
        let next = Arc::new(AtomicU64::new(first));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let errors = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..clients)
            .map(|_| {
                let (next, acked, errors, stop) =
                    (next.clone(), acked.clone(), errors.clone(), stop.clone());
                std::thread::spawn(move || {
                    let mut client: Option<ForwardClient> = None;
                    while !stop.load(Ordering::Relaxed) {
                        let c = match client.as_mut() {
                            Some(c) => c,
                            None => match ForwardClient::connect(SocketAddr::from((
                                [127, 0, 0, 1],
                                port,
                            ))) {
                                Ok(c) => client.insert(c),
                                Err(_) => {
                                    std::thread::sleep(Duration::from_millis(100));
                                    continue;
                                }
                            },
                        };
                        let start = next.fetch_add(per_send, Ordering::SeqCst);
                        if start >= total {
                            return;
                        }
                        let end = (start + per_send).min(total);
                        match c.send_acked(tag, start..end, 40) {
                            Ok(()) => acked.lock().unwrap().extend(start..end),
                            Err(_) => {
                                errors.fetch_add(1, Ordering::SeqCst);
                                client = None;
                            }
                        }
                        if let Some(p) = pace {
                            std::thread::sleep(p);
                        }
                    }
                })
            })
            .collect();
        Stream {
            acked,
            errors,
            stop,
            threads,
        }
    }

    /// Frames that were not acknowledged (connection failed).
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::SeqCst)
    }

    pub fn acked_count(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    /// Stop sending (after the frames in progress) and return the acked sequence numbers.
    pub fn stop(self) -> Vec<u64> {
        self.stop.store(true, Ordering::SeqCst);
        self.finish()
    }

    /// Wait until every sequence number was sent and return the acked ones.
    pub fn finish(self) -> Vec<u64> {
        for t in self.threads {
            t.join().unwrap();
        }
        let v = self.acked.lock().unwrap().clone();
        v
    }
}

/// lograft config text for tests, built section by section so tests share one spelling of the
/// sources, outputs and buffers they have in common.
///
/// ```ignore
/// ConfigText::new()
///     .forward_source(port)
///     .out_file("test.**", &out, BufferText::file(&buf).param("flush_interval", "0.2s"))
///     .build()
/// ```
#[derive(Debug, Clone, Default)]
pub struct ConfigText {
    text: String,
}

impl ConfigText {
    pub fn new() -> Self {
        Self::default()
    }

    /// `<source> @type forward` on 127.0.0.1:`port`.
    pub fn forward_source(self, port: u16) -> Self {
        self.forward_source_with(port, "")
    }

    /// [`ConfigText::forward_source`] with extra lines inside the `<source>`.
    pub fn forward_source_with(mut self, port: u16, extra: &str) -> Self {
        self.text.push_str(&format!(
            "<source>\n  @type forward\n  bind 127.0.0.1\n  port {port}\n  {extra}\n</source>\n"
        ));
        self
    }

    /// `<source> @type http` on 127.0.0.1:`port`.
    pub fn http_source(mut self, port: u16) -> Self {
        self.text.push_str(&format!(
            "<source>\n  @type http\n  bind 127.0.0.1\n  port {port}\n</source>\n"
        ));
        self
    }

    /// `<source> @type tail` reading `path` (globs allowed) with tag `tag`, pos file
    /// `pos_file`, JSON lines unless `extra` has another `<parse>`, checked every 0.1 s.
    pub fn tail_source(mut self, path: &str, tag: &str, pos_file: &Path, extra: &str) -> Self {
        let parse = if extra.contains("<parse>") {
            ""
        } else {
            "  <parse>\n    @type json\n  </parse>\n"
        };
        self.text.push_str(&format!(
            "<source>\n  @type tail\n  path {path}\n  tag {tag}\n  pos_file {}\n  refresh_interval 0.2s\n  rotate_wait 0.5s\n{extra}\n{parse}</source>\n",
            pos_file.display()
        ));
        self
    }

    /// `<match pattern> @type file path …` with the given buffer.
    pub fn out_file(mut self, pattern: &str, path: impl AsRef<Path>, buffer: BufferText) -> Self {
        self.text.push_str(&format!(
            "<match {pattern}>\n  @type file\n  path {}\n{}</match>\n",
            path.as_ref().display(),
            buffer.render()
        ));
        self
    }

    /// `<match pattern> @type forward` with `params` (one `name value` per line), the
    /// `<server>` sections in `servers`, and the given buffer.
    pub fn out_forward(
        mut self,
        pattern: &str,
        params: &str,
        servers: &str,
        buffer: BufferText,
    ) -> Self {
        self.text.push_str(&format!(
            "<match {pattern}>\n  @type forward\n{params}\n{servers}\n{}</match>\n",
            buffer.render()
        ));
        self
    }

    /// Any other text (e.g. a `<cluster>` section), as it is.
    pub fn raw(mut self, text: &str) -> Self {
        self.text.push_str(text);
        self.text.push('\n');
        self
    }

    pub fn build(self) -> String {
        self.text
    }
}

/// A `<buffer tag>` section: `@type file` at a path, or the default (memory) when no path.
#[derive(Debug, Clone)]
pub struct BufferText {
    path: Option<PathBuf>,
    params: Vec<(String, String)>,
}

impl BufferText {
    /// A file buffer in `path`.
    pub fn file(path: impl AsRef<Path>) -> Self {
        BufferText {
            path: Some(path.as_ref().to_path_buf()),
            params: Vec::new(),
        }
    }

    /// The output's default buffer type.
    pub fn default_type() -> Self {
        BufferText {
            path: None,
            params: Vec::new(),
        }
    }

    pub fn param(mut self, name: &str, value: &str) -> Self {
        self.params.push((name.to_string(), value.to_string()));
        self
    }

    fn render(&self) -> String {
        let mut s = String::from("  <buffer tag>\n");
        if let Some(path) = &self.path {
            s.push_str(&format!("    @type file\n    path {}\n", path.display()));
        }
        for (name, value) in &self.params {
            s.push_str(&format!("    {name} {value}\n"));
        }
        s.push_str("  </buffer>\n");
        s
    }
}

/// The forwarder the failover and cluster tests run: `<match test.**>` → out_forward to
/// `servers` (heartbeats every 0.2 s, `ack_response_timeout` as given, `extra` parameters),
/// with a file buffer in `dir/buffer` that flushes every 0.2 s with 4 threads and retries
/// forever; preceded by the given sources.
pub fn forwarder_config(
    sources: ConfigText,
    dir: &Path,
    servers: &str,
    ack_response_timeout: &str,
    extra: &str,
) -> String {
    let params = format!(
        "  heartbeat_interval 0.2s\n  recover_wait 1s\n  ack_response_timeout {ack_response_timeout}\n  connect_timeout 1s\n  {extra}"
    );
    let buffer = BufferText::file(dir.join("buffer"))
        .param("flush_interval", "0.2s")
        .param("flush_thread_count", "4")
        .param("retry_max_interval", "1s")
        .param("retry_forever", "true")
        .param("chunk_limit_size", "1m");
    sources
        .out_forward("test.**", &params, servers, buffer)
        .build()
}

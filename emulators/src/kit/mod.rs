//! Plumbing shared by the HTTP service emulators (otmechalka, the orders API): a server on its own
//! thread, bearer-token checks, artificial latency and fault injection.
//!
//! An emulator runs on a dedicated OS thread with its own single-threaded tokio runtime, so it keeps
//! answering while the test that started it blocks (for example on `std::process::Command::output`
//! running the real `etl` binary), and it can be started from sync and async code alike.
//!
//! # Faults
//! [`Faults`] is a queue of [`FaultRule`]s shared between the test and the server. For each request
//! the server asks the queue for a fault before doing anything else (after the configured latency):
//! rules are checked in the order they were added; a rule whose [`Scope`] matches either counts the
//! request toward its `after` (and the next rule is checked) or, when due, fires once and decrements
//! its `times`. What each [`Fault`] does is documented on its variants; "processed" means the
//! request is handled as it would be without the fault (token check included), so writes are applied.

use std::{
    collections::VecDeque,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use axum::{
    Json, Router,
    extract::connect_info::Connected,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    serve::{IncomingStream, Listener},
};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What an injected fault does to one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answer this status with `{"detail": "Injected fault: HTTP <status>"}`; not processed.
    Status(u16),
    /// Answer this status with an HTML page, as a reverse proxy in front of the service would;
    /// not processed.
    Html(u16),
    /// Process the request at once (writes are applied even if the client gives up waiting), then
    /// hold the response back for this long.
    Slow(Duration),
    /// Close the connection without sending a single byte; not processed.
    Drop,
    /// Process the request (writes are applied), then answer this status with a JSON error body
    /// instead of the real response.
    ApplyThenStatus(u16),
    /// Process the request (writes are applied), then close the connection without a response.
    ApplyThenDrop,
}

/// Which requests a [`FaultRule`] applies to. `K` is the emulator's endpoint type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope<K> {
    /// Every request.
    Any,
    /// Requests that do not change state (GET and other non-POST methods).
    Reads,
    /// Requests that may change state (POST).
    Writes,
    /// One endpoint only.
    Only(K),
}

impl<K: PartialEq> Scope<K> {
    fn matches(&self, kind: &K, is_write: bool) -> bool {
        match self {
            Scope::Any => true,
            Scope::Reads => !is_write,
            Scope::Writes => is_write,
            Scope::Only(k) => k == kind,
        }
    }
}

/// One entry of the fault queue: `fault` for `times` matching requests, after letting `after`
/// matching requests through. Built with [`FaultRule::new`] and the chained setters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultRule<K> {
    pub fault: Fault,
    pub scope: Scope<K>,
    pub after: u32,
    pub times: u32,
}

impl<K> FaultRule<K> {
    /// The next request of any kind gets `fault`.
    pub fn new(fault: Fault) -> Self {
        Self {
            fault,
            scope: Scope::Any,
            after: 0,
            times: 1,
        }
    }
    /// Only requests matching `scope` are affected (and counted for `after`).
    pub fn on(mut self, scope: Scope<K>) -> Self {
        self.scope = scope;
        self
    }
    /// Let `n` matching requests through first.
    pub fn after(mut self, n: u32) -> Self {
        self.after = n;
        self
    }
    /// Affect `n` matching requests (default 1).
    pub fn times(mut self, n: u32) -> Self {
        self.times = n;
        self
    }
}

struct FaultQueue<K> {
    rules: VecDeque<FaultRule<K>>,
    fired: u64,
}

/// Shared handle to an emulator's fault queue; clones refer to the same queue.
pub struct Faults<K>(Arc<Mutex<FaultQueue<K>>>);

impl<K> Clone for Faults<K> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

impl<K> Default for Faults<K> {
    fn default() -> Self {
        Self(Arc::new(Mutex::new(FaultQueue {
            rules: VecDeque::new(),
            fired: 0,
        })))
    }
}

impl<K: PartialEq + Clone> Faults<K> {
    fn lock(&self) -> MutexGuard<'_, FaultQueue<K>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
    /// The next `n` requests, whatever they are, get `fault`.
    pub fn fail_next(&self, n: u32, fault: Fault) {
        self.add(FaultRule::new(fault).times(n));
    }
    /// Append a rule to the queue.
    pub fn add(&self, rule: FaultRule<K>) {
        if rule.times > 0 {
            self.lock().rules.push_back(rule);
        }
    }
    /// Drop all pending rules.
    pub fn clear(&self) {
        self.lock().rules.clear();
    }
    /// How many requests the pending rules will still affect.
    pub fn pending(&self) -> u32 {
        self.lock().rules.iter().map(|r| r.times).sum()
    }
    /// How many faults have fired so far.
    pub fn fired(&self) -> u64 {
        self.lock().fired
    }
    /// The fault for this request, if any (consumes it).
    pub fn take(&self, kind: &K, is_write: bool) -> Option<Fault> {
        let mut q = self.lock();
        let mut hit = None;
        for (i, rule) in q.rules.iter_mut().enumerate() {
            if !rule.scope.matches(kind, is_write) {
                continue;
            }
            if rule.after > 0 {
                rule.after -= 1;
                continue;
            }
            rule.times -= 1;
            hit = Some((i, rule.fault.clone(), rule.times == 0));
            break;
        }
        let (i, fault, exhausted) = hit?;
        if exhausted {
            q.rules.remove(i);
        }
        q.fired += 1;
        Some(fault)
    }
}

/// `{"detail": detail}` with the given status.
pub fn json_error(status: StatusCode, detail: impl Into<String>) -> Response {
    (status, Json(json!({ "detail": detail.into() }))).into_response()
}

/// The page nginx shows when the service behind it fails.
pub fn html_error(status: StatusCode) -> Response {
    let title = format!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("Error")
    );
    let body = format!(
        "<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    );
    let mut resp = (status, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    resp
}

fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// Checks `Authorization: Bearer <token>`; the error is the 401 response to send (DRF wording).
#[allow(clippy::result_large_err)] // the error is the response itself, built once per bad request
pub fn check_bearer(headers: &HeaderMap, token: &str) -> Result<(), Response> {
    let unauthorized = |detail: &str| {
        let mut resp = json_error(StatusCode::UNAUTHORIZED, detail);
        resp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        resp
    };
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(unauthorized(
            "Authentication credentials were not provided.",
        ));
    };
    let value = value.to_str().unwrap_or("");
    let mut parts = value.splitn(2, ' ');
    let scheme = parts.next().unwrap_or("");
    let given = parts.next().unwrap_or("").trim();
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(unauthorized(
            "Invalid authorization header. Expected 'Bearer <token>'.",
        ));
    }
    if given.is_empty() {
        return Err(unauthorized(
            "Invalid token header. No credentials provided.",
        ));
    }
    if given != token {
        return Err(unauthorized("Invalid token."));
    }
    Ok(())
}

/// Runs one request through latency and the fault queue. `work` is the whole handling of the
/// request (token check included); it is synchronous, so a write is either fully applied or not
/// at all, whatever the client does meanwhile.
pub async fn respond<K: PartialEq + Clone>(
    faults: &Faults<K>,
    kind: &K,
    is_write: bool,
    conn: &Conn,
    latency: Duration,
    work: impl FnOnce() -> Response,
) -> Response {
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let injected = |code: u16| json_error(status(code), format!("Injected fault: HTTP {code}"));
    match faults.take(kind, is_write) {
        None => work(),
        Some(Fault::Status(code)) => injected(code),
        Some(Fault::Html(code)) => html_error(status(code)),
        Some(Fault::Drop) => {
            conn.kill();
            injected(500)
        }
        Some(Fault::Slow(delay)) => {
            let resp = work();
            tokio::time::sleep(delay).await;
            resp
        }
        Some(Fault::ApplyThenStatus(code)) => {
            let _ = work();
            injected(code)
        }
        Some(Fault::ApplyThenDrop) => {
            let _ = work();
            conn.kill();
            injected(500)
        }
    }
}

/// The connection a request came in on (axum `ConnectInfo`); [`Conn::kill`] makes the server
/// close it without writing the response.
#[derive(Clone, Debug)]
pub struct Conn {
    pub remote: SocketAddr,
    killed: Arc<AtomicBool>,
}

impl Conn {
    fn new(remote: SocketAddr) -> Self {
        Self {
            remote,
            killed: Arc::new(AtomicBool::new(false)),
        }
    }
    /// Every further read or write on this connection fails, so hyper drops it.
    pub fn kill(&self) {
        self.killed.store(true, Ordering::SeqCst);
    }
}

/// A TCP stream that starts failing once its [`Conn`] is killed.
pub struct KillableIo {
    inner: tokio::net::TcpStream,
    killed: Arc<AtomicBool>,
}

fn killed_err() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "connection dropped by fault injection",
    )
}

impl AsyncRead for KillableIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.killed.load(Ordering::SeqCst) {
            return Poll::Ready(Err(killed_err()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for KillableIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.killed.load(Ordering::SeqCst) {
            return Poll::Ready(Err(killed_err()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.killed.load(Ordering::SeqCst) {
            return Poll::Ready(Err(killed_err()));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.killed.load(Ordering::SeqCst) {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A TCP listener whose connections can be killed from a handler.
pub struct KillableListener(pub tokio::net::TcpListener);

impl Listener for KillableListener {
    type Io = KillableIo;
    type Addr = Conn;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.0.accept().await {
                Ok((stream, remote)) => {
                    let _ = stream.set_nodelay(true);
                    let conn = Conn::new(remote);
                    let io = KillableIo {
                        inner: stream,
                        killed: Arc::clone(&conn.killed),
                    };
                    return (io, conn);
                }
                // Out of file descriptors and the like: wait and retry, as axum's own listener does.
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr().map(Conn::new)
    }
}

impl Connected<IncomingStream<'_, KillableListener>> for Conn {
    fn connect_info(stream: IncomingStream<'_, KillableListener>) -> Self {
        stream.remote_addr().clone()
    }
}

/// Serves `router` (whose handlers may extract `ConnectInfo<Conn>`) until the future is dropped.
pub async fn serve(listener: tokio::net::TcpListener, router: Router) -> io::Result<()> {
    let make = router.into_make_service_with_connect_info::<Conn>();
    axum::serve(KillableListener(listener), make).await
}

/// An emulator running on its own thread; stops on [`ServerThread::stop`] or drop.
pub struct ServerThread {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ServerThread {
    /// Binds 127.0.0.1 on a free port and serves `router` there.
    pub fn spawn(name: &str, router: Router) -> io::Result<Self> {
        let std_listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let listener = {
            let _guard = runtime.enter();
            tokio::net::TcpListener::from_std(std_listener)?
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                runtime.block_on(async move {
                    tokio::select! {
                        _ = serve(listener, router) => {}
                        _ = stopped => {}
                    }
                });
                // Dropping the runtime here cancels in-flight requests and closes every connection.
            })?;
        Ok(Self {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops serving and waits for the thread; idempotent.
    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Resolves on Ctrl-C or SIGTERM (never, where signals cannot be listened to): how a process
/// that only serves emulators (`etl emulate`) knows to stop.
pub async fn until_interrupted() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// A reqwest client for tests. reqwest is built with `rustls-no-provider`, so even a plain-HTTP
/// client panics on `build()` until a rustls crypto provider is installed; install ring once.
#[cfg(test)]
pub(crate) fn test_http_client(timeout: Duration) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .expect("reqwest client")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Debug, PartialEq)]
    enum K {
        A,
        B,
    }

    #[test]
    fn rules_fire_in_order_with_scope_after_and_times() {
        let f: Faults<K> = Faults::default();
        f.add(
            FaultRule::new(Fault::Status(500))
                .on(Scope::Only(K::B))
                .after(1)
                .times(2),
        );
        f.add(FaultRule::new(Fault::Drop).on(Scope::Writes));
        assert_eq!(f.pending(), 3);
        assert_eq!(f.take(&K::A, false), None);
        assert_eq!(f.take(&K::B, false), None); // counted toward `after`
        assert_eq!(f.take(&K::A, true), Some(Fault::Drop));
        assert_eq!(f.take(&K::B, true), Some(Fault::Status(500)));
        assert_eq!(f.take(&K::B, false), Some(Fault::Status(500)));
        assert_eq!(f.take(&K::B, true), None);
        assert_eq!((f.pending(), f.fired()), (0, 3));
        f.fail_next(2, Fault::Html(502));
        f.clear();
        assert_eq!(f.take(&K::A, false), None);
    }

    #[test]
    fn bearer_check() {
        let mut h = HeaderMap::new();
        assert!(check_bearer(&h, "t").is_err());
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer x"));
        assert!(check_bearer(&h, "t").is_err());
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Token t"));
        assert!(check_bearer(&h, "t").is_err());
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer t"));
        assert!(check_bearer(&h, "t").is_ok());
    }
}

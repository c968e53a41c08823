//! The one server handle of every emulator: a router served on 127.0.0.1 from its own thread,
//! with connections a fault can kill, a request counter, and shutdown on drop.

use std::{
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use axum::{
    Router,
    extract::connect_info::Connected,
    serve::{IncomingStream, Listener},
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

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
    requests: Arc<AtomicU64>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ServerThread {
    /// Binds 127.0.0.1 on a free port and serves `router` there.
    pub fn spawn(name: &str, router: Router) -> io::Result<Self> {
        Self::spawn_at(name, SocketAddr::from(([127, 0, 0, 1], 0)), router)
    }

    /// Binds `addr` and serves `router` there.
    pub fn spawn_at(name: &str, addr: SocketAddr, router: Router) -> io::Result<Self> {
        let requests = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&requests);
        let router = router.layer(axum::middleware::map_request(
            move |req: axum::extract::Request| {
                counter.fetch_add(1, Ordering::Relaxed);
                std::future::ready(req)
            },
        ));
        let std_listener = std::net::TcpListener::bind(addr)?;
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
            requests,
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

    /// HTTP requests received so far, whatever their fate.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
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

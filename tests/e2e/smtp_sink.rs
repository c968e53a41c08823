//! A minimal SMTP server that accepts and discards every message, for benchmarks: it measures
//! what the engine sends, where the Python test server (`smtp.rs`) would be the bottleneck
//! (aiosmtpd reads DATA one line at a time and parses each message).

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Default)]
pub struct Received {
    pub messages: AtomicU64,
    pub bytes: AtomicU64,
}

pub struct SmtpSink {
    pub port: u16,
    pub received: Arc<Received>,
}

impl SmtpSink {
    pub fn start() -> SmtpSink {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(Received::default());
        let counts = received.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let counts = counts.clone();
                std::thread::spawn(move || {
                    let _ = session(stream, &counts);
                });
            }
        });
        SmtpSink { port, received }
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }
}

/// One SMTP session: every command is accepted; DATA is read up to the lone dot.
fn session(stream: TcpStream, counts: &Received) -> std::io::Result<()> {
    let mut out = stream.try_clone()?;
    let mut reader = BufReader::with_capacity(1 << 20, stream);
    out.write_all(b"220 sink ESMTP\r\n")?;
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        let command = String::from_utf8_lossy(&line).to_ascii_uppercase();
        if command.starts_with("EHLO") {
            out.write_all(b"250-sink\r\n250-8BITMIME\r\n250 SIZE 100000000\r\n")?;
        } else if command.starts_with("DATA") {
            out.write_all(b"354 go on\r\n")?;
            counts
                .bytes
                .fetch_add(read_data(&mut reader)?, Ordering::Relaxed);
            counts.messages.fetch_add(1, Ordering::Relaxed);
            out.write_all(b"250 accepted\r\n")?;
        } else if command.starts_with("QUIT") {
            return out.write_all(b"221 bye\r\n");
        } else {
            out.write_all(b"250 OK\r\n")?;
        }
    }
}

/// Bytes of a message up to `\r\n.\r\n`, read a buffer at a time.
fn read_data(reader: &mut BufReader<TcpStream>) -> std::io::Result<u64> {
    const END: &[u8] = b"\r\n.\r\n";
    let (mut total, mut tail) = (0u64, Vec::<u8>::new());
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Ok(total);
        }
        // The end marker may straddle two buffers: look in the last bytes of the previous one too.
        let mut window = std::mem::take(&mut tail);
        let start = window.len();
        window.extend_from_slice(&buf[..buf.len().min(END.len())]);
        let found = window
            .windows(END.len())
            .position(|w| w == END)
            .map(|p| p + END.len() - start)
            .or_else(|| {
                buf.windows(END.len())
                    .position(|w| w == END)
                    .map(|p| p + END.len())
            });
        match found {
            Some(n) => {
                reader.consume(n);
                return Ok(total + n as u64);
            }
            None => {
                let n = buf.len();
                tail = buf[n.saturating_sub(END.len() - 1)..].to_vec();
                total += n as u64;
                reader.consume(n);
            }
        }
    }
}

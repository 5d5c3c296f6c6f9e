//! `mswitch capture SWITCH PORT`: a copy of a port's frames while traffic
//! flows, as a pcap stream (`-w FILE` or `-w -`) that tcpdump and
//! Wireshark read, or one line per frame.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::PathBuf;

use super::client::Ctl;
use super::proto::{Request, Response};
use crate::switch::capture::{self, Record};
use crate::wire::MacAddr;

#[derive(clap::Args, Debug)]
pub struct CaptureArgs {
    /// The switch.
    pub switch: String,
    /// The port (its name).
    pub port: String,
    /// Write a pcap stream to FILE (`-` for standard output) instead of a
    /// line per frame.
    #[arg(short = 'w', value_name = "FILE")]
    pub write: Option<String>,
    /// Frames the port received (`in`), was sent (`out`), or both.
    #[arg(long, default_value = "both")]
    pub direction: String,
    /// Stop after COUNT frames.
    #[arg(short = 'c', value_name = "COUNT")]
    pub count: Option<u64>,
    /// Keep at most SNAPLEN bytes of each frame (default 262144).
    #[arg(short = 's', value_name = "SNAPLEN")]
    pub snaplen: Option<u32>,
    /// Control socket path.
    #[arg(long)]
    pub ctl: Option<PathBuf>,
}

/// What a capture saw, for its closing line.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub captured: u64,
    pub lost: u64,
}

/// Runs a capture to its end: `-c` frames, the port or daemon going, or
/// the output closing (a reader that went away ends it cleanly).
pub fn run(a: &CaptureArgs) -> Result<Summary, String> {
    // Checked here too, for the error before any connection.
    a.direction.parse::<capture::Direction>()?;
    let stream = Ctl::connect(a.ctl.as_deref())?.into_stream();
    let req = Request::Capture {
        switch: a.switch.clone(),
        port: a.port.clone(),
        direction: a.direction.clone(),
        snaplen: a.snaplen,
    };
    let mut line = serde_json::to_string(&req).map_err(|e| e.to_string())?;
    line.push('\n');
    (&stream)
        .write_all(line.as_bytes())
        .map_err(|e| format!("control socket: {e}"))?;
    let mut r = BufReader::new(&stream);
    let mut answer = String::new();
    r.read_line(&mut answer)
        .map_err(|e| format!("control socket: {e}"))?;
    let resp: Response = serde_json::from_str(answer.trim_end())
        .map_err(|_| "the daemon closed the connection".to_string())?;
    if !resp.ok {
        return Err(resp.error.unwrap_or_else(|| "capture failed".into()));
    }
    let snaplen = resp.data["snaplen"].as_u64().unwrap_or(262_144) as u32;
    let mut out = Output::open(a.write.as_deref(), snaplen)?;
    let mut sum = Summary::default();
    let mut chunk = Vec::new();
    loop {
        let mut head = [0u8; 12];
        match r.read_exact(&mut head) {
            Ok(()) => {}
            // The port or the daemon went.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(format!("control socket: {e}")),
        }
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        sum.lost = u64::from_le_bytes(head[4..12].try_into().unwrap_or([0; 8]));
        if len > capture::BUFFER {
            return Err(format!("bad capture stream: a chunk of {len} bytes"));
        }
        chunk.resize(len, 0);
        r.read_exact(&mut chunk)
            .map_err(|e| format!("control socket: {e}"))?;
        let records = capture::records(&chunk).map_err(|e| format!("bad capture stream: {e}"))?;
        for rec in records {
            if a.count.is_some_and(|c| sum.captured >= c) {
                break;
            }
            match out.write(&rec) {
                Ok(()) => sum.captured += 1,
                // Whoever reads our output went away: a clean end.
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(sum),
                Err(e) => return Err(format!("writing the capture: {e}")),
            }
        }
        if let Err(e) = out.flush()
            && e.kind() != io::ErrorKind::BrokenPipe
        {
            return Err(format!("writing the capture: {e}"));
        }
        if a.count.is_some_and(|c| sum.captured >= c) {
            break;
        }
    }
    Ok(sum)
}

/// Where frames go: a pcap stream, or a line each.
enum Output {
    Pcap(Box<dyn Write>),
    Lines(io::Stdout),
}

impl Output {
    fn open(write: Option<&str>, snaplen: u32) -> Result<Output, String> {
        let Some(w) = write else {
            return Ok(Output::Lines(io::stdout()));
        };
        let mut f: Box<dyn Write> = if w == "-" {
            Box::new(io::BufWriter::new(io::stdout()))
        } else {
            Box::new(io::BufWriter::new(
                std::fs::File::create(w).map_err(|e| format!("cannot create {w}: {e}"))?,
            ))
        };
        f.write_all(&capture::pcap_header(snaplen))
            .and_then(|()| f.flush())
            .map_err(|e| format!("writing {w}: {e}"))?;
        Ok(Output::Pcap(f))
    }

    fn write(&mut self, r: &Record<'_>) -> io::Result<()> {
        match self {
            Output::Pcap(f) => {
                let mut h = [0u8; capture::RECORD_HEADER];
                h[0..4].copy_from_slice(&r.sec.to_le_bytes());
                h[4..8].copy_from_slice(&r.nsec.to_le_bytes());
                h[8..12].copy_from_slice(&(r.data.len() as u32).to_le_bytes());
                h[12..16].copy_from_slice(&r.orig_len.to_le_bytes());
                f.write_all(&h)?;
                f.write_all(r.data)
            }
            Output::Lines(o) => writeln!(o.lock(), "{}", line(r)),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Output::Pcap(f) => f.flush(),
            Output::Lines(o) => o.flush(),
        }
    }
}

/// One frame as a line: time of day (UTC), addresses, EtherType, length.
pub fn line(r: &Record<'_>) -> String {
    let day = r.sec % 86_400;
    let (h, m, s) = (day / 3600, day / 60 % 60, day % 60);
    let d = r.data;
    let mac = |at: usize| {
        d.get(at..at + 6)
            .and_then(|b| <[u8; 6]>::try_from(b).ok())
            .map_or_else(|| "?".to_string(), |b| MacAddr(b).to_string())
    };
    let ether = match d.get(12..14) {
        Some(t) => format!("ethertype 0x{:02x}{:02x}", t[0], t[1]),
        None => "truncated".into(),
    };
    format!(
        "{h:02}:{m:02}:{s:02}.{:06} {} > {}, {ether}, length {}",
        r.nsec / 1000,
        mac(6),
        mac(0),
        r.orig_len
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_line_reads_like_tcpdump_e() {
        let mut f = vec![0xffu8; 6];
        f.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0x08, 0x06]);
        let r = Record {
            sec: 3600 + 61,
            nsec: 5_000,
            orig_len: 60,
            data: &f,
        };
        assert_eq!(
            line(&r),
            "01:01:01.000005 02:00:00:00:00:01 > ff:ff:ff:ff:ff:ff, ethertype 0x0806, length 60"
        );
    }
}

//! The `mswitch` command line, as a library entry point: `src/main.rs`
//! calls [`main`], and a program that adds its own modules calls the same
//! entry (see [`crate::module`]), so it gets every command mswitch has.
//!
//! The code below names the crate `mswitch::`, as it did when it was the
//! binary's `main.rs` (`use crate as mswitch`), so that changes made to the
//! old file apply here unchanged.

use crate as mswitch;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use mswitch::bench::{self, Case, Pattern};
use mswitch::control::cli::{CtlCmd, parse_config_lines};
use mswitch::control::client::Ctl;
use mswitch::control::daemon::{self, ctl_path};
use mswitch::control::limits::LimitArgs;

#[derive(Parser)]
#[command(name = "mswitch", version, about = "A fast, modular software switch")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Measure the switch in one process with built-in generator and sink
    /// ports. With no case options it runs the standard suite.
    Bench(BenchArgs),
    /// List the processing modules.
    Modules,
    /// Host switches and serve the control socket until SIGINT/SIGTERM.
    Daemon {
        /// Control socket path (default /run/mswitch/mswitch.sock for root; MSWITCH_CTL overrides).
        #[arg(long)]
        ctl: Option<PathBuf>,
        /// File of `ctl` commands (one per line, without `mswitch ctl`) run at start.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Serve Prometheus metrics on PORT (loopback) or ADDR:PORT.
        #[arg(long, value_name = "ADDR")]
        metrics: Option<String>,
        /// Record switches, ports, modules and OpenFlow settings made with
        /// `ctl` in FILE after each change, and restore them at start (then
        /// --config runs only if FILE does not exist yet).
        #[arg(long, value_name = "FILE")]
        state: Option<PathBuf>,
        /// Keys of ssl:/pssl: OpenFlow connections.
        #[command(flatten)]
        tls: mswitch::stream::TlsArgs,
        #[command(flatten)]
        sockets: SocketArgs,
        #[command(flatten)]
        log: LogArgs,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Copy a port's frames while traffic flows, as pcap (`-w -` for
    /// tcpdump -r -) or a line per frame.
    Capture(mswitch::control::capture::CaptureArgs),
    /// Live per-port rates, drops and worker load of a running daemon.
    Top(mswitch::control::top::TopArgs),
    /// Generate or sink traffic on a port of a running switch.
    #[command(name = "pkt-gen")]
    PktGen(mswitch::pktgen::PktGenArgs),
    /// Control a running daemon.
    Ctl {
        /// Control socket path.
        #[arg(long)]
        ctl: Option<PathBuf>,
        #[command(subcommand)]
        cmd: CtlCmd,
    },
    /// Run one switch in the foreground, with the same control socket.
    Run(RunArgs),
    /// Stand in for Open vSwitch's ovs-vswitchd: read the bridges from its
    /// ovsdb-server (configured with ovs-vsctl) and run them.
    Vswitchd(VswitchdArgs),
}

/// The options Open vSwitch's start scripts give ovs-vswitchd.
#[derive(clap::Args)]
struct VswitchdArgs {
    /// The database: unix:PATH, tcp:IP:PORT or ssl:IP:PORT (default
    /// unix:$OVS_RUNDIR/db.sock).
    database: Option<String>,
    /// Write the process id to FILE (default $OVS_RUNDIR/ovs-vswitchd.pid).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "", value_name = "FILE")]
    pidfile: Option<String>,
    /// Run in the background once set up (the parent exits then).
    #[arg(long)]
    detach: bool,
    /// Run under a monitor process that starts the daemon again when it
    /// crashes (as ovs-vswitchd's --monitor).
    #[arg(long)]
    monitor: bool,
    /// Accepted for ovs-ctl.
    #[arg(long)]
    no_chdir: bool,
    /// Log to FILE (default $OVS_LOGDIR/ovs-vswitchd.log) instead of
    /// standard error.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "", value_name = "FILE")]
    log_file: Option<String>,
    /// Accepted for ovs-ctl.
    #[arg(long)]
    mlockall: bool,
    /// Open vSwitch's log levels (-vconsole:emer...): accepted.
    #[arg(short = 'v', long = "verbose", num_args = 0..=1, default_missing_value = "")]
    verbose: Vec<String>,
    /// Where ovs-appctl reaches the daemon (default
    /// $OVS_RUNDIR/ovs-vswitchd.PID.ctl).
    #[arg(long, value_name = "PATH")]
    unixctl: Option<PathBuf>,
    /// mswitch's own control socket (default $OVS_RUNDIR/mswitch.sock).
    #[arg(long)]
    ctl: Option<PathBuf>,
    /// Serve Prometheus metrics on PORT (loopback) or ADDR:PORT.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<String>,
    /// Keys of ssl: database and OpenFlow connections (the database's SSL
    /// table overrides them once read, as in Open vSwitch).
    #[command(flatten)]
    tls: mswitch::stream::TlsArgs,
    #[command(flatten)]
    limits: LimitArgs,
}

/// Who may use the daemon's sockets.
#[derive(clap::Args)]
struct SocketArgs {
    /// Let group NAME (or number) use the control and OpenFlow sockets:
    /// the daemon's directory becomes 0750 and its sockets 0660, owned by
    /// that group (default: the daemon's user only, 0700 and 0600).
    #[arg(long, value_name = "NAME")]
    group: Option<String>,
}

impl SocketArgs {
    fn apply(&self) -> Result<(), String> {
        let gid = self
            .group
            .as_deref()
            .map(mswitch::control::perms::parse_group)
            .transpose()?;
        mswitch::control::perms::set_group(gid);
        Ok(())
    }
}

/// Logging options of the long-running commands.
#[derive(clap::Args)]
struct LogArgs {
    /// More detail in the log: -v debug, -vv trace (RUST_LOG overrides).
    #[arg(short = 'v', action = clap::ArgAction::Count)]
    verbose: u8,
    /// Log to FILE (appending) instead of standard error; reopened on
    /// SIGHUP, for logrotate.
    #[arg(long, value_name = "FILE")]
    log_file: Option<PathBuf>,
}

impl LogArgs {
    fn init(&self) -> Result<(), String> {
        if let Some(f) = &self.log_file {
            mswitch::log::to_file(f)?;
        }
        mswitch::log::init(self.verbose);
        Ok(())
    }
}

#[derive(clap::Args)]
struct RunArgs {
    /// Module spec NAME[:ARGS].
    #[arg(long, default_value = "learn")]
    module: String,
    /// A port to attach (repeat); ports are numbered 1, 2, 3... in order.
    #[arg(long = "port")]
    ports: Vec<String>,
    /// The switch's name.
    #[arg(long, default_value = "sw0")]
    name: String,
    #[arg(long, default_value_t = 1)]
    workers: usize,
    #[arg(long)]
    batch: Option<usize>,
    /// Workers never sleep.
    #[arg(long)]
    busy_poll: bool,
    /// Control socket path.
    #[arg(long)]
    ctl: Option<PathBuf>,
    /// A port's VLAN settings for NORMAL (flow module), as PORT=SETTINGS
    /// with the port's name or number: `--vlan p1="tag=10"` (repeat).
    #[arg(long = "vlan", value_name = "PORT=SETTINGS")]
    vlans: Vec<String>,
    /// Serve Prometheus metrics on PORT (loopback) or ADDR:PORT.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<String>,
    #[command(flatten)]
    log: LogArgs,
    #[command(flatten)]
    openflow: mswitch::control::cli::OpenFlowArgs,
    /// Keys of ssl:/pssl: OpenFlow connections.
    #[command(flatten)]
    tls: mswitch::stream::TlsArgs,
    #[command(flatten)]
    limits: LimitArgs,
    #[command(flatten)]
    sockets: SocketArgs,
}

#[derive(clap::Args)]
struct BenchArgs {
    /// Module spec NAME[:ARGS] (see `mswitch modules`); a bare `dummy` uses the pattern's map.
    #[arg(long)]
    module: Option<String>,
    /// Traffic pattern.
    #[arg(long, value_enum)]
    pattern: Option<Pattern>,
    /// Ports that carry traffic.
    #[arg(long)]
    ports: Option<usize>,
    /// Frame length in bytes, without FCS (60 is a minimum-size frame).
    #[arg(long)]
    size: Option<usize>,
    /// Most packets a worker takes from one port per pass (1..=1024).
    #[arg(long)]
    batch: Option<usize>,
    /// Forwarding worker threads.
    #[arg(long)]
    workers: Option<usize>,
    /// Extra attached ports that carry no traffic.
    #[arg(long)]
    idle_ports: Option<usize>,
    /// Seconds to measure each case (suite default 4, single case 5).
    #[arg(long)]
    duration: Option<f64>,
    /// Pin worker i to CPU i.
    #[arg(long)]
    pin: bool,
    /// Distinct flows each sender cycles through (UDP source ports).
    #[arg(long)]
    flows: Option<usize>,
    /// Print each result as one JSON object per line on stdout (progress goes to stderr).
    #[arg(long)]
    json: bool,
    /// Instead of the suite: encapsulation and decapsulation through a
    /// tunnel port on an in-memory wire, each beside plain forwarding of
    /// the same frames (dummy and learn, 60 and 1514 B unless --module or
    /// --size; one worker; --duration seconds per phase, default 2).
    #[arg(long, value_enum, value_name = "vxlan|geneve")]
    tunnel: Option<bench::tunnel::Tunnel>,
}

/// [`main`] with more modules: registers `modules` (see
/// [`crate::module::register`]) and runs the command, so module specs and
/// `modules` know them as they know the built-in ones.
///
/// A program that brings its own module is then a few lines:
///
/// ```no_run
/// use std::process::ExitCode;
/// use std::sync::Arc;
///
/// use mswitch::module::{Batch, Module, ModuleInfo, Nanos, Verdict, Verdicts};
///
/// /// Drops everything.
/// struct Sink;
///
/// impl Module for Sink {
///     fn name(&self) -> &'static str {
///         "sink"
///     }
///     fn process(&self, _: &mut Batch<'_>, out: &mut Verdicts, _: Nanos) {
///         out.fill(Verdict::Drop);
///     }
/// }
///
/// static SINK: ModuleInfo = ModuleInfo {
///     name: "sink",
///     help: "drops every packet",
///     build: |_args| Ok(Arc::new(Sink)),
/// };
///
/// fn main() -> ExitCode {
///     mswitch::cli::main_with(&[&SINK])
/// }
/// ```
pub fn main_with(modules: &[&'static mswitch::module::ModuleInfo]) -> ExitCode {
    for m in modules {
        if let Err(e) = mswitch::module::register(m) {
            eprintln!("mswitch: {e}");
            return ExitCode::FAILURE;
        }
    }
    main()
}

/// Parses the process's arguments and runs the command; the exit code is
/// 0 on success, 2 for bad arguments, 1 for a command that failed (its
/// error printed as one line on standard error).
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) if !e.use_stderr() => {
            // --help and --version
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let text = e.render().to_string();
            let line = text
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("invalid arguments");
            eprintln!("mswitch: {}", line.trim_start_matches("error: "));
            return ExitCode::from(2);
        }
    };
    // Daemons set up their logging from their options (vswitchd after it
    // has pointed standard error at its log file); the others log at info.
    if !matches!(cli.cmd, Cmd::Daemon { .. } | Cmd::Run(_) | Cmd::Vswitchd(_)) {
        mswitch::log::init(0);
    }
    let r = match cli.cmd {
        Cmd::Bench(a) => run_bench(a),
        Cmd::Modules => {
            for m in mswitch::module::all() {
                println!("{:8} {}", m.name, m.help);
            }
            Ok(())
        }
        Cmd::Daemon {
            ctl,
            config,
            metrics,
            state,
            tls,
            sockets,
            log,
            limits,
        } => log
            .init()
            .and_then(|()| sockets.apply())
            .and_then(|()| run_daemon(ctl, config, metrics, state, &tls, &limits)),
        Cmd::PktGen(a) => mswitch::pktgen::run(&a).map(|_| ()),
        Cmd::Top(a) => mswitch::control::top::run(&a),
        Cmd::Capture(a) => mswitch::control::capture::run(&a).map(|s| {
            eprintln!(
                "mswitch capture: {} frame(s) captured, {} lost",
                s.captured, s.lost
            );
        }),
        Cmd::Ctl { ctl, cmd } => run_ctl(ctl, cmd),
        Cmd::Run(a) => a
            .log
            .init()
            .and_then(|()| a.sockets.apply())
            .and_then(|()| run_switch(&a)),
        Cmd::Vswitchd(a) => run_vswitchd(a),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mswitch: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run_bench(a: BenchArgs) -> Result<(), String> {
    let duration = match a.duration {
        Some(d) if !(d > 0.0 && d <= 3600.0) => {
            return Err("--duration must be more than 0 and at most 3600 seconds".into());
        }
        Some(d) => Some(Duration::from_secs_f64(d)),
        None => None,
    };
    if let Some(t) = a.tunnel {
        return run_bench_tunnel(t, &a, duration);
    }
    let single = a.module.is_some()
        || a.pattern.is_some()
        || a.ports.is_some()
        || a.size.is_some()
        || a.batch.is_some()
        || a.workers.is_some()
        || a.idle_ports.is_some()
        || a.flows.is_some();
    let cases = if single {
        let d = Case::default();
        let pattern = a.pattern.unwrap_or(d.pattern);
        let duration = duration.unwrap_or(d.duration);
        vec![Case {
            module: a.module.unwrap_or(d.module),
            pattern,
            ports: a
                .ports
                .unwrap_or(if pattern == Pattern::OneToOne { 2 } else { 3 }),
            size: a.size.unwrap_or(d.size),
            batch: a.batch.unwrap_or(d.batch),
            workers: a.workers.unwrap_or(d.workers),
            idle_ports: a.idle_ports.unwrap_or(0),
            baseline_duration: d.baseline_duration.min(duration),
            duration,
            pin: a.pin,
            flows: a.flows.unwrap_or(1),
            ..d
        }]
    } else {
        bench::standard_suite(duration.unwrap_or(Duration::from_secs(4)), a.pin)
    };
    for c in &cases {
        c.validate().map_err(|e| e.to_string())?;
    }
    let json = a.json;
    let say = bench_say(json);
    say(&format!(
        "mswitch bench: {} case(s) on {} CPU(s); threads: the switch's forwarding workers (generator and sink ports are polled inline by them), plus this reporting thread, which sleeps",
        cases.len(),
        mswitch::sys::online_cpus()
    ));
    let mut results = Vec::new();
    for c in &cases {
        say(&format!(
            "== module {} pattern {} size {} B batch {} ports {} (+{} idle) workers {}{}",
            c.module,
            c.pattern.name(),
            c.size,
            c.batch,
            c.ports,
            c.idle_ports,
            c.workers,
            if c.pin { " pinned" } else { "" }
        ));
        let r = bench::run_case(c, &mut |l| say(l)).map_err(|e| e.to_string())?;
        say(&format!("result: {}", bench::summary(&r)));
        if json {
            println!("{}", serde_json::to_string(&r).map_err(|e| e.to_string())?);
        }
        results.push(r);
    }
    if results.len() > 1 {
        say("summary:");
        for r in &results {
            say(&format!("  {}", bench::summary(r)));
        }
    }
    Ok(())
}

/// Where `mswitch bench` writes: progress to stdout, or to stderr when the
/// results go to stdout as JSON.
fn bench_say(json: bool) -> impl Fn(&str) {
    move |s: &str| {
        if json {
            eprintln!("{s}");
        } else {
            println!("{s}");
        }
    }
}

/// `mswitch bench --tunnel`: the tunnel suite, or the one module or size asked for.
fn run_bench_tunnel(
    tunnel: bench::tunnel::Tunnel,
    a: &BenchArgs,
    duration: Option<Duration>,
) -> Result<(), String> {
    if a.pattern.is_some()
        || a.ports.is_some()
        || a.workers.is_some()
        || a.idle_ports.is_some()
        || a.flows.is_some()
    {
        return Err(
            "--tunnel runs one worker and two ports: --pattern, --ports, --workers, --idle-ports and --flows do not apply"
                .into(),
        );
    }
    let d = Case::default();
    let base = Case {
        duration: duration.unwrap_or(Duration::from_secs(2)),
        batch: a.batch.unwrap_or(d.batch),
        pin: a.pin,
        ..d
    };
    let cases: Vec<_> = bench::tunnel::suite(tunnel, &base)
        .into_iter()
        .filter(|c| a.module.as_ref().is_none_or(|m| *m == c.base.module))
        .filter(|c| a.size.is_none_or(|s| s == c.base.size))
        .collect();
    let cases = if cases.is_empty() {
        // A module or size outside the suite: that one case.
        let mut c = bench::tunnel::suite(tunnel, &base).swap_remove(0);
        c.base.module = a.module.clone().unwrap_or(c.base.module);
        c.base.size = a.size.unwrap_or(c.base.size);
        vec![c]
    } else {
        cases
    };
    for c in &cases {
        c.validate().map_err(|e| e.to_string())?;
    }
    let say = bench_say(a.json);
    say(&format!(
        "mswitch bench --tunnel {}: {} case(s), each plain / encap / decap for {:.1} s, one worker",
        tunnel.proto().name(),
        cases.len(),
        base.duration.as_secs_f64()
    ));
    let mut results = Vec::new();
    for c in &cases {
        say(&format!(
            "== {} module {} size {} B batch {}",
            tunnel.proto().name(),
            c.base.module,
            c.base.size,
            c.base.batch
        ));
        let r = bench::tunnel::run_case(c, &mut |l| say(l)).map_err(|e| e.to_string())?;
        say(&format!("result: {}", bench::tunnel::summary(&r)));
        if a.json {
            println!("{}", serde_json::to_string(&r).map_err(|e| e.to_string())?);
        }
        results.push(r);
    }
    if results.len() > 1 {
        say("summary:");
        for r in &results {
            say(&format!("  {}", bench::tunnel::summary(r)));
        }
    }
    Ok(())
}

/// `--metrics`: serves the daemon's counters to Prometheus, if asked.
fn start_metrics(d: &std::sync::Arc<daemon::Daemon>, addr: Option<&str>) -> Result<(), String> {
    if let Some(a) = addr {
        let at = d.start_metrics(a)?;
        eprintln!("mswitch: metrics on http://{at}/metrics");
    }
    Ok(())
}

fn run_daemon(
    ctl: Option<PathBuf>,
    config: Option<PathBuf>,
    metrics: Option<String>,
    state: Option<PathBuf>,
    tls: &mswitch::stream::TlsArgs,
    limits: &LimitArgs,
) -> Result<(), String> {
    let limits = limits.limits()?;
    let file = config
        .as_ref()
        .map(|f| f.display().to_string())
        .unwrap_or_default();
    let reqs = match &config {
        Some(f) => {
            let text =
                std::fs::read_to_string(f).map_err(|e| format!("cannot read {file}: {e}"))?;
            parse_config_lines(&text, &file)?
        }
        None => Vec::new(),
    };
    let path = ctl_path(ctl.as_deref());
    daemon::run_foreground(&path, |d| {
        d.set_limits(limits);
        d.tls().set(tls.files());
        let mut restored = false;
        if let Some(f) = &state {
            let r = d.use_state(f)?;
            for s in &r.skipped {
                tracing::warn!("state file {}: {s}", f.display());
            }
            if r.found {
                tracing::info!(
                    "state file {}: {} setting(s) restored, {} skipped{}",
                    f.display(),
                    r.done,
                    r.skipped.len(),
                    if config.is_some() {
                        "; --config not run"
                    } else {
                        ""
                    }
                );
            }
            restored = r.found;
        }
        d.state_batch(|| {
            for (line, r) in reqs.into_iter().filter(|_| !restored) {
                let resp = d.handle(r);
                if !resp.ok {
                    return Err(format!("{file}:{line}: {}", resp.error.unwrap_or_default()));
                }
            }
            Ok(())
        })?;
        start_metrics(d, metrics.as_deref())?;
        eprintln!("mswitch: daemon listening on {}", path.display());
        Ok(())
    })
}

fn run_ctl(ctl: Option<PathBuf>, cmd: CtlCmd) -> Result<(), String> {
    let mut c = Ctl::connect(ctl.as_deref())?;
    let data = c.request(&cmd.request())?;
    // A reader that goes away early (`| head`) ends the command quietly,
    // as with other Unix tools.
    use std::io::Write;
    match std::io::stdout()
        .lock()
        .write_all(cmd.render(&data).as_bytes())
    {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(format!("stdout: {e}")),
        _ => Ok(()),
    }
}

fn run_switch(a: &RunArgs) -> Result<(), String> {
    let (module, ports, name) = (&a.module, &a.ports, &a.name);
    let path = ctl_path(a.ctl.as_deref());
    let limits = a.limits.limits()?;
    daemon::run_foreground(&path, |d| {
        d.set_limits(limits);
        d.tls().set(a.tls.files());
        // Controllers and listeners come after the ports and their VLANs:
        // a controller's first look (features, port descriptions) sees
        // the switch whole. Until then only the management socket answers.
        let of = a.openflow.opts();
        let is_flow = module.split(':').next() == Some("flow");
        let early = if is_flow {
            mswitch::control::proto::OpenFlowOpts {
                no_local: of.no_local,
                ..Default::default()
            }
        } else {
            // Refused there, with the reason.
            of.clone()
        };
        d.create(name, module, a.workers, a.batch, a.busy_poll, &early)?;
        for (i, spec) in ports.iter().enumerate() {
            let r = d.attach(name, spec, Some(i as u32 + 1))?;
            if let Some(note) = r["note"].as_str() {
                eprintln!("mswitch: {note}");
            }
        }
        for v in &a.vlans {
            let (port, settings) = v
                .split_once('=')
                .ok_or_else(|| format!("--vlan '{v}': expected PORT=SETTINGS"))?;
            d.set_vlan(name, port, settings)?;
        }
        start_metrics(d, a.metrics.as_deref())?;
        if is_flow && !of.is_empty() {
            let l = d.set_openflow(name, &of, false)?;
            if !l.is_empty() {
                eprintln!("mswitch: OpenFlow on {}", l.join(", "));
            }
        }
        eprintln!(
            "mswitch: switch {name} (module {module}, {} port(s)) running; control socket {}",
            ports.len(),
            path.display()
        );
        Ok(())
    })
}

fn run_vswitchd(a: VswitchdArgs) -> Result<(), String> {
    use mswitch::control::vswitchd;
    let run_dir = vswitchd::run_dir();
    let remote: mswitch::ovsdb::Remote = a
        .database
        .clone()
        .unwrap_or_else(vswitchd::default_db)
        .parse()?;
    // Made (0700) or checked as the control socket's directory is: never
    // left open by the umask, never someone else's.
    mswitch::control::perms::prepare_dir(&run_dir, false)?;
    let pidfile = a.pidfile.as_deref().map(|p| {
        if p.is_empty() {
            run_dir.join("ovs-vswitchd.pid")
        } else {
            PathBuf::from(p)
        }
    });
    let log = a.log_file.as_deref().map(|f| {
        if f.is_empty() {
            std::env::var_os("OVS_LOGDIR")
                .map_or_else(|| PathBuf::from("/var/log/openvswitch"), PathBuf::from)
                .join("ovs-vswitchd.log")
        } else {
            PathBuf::from(f)
        }
    });
    if let Some(l) = &log
        && let Some(dir) = l.parent()
    {
        let _ = std::fs::create_dir_all(dir);
    }
    // Into the background before any thread starts and before the pidfile
    // is locked (the lock belongs to the process that stays).
    let mut detached = if a.detach {
        Some(mswitch::sys::detach().map_err(|e| format!("--detach: {e}"))?)
    } else {
        None
    };
    if log.is_some() || detached.is_some() {
        mswitch::sys::redirect_stdio(log.as_deref(), detached.is_some())
            .map_err(|e| format!("--log-file: {e}"))?;
        if let Some(l) = &log {
            mswitch::log::remember_file(l);
        }
    }
    // Open vSwitch's -v levels (-vconsole:emer...) are accepted, not mapped:
    // RUST_LOG sets mswitch's own.
    mswitch::log::init(0);
    // The monitor stays here; only the daemon it forks goes on (and takes
    // the pidfile), as many times as it crashes.
    if a.monitor {
        mswitch::sys::monitor().map_err(|e| format!("--monitor: {e}"))?;
    }
    // Held (and locked) until the daemon exits.
    let _pidfile_lock = match &pidfile {
        Some(p) => Some(
            mswitch::sys::lock_pidfile(p).map_err(|e| format!("pidfile {}: {e}", p.display()))?,
        ),
        None => None,
    };
    let ctl = a
        .ctl
        .clone()
        .unwrap_or_else(|| run_dir.join("mswitch.sock"));
    let unixctl = a
        .unixctl
        .clone()
        .unwrap_or_else(|| run_dir.join(format!("ovs-vswitchd.{}.ctl", std::process::id())));
    let limits = a.limits.limits()?;
    let r = daemon::run_foreground(&ctl, |d| {
        d.set_limits(limits);
        d.set_run_dir(&run_dir);
        d.tls().set(a.tls.files());
        vswitchd::unixctl::start(d.clone(), &unixctl)?;
        start_metrics(d, a.metrics.as_deref())?;
        let (dd, rd) = (d.clone(), run_dir.clone());
        std::thread::Builder::new()
            .name("vswitchd-db".into())
            .spawn(move || vswitchd::follow(dd, remote, rd))
            .map_err(|e| e.to_string())?;
        if let Some(dt) = detached.as_mut() {
            dt.ready();
        }
        eprintln!(
            "mswitch vswitchd: following {}; bridges' OpenFlow sockets in {}",
            a.database
                .as_deref()
                .map_or_else(vswitchd::default_db, str::to_owned),
            run_dir.display()
        );
        Ok(())
    });
    if let Some(p) = &pidfile {
        let _ = std::fs::remove_file(p);
    }
    let _ = std::fs::remove_file(&unixctl);
    r
}

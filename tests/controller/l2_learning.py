"""An L2 learning switch for OpenFlow 1.0, 1.3, 1.4 or 1.5, as an os-ken
application (`--of`; 1.3 by default).

Used by tests/controller.rs to drive mswitch with a real controller. On
switch features it installs a table-miss flow (priority 0, empty match,
output CONTROLLER, no buffering) and confirms it with a barrier. On each
PACKET_IN it learns source MAC -> in_port; when the destination is known it
installs a priority-1 flow (in_port, eth_src, eth_dst -> output) and sends the
packet on with PACKET_OUT, otherwise it floods it with PACKET_OUT.

It prints one line per event to stdout (flushed) and, on SIGTERM or SIGINT,
a summary line:

    summary packet_in=N flow_mod=N packet_out=N errors=N

Run it as a program to start an OpenFlow controller on 127.0.0.1 only:

    python3 l2_learning.py --port 6653
"""

import argparse
import logging
import os
import signal
import sys
import threading

from os_ken.base import app_manager
from os_ken.controller import ofp_event
from os_ken.controller.handler import (CONFIG_DISPATCHER, MAIN_DISPATCHER,
                                       DEAD_DISPATCHER, set_ev_cls)
from os_ken.lib.packet import ethernet, ether_types, packet
from os_ken.lib import mac as mac_lib
from os_ken.ofproto import ofproto_v1_0, ofproto_v1_3, ofproto_v1_4, ofproto_v1_5

VERSIONS = {
    "1.0": ofproto_v1_0.OFP_VERSION,
    "1.3": ofproto_v1_3.OFP_VERSION,
    "1.4": ofproto_v1_4.OFP_VERSION,
    "1.5": ofproto_v1_5.OFP_VERSION,
}

COUNTS = {"packet_in": 0, "flow_mod": 0, "packet_out": 0, "errors": 0}
_LOCK = threading.Lock()


def say(kind, text):
    """One line per event; counts it under `kind` when `kind` is counted."""
    with _LOCK:
        if kind in COUNTS:
            COUNTS[kind] += 1
        print(f"{kind} {text}", flush=True)


def summary():
    with _LOCK:
        return "summary " + " ".join(f"{k}={v}" for k, v in COUNTS.items())


class L2Learning(app_manager.OSKenApp):
    OFP_VERSIONS = [ofproto_v1_3.OFP_VERSION]

    IDLE_TIMEOUT = 30
    # How much of a table-miss packet the switch sends (OFPCML_NO_BUFFER:
    # all of it, buffering nothing); set by --miss-len.
    MISS_LEN = ofproto_v1_3.OFPCML_NO_BUFFER

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # dpid -> {mac: port}
        self.mac_to_port = {}
        # dpid -> xid of the barrier that follows the table-miss flow
        self.miss_barrier = {}

    def add_flow(self, dp, priority, match, actions, idle_timeout=0):
        ofp, parser = dp.ofproto, dp.ofproto_parser
        if ofp.OFP_VERSION == ofproto_v1_0.OFP_VERSION:
            # 1.0: actions in the flow mod itself, no instructions.
            mod = parser.OFPFlowMod(
                datapath=dp, match=match, cookie=0, command=ofp.OFPFC_ADD,
                idle_timeout=idle_timeout, hard_timeout=0, priority=priority,
                buffer_id=ofp.OFP_NO_BUFFER, out_port=ofp.OFPP_NONE, flags=0,
                actions=actions)
        else:
            inst = [parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS,
                                                 actions)]
            mod = parser.OFPFlowMod(datapath=dp, priority=priority,
                                    match=match, instructions=inst,
                                    idle_timeout=idle_timeout)
        dp.send_msg(mod)
        say("flow_mod", f"dpid={dp.id:016x} priority={priority} "
            f"match={dict(match.items()) if hasattr(match, 'items') else match} "
            f"actions={actions} "
            f"idle_timeout={idle_timeout}")

    @set_ev_cls(ofp_event.EventOFPSwitchFeatures, CONFIG_DISPATCHER)
    def switch_features(self, ev):
        dp = ev.msg.datapath
        ofp, parser = dp.ofproto, dp.ofproto_parser
        say("features", f"dpid={dp.id:016x} n_tables={ev.msg.n_tables} "
            f"n_buffers={ev.msg.n_buffers}")
        self.mac_to_port.setdefault(dp.id, {})
        say("version", f"dpid={dp.id:016x} version=0x{ofp.OFP_VERSION:02x}")
        actions = [parser.OFPActionOutput(ofp.OFPP_CONTROLLER, self.MISS_LEN)]
        self.add_flow(dp, 0, parser.OFPMatch(), actions)
        barrier = parser.OFPBarrierRequest(dp)
        dp.set_xid(barrier)
        self.miss_barrier[dp.id] = barrier.xid
        dp.send_msg(barrier)
        say("table_miss", f"dpid={dp.id:016x} sent")

    @set_ev_cls(ofp_event.EventOFPBarrierReply, MAIN_DISPATCHER)
    def barrier_reply(self, ev):
        dp = ev.msg.datapath
        if self.miss_barrier.get(dp.id) == ev.msg.xid:
            say("table_miss_confirmed", f"dpid={dp.id:016x}")

    @set_ev_cls(ofp_event.EventOFPPacketIn, MAIN_DISPATCHER)
    def packet_in(self, ev):
        msg = ev.msg
        dp = msg.datapath
        ofp, parser = dp.ofproto, dp.ofproto_parser
        v10 = ofp.OFP_VERSION == ofproto_v1_0.OFP_VERSION
        in_port = msg.in_port if v10 else msg.match["in_port"]
        pkt = packet.Packet(msg.data)
        eth = pkt.get_protocols(ethernet.ethernet)[0]
        say("packet_in", f"dpid={dp.id:016x} in_port={in_port} "
            f"src={eth.src} dst={eth.dst} ethertype=0x{eth.ethertype:04x} "
            f"buffer_id=0x{msg.buffer_id:x} total_len={msg.total_len} "
            f"data_len={len(msg.data)} reason={msg.reason} "
            f"table_id={0 if v10 else msg.table_id}")
        if eth.ethertype == ether_types.ETH_TYPE_LLDP:
            return

        table = self.mac_to_port.setdefault(dp.id, {})
        table[eth.src] = in_port
        out_port = table.get(eth.dst, ofp.OFPP_FLOOD)
        actions = [parser.OFPActionOutput(out_port)]
        if out_port != ofp.OFPP_FLOOD:
            if v10:
                match = parser.OFPMatch(in_port=in_port,
                                        dl_dst=mac_lib.haddr_to_bin(eth.dst),
                                        dl_src=mac_lib.haddr_to_bin(eth.src))
            else:
                match = parser.OFPMatch(in_port=in_port, eth_dst=eth.dst,
                                        eth_src=eth.src)
            self.add_flow(dp, 1, match, actions, self.IDLE_TIMEOUT)

        data = None if msg.buffer_id != ofp.OFP_NO_BUFFER else msg.data
        if ofp.OFP_VERSION >= ofproto_v1_5.OFP_VERSION:
            # 1.5: the packet's pipeline fields travel as a match.
            out = parser.OFPPacketOut(datapath=dp, buffer_id=msg.buffer_id,
                                      match=parser.OFPMatch(in_port=in_port),
                                      actions=actions, data=data)
        else:
            out = parser.OFPPacketOut(datapath=dp, buffer_id=msg.buffer_id,
                                      in_port=in_port, actions=actions,
                                      data=data)
        dp.send_msg(out)
        say("packet_out", f"dpid={dp.id:016x} in_port={in_port} "
            f"out_port={'FLOOD' if out_port == ofp.OFPP_FLOOD else out_port} "
            f"buffer_id=0x{msg.buffer_id:x}")

    @set_ev_cls(ofp_event.EventOFPErrorMsg,
                [CONFIG_DISPATCHER, MAIN_DISPATCHER])
    def error(self, ev):
        m = ev.msg
        say("errors", f"type={m.type} code={m.code} data={bytes(m.data).hex()}")

    @set_ev_cls(ofp_event.EventOFPStateChange, [MAIN_DISPATCHER,
                                                DEAD_DISPATCHER])
    def state_change(self, ev):
        dp = ev.datapath
        state = "up" if ev.state == MAIN_DISPATCHER else "down"
        say("datapath", f"dpid={(dp.id or 0):016x} {state}")


def listening(port):
    """True when a socket listens on 127.0.0.1:port (from /proc/net/tcp)."""
    want = f"0100007F:{port:04X}"
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[1] == want and fields[3] == "0A":
                return True
    return False


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True,
                    help="TCP port to listen on (127.0.0.1 only)")
    ap.add_argument("--miss-len", type=int,
                    default=ofproto_v1_3.OFPCML_NO_BUFFER,
                    help="bytes of a table-miss packet sent to the controller "
                    "(default 65535, OFPCML_NO_BUFFER: all, nothing buffered)")
    ap.add_argument("--of", choices=sorted(VERSIONS), default="1.3",
                    help="the OpenFlow version to speak (default 1.3)")
    args = ap.parse_args()
    L2Learning.MISS_LEN = args.miss_len
    L2Learning.OFP_VERSIONS = [VERSIONS[args.of]]

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(name)s %(levelname)s %(message)s")
    # os-ken's options (registered by os_ken.controller.controller): listen
    # on loopback only, on the chosen port, reading no configuration files.
    from os_ken import cfg
    import os_ken.controller.controller  # noqa: F401  registers the options
    cfg.CONF(args=["--ofp-listen-host", "127.0.0.1",
                   "--ofp-tcp-listen-port", str(args.port)],
             project="os_ken", default_config_files=[])

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    mgr = app_manager.AppManager.get_instance()
    # This module is __main__: load its app class by that name; the OpenFlow
    # handler (the listener) comes in as a dependency of its event handlers.
    mgr.load_apps([__name__])
    contexts = mgr.create_contexts()
    mgr.instantiate_apps(**contexts)
    # The listener is bound on os-ken's own thread: say "listening" only once
    # the kernel shows the socket listening, so a caller can wait for it.
    for _ in range(100):
        if listening(args.port):
            print(f"listening 127.0.0.1:{args.port}", flush=True)
            break
        stop.wait(0.1)
    else:
        print(f"not listening on 127.0.0.1:{args.port}", flush=True)
        os._exit(1)

    while not stop.wait(0.2):
        pass
    print(summary(), flush=True)
    # os-ken's native hub threads cannot be stopped: leave at once.
    os._exit(0)


if __name__ == "__main__":
    main()

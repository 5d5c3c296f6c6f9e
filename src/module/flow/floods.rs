//! The ports a flood reaches (a child of `pipeline`): FLOOD and NORMAL's
//! flooding skip ports configured PORT_DOWN, NO_FWD or NO_FLOOD; ALL
//! skips only the first two. Both lists are worked out when ports or
//! their configuration change ([`Pipeline::ports_changed`]), so a flood
//! walks a ready list and looks nothing up per port.

use super::*;

/// The ports FLOOD and ALL reach before the input is left out, and
/// whether the switch's own flood (every attached port but the input)
/// may stand for them.
#[derive(Debug, Default)]
pub(crate) struct FloodSets {
    /// FLOOD's (and NORMAL's): the candidates but those PORT_DOWN,
    /// NO_FWD or NO_FLOOD.
    pub flood: Box<[PortId]>,
    /// ALL's: the candidates but those PORT_DOWN or NO_FWD.
    pub all: Box<[PortId]>,
    /// No port is configured out of FLOOD: the switch may flood itself.
    pub flood_whole: bool,
    /// No port is configured out of ALL.
    pub all_whole: bool,
}

/// The bits that take a port out of FLOOD, and out of ALL.
const NOT_FLOOD: u32 = config::PORT_DOWN | config::NO_FWD | config::NO_FLOOD;
const NOT_ALL: u32 = config::PORT_DOWN | config::NO_FWD;

impl Pipeline {
    /// Works the flood lists out again: to be called after every change
    /// to `known_ports`, `attached`, `port_config` or `local`.
    pub fn ports_changed(&mut self) {
        let candidates = self.known_ports.as_ref().unwrap_or(&self.attached);
        let mut flood = Vec::with_capacity(candidates.len());
        let mut all = Vec::with_capacity(candidates.len());
        for id in candidates.iter().filter_map(|&p| PortId::new(p)) {
            let c = self.config(self.of_port(id));
            if c & NOT_ALL == 0 {
                all.push(id);
                if c & NOT_FLOOD == 0 {
                    flood.push(id);
                }
            }
        }
        let any = |bits: u32| self.port_config.values().any(|c| c & bits != 0);
        self.floods = FloodSets {
            flood_whole: !any(NOT_FLOOD),
            all_whole: !any(NOT_ALL),
            flood: flood.into_boxed_slice(),
            all: all.into_boxed_slice(),
        };
    }

    /// The ports FLOOD reaches, the input among them (NORMAL's flooding
    /// leaves it out as it walks them).
    #[inline]
    pub fn flood_list(&self) -> &[PortId] {
        &self.floods.flood
    }

    /// The ports a FLOOD (or, with `all`, an ALL) output from OpenFlow
    /// port `in_port` reaches: the known ports (or, if the agent gave
    /// none, the attached ones) but the input and those configured out.
    pub fn flood_ports(&self, in_port: u32, all: bool) -> Vec<PortId> {
        let list = if all {
            &self.floods.all
        } else {
            &self.floods.flood
        };
        list.iter()
            .copied()
            .filter(|&id| self.of_port(id) != in_port)
            .collect()
    }
}

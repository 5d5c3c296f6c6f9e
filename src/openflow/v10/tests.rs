//! Byte fixtures of the OpenFlow 1.0 codec, each checked by hand against
//! `ovs-ofctl ofp-print` (3.1), whose output is quoted beside it.


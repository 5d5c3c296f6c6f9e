//! Property tests of the OpenFlow 1.0 codec.

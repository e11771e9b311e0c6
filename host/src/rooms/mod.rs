//! Rooms. So far only the table of supported room versions, which
//! `/capabilities` advertises; the event pipeline arrives with the rooms issue.

pub mod versions;

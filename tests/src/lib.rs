//! Helpers live in the test binary; this library is empty.

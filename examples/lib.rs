//! Nothing to import: this package exists for its examples (`examples/*.rs`, run with
//! `cargo run -p h2msg-examples --example NAME`). Each checks its own results and exits
//! non-zero when one is wrong.

//! The crypto an application may need by name, at the versions h2msg is built with: the
//! `rsa` crate (0.10) and its key types, and the loaders of the key files of the 2012
//! layout (§2.2).
//!
//! Randomness needs no setup for a link: `link::connect` and `accept` draw from the
//! operating system through `getrandom` 0.4 (`SysRng`, a `rand_core` 0.10
//! `TryCryptoRng`). The calls that take an RNG — [`KeyDir::init`], the core's handshake —
//! take any `rand_core` 0.10 `TryCryptoRng` (re-exported as `h2msg::rand_core`): pass
//! `&mut getrandom::SysRng`, from a dependency on `getrandom` 0.4 with its `sys_rng`
//! feature (h2msg does not re-export it). An RNG written against another `rand_core`
//! (0.6, 0.9) does not satisfy them.
//!
//! ```no_run
//! use std::path::Path;
//! use h2msg_std::crypto::{self, rsa::traits::PublicKeyParts};
//!
//! let own = crypto::read_private_key(Path::new("/etc/hammer2/rsa.prv"))?;
//! let peer = crypto::read_public_key(Path::new("/etc/hammer2/remote/192.0.2.7.pub"))?;
//! assert_eq!(own.size(), peer.size(), "the handshake needs keys of one size");
//! # Ok::<(), h2msg_std::crypto::KeyError>(())
//! ```

pub use rsa;
pub use rsa::{PrivateKey, PublicKey};

pub use crate::keys::{
    AnyKey, KEY_BITS, KeyDir, KeyError, PeerKey, read_any_key, read_private_key, read_public_key,
};

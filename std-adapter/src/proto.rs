//! Which protocol revision a link speaks, chosen before its first byte: the 2012 seed era
//! (32-byte header) or DMSG, what DragonFly's `hammer2 service` speaks today (64-byte
//! header, docs/dmsg.md). The two cannot talk to each other: each reads the other's first
//! header as a bad magic (SYNC, 1), so both ends must be told the same.

use std::fmt;
use std::str::FromStr;

/// A link's protocol revision (`--proto`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Proto {
    /// The 2012 seed era (docs/protocol.md): what the 2012 C tools speak.
    #[default]
    Seed,
    /// DMSG (docs/dmsg.md): what libdmsg and today's `hammer2 service` speak.
    Dmsg,
}

impl Proto {
    /// The name `--proto` takes.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Seed => "seed",
            Self::Dmsg => "dmsg",
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `--proto` named neither `seed` nor `dmsg`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownProto(pub String);

impl fmt::Display for UnknownProto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown protocol {:?}: use seed or dmsg", self.0)
    }
}

impl std::error::Error for UnknownProto {}

impl FromStr for Proto {
    type Err = UnknownProto;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "seed" => Ok(Self::Seed),
            "dmsg" => Ok(Self::Dmsg),
            other => Err(UnknownProto(other.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_others_are_refused() {
        for proto in [Proto::Seed, Proto::Dmsg] {
            assert_eq!(proto.name().parse::<Proto>(), Ok(proto));
            assert_eq!(proto.to_string(), proto.name());
        }
        assert_eq!(
            Proto::default(),
            Proto::Seed,
            "the 2012 protocol stays the default"
        );
        let e = "DMSG".parse::<Proto>().unwrap_err();
        assert_eq!(e.to_string(), "unknown protocol \"DMSG\": use seed or dmsg");
    }
}

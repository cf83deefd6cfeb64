//! The C-visible constants and `#[repr(C)]` types. Every value that has a meaning in the
//! core is tied to it by a compile-time assertion, so the header cannot drift from the core.

use core::ffi::{c_char, c_int, c_void};
use core::ptr;

use h2msg::IocomFlags;
use h2msg::trans::MSG_ERR_LOSTLINK;
use h2msg::wire::limits::MAXIOVEC;
use h2msg::wire::{Cmd, IoqError, MSG_ERR_UNKNOWN, MsgFlags};

// ----- return values -----------------------------------------------------------------

/// Success.
pub const H2MSG_OK: c_int = 0;

/// IOQ 1: the header magic is neither 0x4832 nor 0x3248.
pub const H2MSG_IOQ_SYNC: c_int = 1;
/// IOQ 2: the stream ended inside a message.
pub const H2MSG_IOQ_EOF: c_int = 2;
/// IOQ 3: the transport failed.
pub const H2MSG_IOQ_SOCK: c_int = 3;
/// IOQ 4: a size is out of range (header 32..=2048 bytes, aux at most 65536 bytes).
pub const H2MSG_IOQ_FIELD: c_int = 4;
/// IOQ 5: the base header CRC does not match.
pub const H2MSG_IOQ_HCRC: c_int = 5;
/// IOQ 6: the extended header CRC does not match.
pub const H2MSG_IOQ_XCRC: c_int = 6;
/// IOQ 7: the aux data CRC does not match.
pub const H2MSG_IOQ_ACRC: c_int = 7;
/// IOQ 8: defined by the 2012 C code, never raised.
pub const H2MSG_IOQ_STATE: c_int = 8;
/// IOQ 9: the peer's address cannot be obtained (handshake; userland's business here).
pub const H2MSG_IOQ_NOPEER: c_int = 9;
/// IOQ 10: no key for the peer (handshake).
pub const H2MSG_IOQ_NORKEY: c_int = 10;
/// IOQ 11: no local key (handshake).
pub const H2MSG_IOQ_NOLKEY: c_int = 11;
/// IOQ 12: the key exchange failed (handshake).
pub const H2MSG_IOQ_KEYXCHGFAIL: c_int = 12;
/// IOQ 13: a key does not parse or the sizes do not fit (handshake).
pub const H2MSG_IOQ_KEYFMT: c_int = 13;
/// IOQ 14: the random source is unusable (handshake).
pub const H2MSG_IOQ_BADURANDOM: c_int = 14;

// Negative values: the call was refused before anything changed (API use, not the wire).

/// A pointer that must not be NULL was NULL (or `random_bytes` was missing).
pub const H2MSG_ERR_NULL: c_int = -1;
/// A pointer is not aligned for its type (see `h2msg_iocom_align`).
pub const H2MSG_ERR_ALIGN: c_int = -2;
/// The memory given to `h2msg_iocom_init` is shorter than `h2msg_iocom_size()`.
pub const H2MSG_ERR_SHORT: c_int = -3;
/// The handle is not an iocom set up by `h2msg_iocom_init` (or it was finished).
pub const H2MSG_ERR_HANDLE: c_int = -4;
/// The transmit queue has no room for this message now: write pending bytes, then retry.
pub const H2MSG_ERR_AGAIN: c_int = -5;
/// The transaction rules refuse this message (§8.1): wrong flags for its msgid's state.
pub const H2MSG_ERR_TRANSACTION: c_int = -6;
/// No free msgid: as many transactions are open as the table holds.
pub const H2MSG_ERR_NO_MSGID: c_int = -7;
/// The link is down: nothing more can be sent.
pub const H2MSG_ERR_LINK_DOWN: c_int = -8;
/// More bytes were reported read or written than the iocom offered.
pub const H2MSG_ERR_OVERCOMMIT: c_int = -9;
/// The accept list is full (16 commands).
pub const H2MSG_ERR_ACCEPT_FULL: c_int = -10;
/// Refused for a reason this version of the shim does not name (a newer core's).
pub const H2MSG_ERR_OTHER: c_int = -11;
/// `h2msg_iocom_commit_read` without a live offer: no `h2msg_iocom_read_buf` came right
/// before it (another call on the iocom, or an earlier `commit_read`, came in between).
/// The bytes are not taken; whatever the socket wrote went to memory the iocom may have
/// reused, so the stream cannot be trusted: call `h2msg_iocom_transport_failed`.
pub const H2MSG_ERR_STALE: c_int = -12;
/// Bytes or a pointer handed to a call lie in the iocom's own block where they may not:
/// `feed`'s input anywhere in it (copy it out first), `send`/`open`/`reply` data in its
/// state or transmit ring (a polled message's `ext` and `aux` may be relayed as they
/// are), any pointer the call writes through (or `reply`'s `to`) anywhere in it.
pub const H2MSG_ERR_OVERLAP: c_int = -13;
/// The iocom is in the middle of a call: a kernel callback (`random_bytes`, `crc32c`,
/// `log`) called back into h2msg on the same iocom. Refused; the outer call goes on.
pub const H2MSG_ERR_BUSY: c_int = -14;
/// `h2msg_iocom_set_deadline` named no open transaction of ours (never opened, over, a
/// reply's `cmd`, or one whose deadline already passed).
pub const H2MSG_ERR_NO_TRANSACTION: c_int = -15;

const _: () = {
    assert!(H2MSG_IOQ_SYNC == IoqError::Sync.code() as c_int);
    assert!(H2MSG_IOQ_EOF == IoqError::Eof.code() as c_int);
    assert!(H2MSG_IOQ_SOCK == IoqError::Sock.code() as c_int);
    assert!(H2MSG_IOQ_FIELD == IoqError::Field.code() as c_int);
    assert!(H2MSG_IOQ_HCRC == IoqError::Hcrc.code() as c_int);
    assert!(H2MSG_IOQ_XCRC == IoqError::Xcrc.code() as c_int);
    assert!(H2MSG_IOQ_ACRC == IoqError::Acrc.code() as c_int);
    assert!(H2MSG_IOQ_STATE == IoqError::State.code() as c_int);
    assert!(H2MSG_IOQ_NOPEER == IoqError::NoPeer.code() as c_int);
    assert!(H2MSG_IOQ_NORKEY == IoqError::NoRKey.code() as c_int);
    assert!(H2MSG_IOQ_NOLKEY == IoqError::NoLKey.code() as c_int);
    assert!(H2MSG_IOQ_KEYXCHGFAIL == IoqError::KeyXchgFail.code() as c_int);
    assert!(H2MSG_IOQ_KEYFMT == IoqError::KeyFmt.code() as c_int);
    assert!(H2MSG_IOQ_BADURANDOM == IoqError::BadURandom.code() as c_int);
};

// ----- commands, flags, wire errors ------------------------------------------------------

/// `LNK_PAD`: one-way filler, dropped by the receiver.
pub const H2MSG_CMD_LNK_PAD: u32 = 0x0000_0001;
/// `LNK_PING`: answered by the iocom itself; its replies are delivered.
pub const H2MSG_CMD_LNK_PING: u32 = 0x0000_0101;
/// `LNK_ERROR`: only ever synthesised locally (link loss, stream failure).
pub const H2MSG_CMD_LNK_ERROR: u32 = 0x000F_FF01;
/// `DBG_SHELL`: the debug shell's command line and output.
pub const H2MSG_CMD_DBG_SHELL: u32 = 0x0010_0101;

/// `cmd` flag: first element of a direction of a transaction.
pub const H2MSG_MSGF_CREATE: u32 = 0x8000_0000;
/// `cmd` flag: last element of a direction.
pub const H2MSG_MSGF_DELETE: u32 = 0x4000_0000;
/// `cmd` flag: the element travels back to the side that sent the CREATE.
pub const H2MSG_MSGF_REPLY: u32 = 0x2000_0000;
/// `cmd` flag: the transaction is being aborted.
pub const H2MSG_MSGF_ABORT: u32 = 0x1000_0000;
/// All eight flag bits of `cmd`.
pub const H2MSG_MSGF_MASK: u32 = 0xFF00_0000;

/// `error` of the reply to a command nobody handles (§8.3).
pub const H2MSG_MSG_ERR_UNKNOWN: u16 = 0x20;
/// `error` of the `LNK_ERROR` synthesised for a transaction lost with its link.
pub const H2MSG_MSG_ERR_LOSTLINK: u16 = 0x21;

const _: () = {
    assert!(H2MSG_CMD_LNK_PAD == Cmd::LNK_PAD.raw());
    assert!(H2MSG_CMD_LNK_PING == Cmd::LNK_PING.raw());
    assert!(H2MSG_CMD_LNK_ERROR == Cmd::LNK_ERROR.raw());
    assert!(H2MSG_CMD_DBG_SHELL == Cmd::DBG_SHELL.raw());
    assert!(H2MSG_MSGF_CREATE == MsgFlags::CREATE.bits());
    assert!(H2MSG_MSGF_DELETE == MsgFlags::DELETE.bits());
    assert!(H2MSG_MSGF_REPLY == MsgFlags::REPLY.bits());
    assert!(H2MSG_MSGF_ABORT == MsgFlags::ABORT.bits());
    assert!(H2MSG_MSGF_MASK == MsgFlags::ALL.bits());
    assert!(H2MSG_MSG_ERR_UNKNOWN == MSG_ERR_UNKNOWN);
    assert!(H2MSG_MSG_ERR_LOSTLINK == MSG_ERR_LOSTLINK);
};

// ----- what the link waits for -------------------------------------------------------------

/// §7 `EOF`: the link is down (its last events may still be waiting in `h2msg_iocom_poll`).
pub const H2MSG_IOF_EOF: u32 = 0x01;
/// §7 `RREQ`: wait until the transport is readable, then feed.
pub const H2MSG_IOF_RREQ: u32 = 0x02;
/// §7 `WREQ`: the transport was full (`h2msg_iocom_write_would_block`): wait until writable.
pub const H2MSG_IOF_WREQ: u32 = 0x04;
/// §7 `WIDLE`: nothing is queued for transmit.
pub const H2MSG_IOF_WIDLE: u32 = 0x08;
/// Not a 2012 flag: nothing more will happen (down, every event polled, nothing left to
/// write). The memory can be released after `h2msg_iocom_fini`.
pub const H2MSG_IOF_FINISHED: u32 = 0x100;

const _: () = {
    assert!(H2MSG_IOF_EOF == IocomFlags::EOF);
    assert!(H2MSG_IOF_RREQ == IocomFlags::RREQ);
    assert!(H2MSG_IOF_WREQ == IocomFlags::WREQ);
    assert!(H2MSG_IOF_WIDLE == IocomFlags::WIDLE);
    // Clear of the five 2012 flags (SIGNAL, unused, is 0x10).
    assert!(H2MSG_IOF_FINISHED & 0x1F == 0);
};

/// Most iovecs `h2msg_iocom_pending` fills (the C code's `HAMMER2_IOQ_MAXIOVEC`).
pub const H2MSG_MAXIOVEC: usize = 16;
const _: () = assert!(H2MSG_MAXIOVEC == MAXIOVEC);

// ----- events --------------------------------------------------------------------------

/// No event: wait for what `h2msg_iocom_wait_for` says.
pub const H2MSG_EVENT_NONE: u32 = 0;
/// A received message for the application: `msg` holds it, `detail` is an `H2MSG_TRANS_*`.
pub const H2MSG_EVENT_MESSAGE: u32 = 1;
/// A received element broke the transaction rules and was dropped (`detail`: an
/// `H2MSG_REJECT_*`, `msg`: its header). The link goes on.
pub const H2MSG_EVENT_REJECTED: u32 = 2;
/// A transaction was lost with the link: `msg` is the synthesised `LNK_ERROR` with
/// ABORT|DELETE and error `H2MSG_MSG_ERR_LOSTLINK`; `side` says whose transaction it was.
pub const H2MSG_EVENT_ABORTED: u32 = 3;
/// The link is down; the last event. `detail` is an `H2MSG_DOWN_*`, `ioq_error` the IOQ
/// code of a failure (0 for a clean end or a local close).
pub const H2MSG_EVENT_LINK_DOWN: u32 = 4;
/// A message's aux data fits no buffer (`aux_needed`, `aux_available`). Cannot happen with
/// the shim's 64 KiB aux buffer; kept so every core event has a number.
pub const H2MSG_EVENT_AUX_TOO_SMALL: u32 = 5;
/// An event of a newer core this shim does not translate; poll again.
pub const H2MSG_EVENT_OTHER: u32 = 6;
/// A transaction we opened passed the deadline `h2msg_iocom_set_deadline` gave it, at an
/// `h2msg_iocom_timeout`: an ABORT was queued (if the ring had room) and the transaction
/// is over for the application; later replies to it are dropped. `side` is
/// `H2MSG_SIDE_LOCAL`, `aborted` 1, `msg.msgid` the transaction's msgid (the other
/// `msg` fields 0).
pub const H2MSG_EVENT_TIMED_OUT: u32 = 7;

/// `detail` of a message: no transaction flag, no state touched.
pub const H2MSG_TRANS_ONE_WAY: u32 = 0;
/// `detail`: CREATE opened the element's direction.
pub const H2MSG_TRANS_OPENED: u32 = 1;
/// `detail`: a further element of an open direction.
pub const H2MSG_TRANS_CONTINUED: u32 = 2;
/// `detail`: DELETE closed the element's direction; the other one is still open.
pub const H2MSG_TRANS_DIRECTION_CLOSED: u32 = 3;
/// `detail`: DELETE closed the last direction: the transaction is over, its msgid free.
pub const H2MSG_TRANS_CLOSED: u32 = 4;
/// `detail`: a late ABORT|DELETE that matched nothing (not normally delivered).
pub const H2MSG_TRANS_LATE_ABORT: u32 = 5;

/// `detail` of a rejection: CREATE for a direction already created.
pub const H2MSG_REJECT_ALREADY_OPEN: u32 = 1;
/// `detail`: an element for a transaction that is not open.
pub const H2MSG_REJECT_UNKNOWN_TRANSACTION: u32 = 2;
/// `detail`: an element after the DELETE of its direction.
pub const H2MSG_REJECT_DIRECTION_CLOSED: u32 = 3;
/// `detail`: the first reply element lacks CREATE.
pub const H2MSG_REJECT_REPLY_NOT_OPENED: u32 = 4;
/// `detail`: a CREATE found the peer's transaction table full.
pub const H2MSG_REJECT_TABLE_FULL: u32 = 5;
/// `detail`: a rule this version of the shim does not name.
pub const H2MSG_REJECT_OTHER: u32 = 6;

/// `detail` of a link-down: the peer's stream ended at a message boundary.
pub const H2MSG_DOWN_CLOSED: u32 = 0;
/// `detail`: the received stream failed; `ioq_error` says how (SYNC, EOF, FIELD, HCRC,
/// XCRC, ACRC).
pub const H2MSG_DOWN_FAILED: u32 = 1;
/// `detail`: `h2msg_iocom_transport_failed` was called (`ioq_error` SOCK).
pub const H2MSG_DOWN_TRANSPORT: u32 = 2;
/// `detail`: `h2msg_iocom_close` was called.
pub const H2MSG_DOWN_LOCAL_CLOSE: u32 = 3;
/// `detail`: a message's aux data fit no buffer.
pub const H2MSG_DOWN_AUX_TOO_SMALL: u32 = 4;
/// `detail`: no byte came for the dead-peer time after a keepalive ping (`ioq_error`
/// PEERTIMEOUT, 30).
pub const H2MSG_DOWN_PEER_TIMEOUT: u32 = 5;
/// `detail`: pending bytes made no write progress for the write-stall time (`ioq_error`
/// WRSTALL, 31).
pub const H2MSG_DOWN_WRITE_STALLED: u32 = 6;

/// `side`: not about a transaction.
pub const H2MSG_SIDE_NONE: u32 = 0;
/// `side`: a transaction we opened (we sent its CREATE).
pub const H2MSG_SIDE_LOCAL: u32 = 1;
/// `side`: a transaction the peer opened.
pub const H2MSG_SIDE_REMOTE: u32 = 2;

// ----- structures --------------------------------------------------------------------

/// The kernel services an iocom uses. `h2msg_iocom_init` copies the table. No callback may
/// call back into h2msg: a call on the same iocom is refused with `H2MSG_ERR_BUSY`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct H2msgKernelOps {
    /// Required: fill `len` bytes at `buf` with random bytes (the salt's high 24 bits,
    /// §3.3). DragonFly's `karc4random_buf` has this signature.
    pub random_bytes: Option<unsafe extern "C" fn(buf: *mut c_void, len: usize)>,
    /// Optional (NULL: the built-in table-driven CRC): the CRC-32C of `len` bytes at `buf`,
    /// continuing from `crc`, the finished CRC of the bytes before (0 for none).
    /// DragonFly's `iscsi_crc32_ext` has this signature and convention.
    pub crc32c: Option<unsafe extern "C" fn(buf: *const c_void, len: usize, crc: u32) -> u32>,
    /// Optional (NULL: silent): log one NUL-terminated line without a newline, e.g.
    /// through `kprintf("%s\n", line)`. Called when a link goes down.
    pub log: Option<unsafe extern "C" fn(line: *const c_char)>,
}

/// One vectored-write slice; the layout of `struct iovec`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct H2msgIovec {
    /// First byte.
    pub iov_base: *const c_void,
    /// Number of bytes.
    pub iov_len: usize,
}

/// A message: the header fields (host order), the extended header and the aux data.
/// In an event, `ext` and `aux` point into the iocom's memory and stay valid until the
/// next call on that iocom (they may be relayed by `send`, `open` or `reply` on it, not
/// fed back with `feed`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct H2msgMessage {
    /// Command, flags (`H2MSG_MSGF_*`) and header size.
    pub cmd: u32,
    /// Transaction id; 0 for one-way messages.
    pub msgid: u32,
    /// Random high 24 bits, the sender's sequence number in the low 8.
    pub salt: u32,
    /// CRC-32C of the padded aux data.
    pub aux_icrc: u32,
    /// Source link id (0 in this era).
    pub source: u16,
    /// Target link id (0 in this era).
    pub target: u16,
    /// Error code of a reply (`H2MSG_MSG_ERR_*` or the application's).
    pub error: u16,
    /// Reserved; echoed by replies.
    pub resv05: u16,
    /// Folded CRC of the base header.
    pub icrc1: u16,
    /// Folded CRC of the extended header, 0 if there is none.
    pub icrc2: u16,
    /// Aux length in 32-byte units, as on the wire.
    pub aux_units: u16,
    /// 1 if the sender's byte order differs from ours, else 0.
    pub bswapped: u16,
    /// The extended header (NULL when `ext_len` is 0).
    pub ext: *const u8,
    /// Its length in bytes.
    pub ext_len: usize,
    /// The aux data, padding included (NULL when `aux_len` is 0).
    pub aux: *const u8,
    /// Its length in bytes.
    pub aux_len: usize,
}

/// What `h2msg_iocom_poll` hands out. Fields a kind does not use are 0.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct H2msgEvent {
    /// `H2MSG_EVENT_*`.
    pub kind: u32,
    /// Per kind: `H2MSG_TRANS_*`, `H2MSG_REJECT_*` or `H2MSG_DOWN_*`.
    pub detail: u32,
    /// `H2MSG_SIDE_*` of the transaction concerned.
    pub side: u32,
    /// 1 if the transaction's abort bit is set after this message, else 0.
    pub aborted: u32,
    /// For `H2MSG_EVENT_LINK_DOWN`: the IOQ code (`H2MSG_IOQ_*`), 0 if none applies.
    pub ioq_error: u32,
    /// For `H2MSG_EVENT_AUX_TOO_SMALL` and `H2MSG_DOWN_AUX_TOO_SMALL`: aux bytes needed.
    pub aux_needed: usize,
    /// For the same: the aux buffer's size.
    pub aux_available: usize,
    /// The message (`MESSAGE`), or the header (`REJECTED`, `ABORTED`).
    pub msg: H2msgMessage,
}

impl H2msgMessage {
    /// Every field 0, pointers NULL.
    pub(crate) const EMPTY: Self = Self {
        cmd: 0,
        msgid: 0,
        salt: 0,
        aux_icrc: 0,
        source: 0,
        target: 0,
        error: 0,
        resv05: 0,
        icrc1: 0,
        icrc2: 0,
        aux_units: 0,
        bswapped: 0,
        ext: ptr::null(),
        ext_len: 0,
        aux: ptr::null(),
        aux_len: 0,
    };
}

impl H2msgEvent {
    /// An event of `kind` with every other field 0.
    pub(crate) const fn of_kind(kind: u32) -> Self {
        Self {
            kind,
            detail: 0,
            side: H2MSG_SIDE_NONE,
            aborted: 0,
            ioq_error: 0,
            aux_needed: 0,
            aux_available: 0,
            msg: H2msgMessage::EMPTY,
        }
    }
}

//! How workers tell each other that a page lock was freed, and learn that a
//! lock holder died, without polling: every worker reads its own datagram
//! socket (`\0static_gen/<pid>`, in the abstract namespace), to which a
//! holder sends (tree id, page key) when it frees a lock others wait for;
//! and a waiter watches the holder's process with a pidfd, readable once
//! it exits. Both sit in nginx's event loop, like nginx's own channels.
//!
//! Where this is not available (an event method other than epoll, a kernel
//! without pidfd), waiters still look again on a short timer (`wait`).

use core::ffi::c_void;
use core::ptr;
use std::cell::RefCell;
use std::collections::HashMap;

use nginx_sys::{
    ngx_close_connection, ngx_connection_t, ngx_cycle, ngx_event_actions, ngx_event_flags,
    ngx_event_t, ngx_get_connection, NGX_USE_EPOLL_EVENT,
};

use crate::wait;

/// One message: the tree's id and the page key, native endian.
const MESSAGE: usize = 16;

thread_local! {
    /// This worker's socket, registered in the event loop.
    static SOCKET: RefCell<Option<*mut ngx_connection_t>> = const { RefCell::new(None) };
    /// Pidfds of lock holders this worker's requests wait for, by pid.
    static WATCHED: RefCell<HashMap<u32, *mut ngx_connection_t>> = RefCell::new(HashMap::new());
}

/// The socket address of a worker.
fn address(pid: u32) -> (libc::sockaddr_un, libc::socklen_t) {
    // SAFETY: a zeroed sockaddr_un is a valid empty address.
    let mut addr: libc::sockaddr_un = unsafe { core::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let name = format!("static_gen/{pid}");
    // sun_path[0] stays 0: the abstract namespace, nothing on disk
    for (slot, byte) in addr.sun_path[1..].iter_mut().zip(name.bytes()) {
        *slot = byte as libc::c_char;
    }
    let len = core::mem::size_of::<libc::sa_family_t>() + 1 + name.len();
    (addr, len as libc::socklen_t)
}

/// Opens this worker's socket (when the worker starts). Without it, the
/// worker's waiters rely on their timer.
pub(crate) fn open() {
    // SAFETY: plain socket calls on a descriptor this function owns.
    let fd = unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return;
    }
    let (addr, len) = address(std::process::id());
    // SAFETY: `addr` is a valid sockaddr_un of `len` bytes.
    let bound = unsafe { libc::bind(fd, ptr::from_ref(&addr).cast(), len) } == 0;
    match bound.then(|| watch_fd(fd, on_datagram)).flatten() {
        Some(c) => SOCKET.with(|s| *s.borrow_mut() = Some(c)),
        // SAFETY: the descriptor is ours and unused.
        None => unsafe {
            libc::close(fd);
        },
    }
}

/// Closes the socket and every pidfd (when the worker exits).
pub(crate) fn close() {
    let socket = SOCKET.with(|s| s.borrow_mut().take());
    let watched: Vec<_> = WATCHED.with(|w| w.borrow_mut().drain().map(|(_, c)| c).collect());
    for c in socket.into_iter().chain(watched) {
        // SAFETY: connections made by `watch_fd`, closed once.
        unsafe { ngx_close_connection(c) };
    }
}

/// Tells worker `pid` that the lock on `key` in the tree `tree_id` is
/// free. A failure (the worker is gone, its socket is full) is left to the
/// waiters' timer.
pub(crate) fn tell(pid: u32, tree_id: u64, key: u64) {
    let Some(c) = SOCKET.with(|s| *s.borrow()) else {
        return;
    };
    let mut message = [0u8; MESSAGE];
    message[..8].copy_from_slice(&tree_id.to_ne_bytes());
    message[8..].copy_from_slice(&key.to_ne_bytes());
    let (addr, len) = address(pid);
    // SAFETY: the socket is open; the buffer and address are valid.
    unsafe {
        libc::sendto(
            (*c).fd,
            message.as_ptr().cast(),
            MESSAGE,
            libc::MSG_DONTWAIT,
            ptr::from_ref(&addr).cast(),
            len,
        );
    }
}

/// Watches process `pid` (a lock holder of another worker): when it exits,
/// this worker's requests waiting for it look again at once.
pub(crate) fn watch_exit(pid: u32) {
    if WATCHED.with(|w| w.borrow().contains_key(&pid)) {
        return;
    }
    // SAFETY: pidfd_open only opens a descriptor; -1 on failure.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) } as i32;
    if fd < 0 {
        return;
    }
    match watch_fd(fd, on_exit) {
        Some(c) => WATCHED.with(|w| {
            w.borrow_mut().insert(pid, c);
        }),
        // SAFETY: the descriptor is ours and unused.
        None => unsafe {
            libc::close(fd);
        },
    }
}

/// Puts `fd` into nginx's event loop, level-triggered for reading, as
/// nginx's channels are (so the worker's exit does not count it as a
/// forgotten connection).
fn watch_fd(
    fd: i32,
    handler: unsafe extern "C" fn(*mut ngx_event_t),
) -> Option<*mut ngx_connection_t> {
    // SAFETY: the worker's cycle and event module are set up; the
    // connection is new and ours.
    unsafe {
        if ngx_event_flags & NGX_USE_EPOLL_EVENT as usize == 0 {
            return None;
        }
        let log = (*ngx_cycle).log;
        let c = ngx_get_connection(fd, log).as_mut()?;
        c.data = ptr::null_mut::<c_void>();
        let (rev, wev) = (&mut *c.read, &mut *c.write);
        rev.log = log;
        wev.log = log;
        rev.set_channel(1);
        wev.set_channel(1);
        rev.handler = Some(handler);
        let add = ngx_event_actions.add?;
        let read = (libc::EPOLLIN | libc::EPOLLRDHUP) as isize;
        if add(rev, read, 0) != 0 {
            // nginx's own error path for a new connection
            free_unused(c);
            return None;
        }
        Some(c)
    }
}

/// Frees a connection that never made it into the event loop.
unsafe fn free_unused(c: *mut ngx_connection_t) {
    (*c).fd = -1;
    nginx_sys::ngx_free_connection(c);
}

/// Reads every datagram waiting and wakes the requests they concern.
unsafe extern "C" fn on_datagram(ev: *mut ngx_event_t) {
    let c = (*ev).data.cast::<ngx_connection_t>();
    let mut message = [0u8; MESSAGE];
    loop {
        let n = libc::recv(
            (*c).fd,
            message.as_mut_ptr().cast(),
            MESSAGE,
            libc::MSG_DONTWAIT,
        );
        if n < 0 {
            break;
        }
        if n as usize == MESSAGE {
            let tree_id = u64::from_ne_bytes(message[..8].try_into().unwrap_or_default());
            let key = u64::from_ne_bytes(message[8..].try_into().unwrap_or_default());
            wait::wake(tree_id, key);
        }
    }
}

/// A watched lock holder exited: its waiters look again (and take over).
unsafe extern "C" fn on_exit(ev: *mut ngx_event_t) {
    let c = (*ev).data.cast::<ngx_connection_t>();
    let pid = WATCHED.with(|w| {
        let mut watched = w.borrow_mut();
        let pid = watched
            .iter()
            .find(|(_, &conn)| conn == c)
            .map(|(&pid, _)| pid);
        if let Some(pid) = pid {
            watched.remove(&pid);
        }
        pid
    });
    ngx_close_connection(c);
    if let Some(pid) = pid {
        wait::holder_gone(pid);
    }
}

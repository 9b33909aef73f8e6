//! A clear death on coroutine stack overflow.
//!
//! A coroutine that overflows its stack touches the guard page below it and gets
//! `SIGSEGV`. std's handler knows only threads' guard pages, so without this module the
//! process dies with no word on stderr. Here every coroutine stack registers its guard
//! page in a fixed, lock-free table; a `SIGSEGV`/`SIGBUS` handler running on an
//! alternate signal stack looks the fault address up, writes what happened and what to
//! do to stderr, restores the default action and returns, so the faulting instruction
//! runs again and the process dies of the signal as before (a crash, not an exit).
//! Faults anywhere else go to the handler that was installed before ours (std's, which
//! reports thread stack overflows) or to the default action.
//!
//! The handler uses only async-signal-safe operations: atomic loads, `write(2)`,
//! `sigaction(2)`, and the previous handler. Each entry holds its coroutine's label
//! ([`StackLabel`]), which the message quotes.

use std::cell::RefCell;
use std::fmt;
use std::io;
use std::ptr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Once, OnceLock};

use super::stack_label::{LABEL_MAX, StackLabel};

/// Most guard pages registered at once; stacks past it overflow without a message.
/// About as many as one process can map (see `rt`'s capacity notes).
const SLOTS: usize = 32 * 1024;

/// `Entry::start` while the entry is being filled in.
const FILLING: usize = 1;

/// Bytes of the alternate signal stack each watched thread gets when it has none.
const ALT_STACK_SIZE: usize = 64 * 1024;

/// One registered guard page.
struct Entry {
    /// First byte of the guard page; 0 when free, [`FILLING`] while being claimed.
    start: AtomicUsize,
    /// One past the guard page's last byte.
    end: AtomicUsize,
    /// Usable bytes of the stack above the guard page.
    stack_size: AtomicUsize,
    /// Who runs on the stack now (set with [`GuardRegistration::set_label`]).
    label: StackLabel,
}

impl Entry {
    const fn new() -> Entry {
        Entry {
            start: AtomicUsize::new(0),
            end: AtomicUsize::new(0),
            stack_size: AtomicUsize::new(0),
            label: StackLabel::new(),
        }
    }
}

static TABLE: [Entry; SLOTS] = [const { Entry::new() }; SLOTS];
/// Entries at this index and above have never been used: the handler scans below it.
static HIGH_WATER: AtomicUsize = AtomicUsize::new(0);
/// Where the next registration starts looking for a free entry.
static NEXT: AtomicUsize = AtomicUsize::new(0);
/// The handlers installed before ours, for `SIGSEGV` and `SIGBUS`.
static PREVIOUS: [OnceLock<Previous>; 2] = [OnceLock::new(), OnceLock::new()];
static INSTALL: Once = Once::new();

/// A saved `sigaction`.
struct Previous(libc::sigaction);

/// A guard page in the table; removed on drop (before its stack is unmapped).
#[derive(Debug)]
pub(crate) struct GuardRegistration {
    /// Index into [`TABLE`].
    index: usize,
}

/// Registers the guard page of a coroutine stack whose mapping starts (guard page
/// first) at `limit` and ends at `base`. `None` when the table is full.
pub(crate) fn register(limit: usize, base: usize) -> Option<GuardRegistration> {
    let page = page_size();
    let hint = NEXT.load(Ordering::Relaxed);
    for offset in 0..SLOTS {
        let index = (hint + offset) % SLOTS;
        let entry = &TABLE[index];
        if entry
            .start
            .compare_exchange(0, FILLING, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            continue;
        }
        entry.end.store(limit + page, Ordering::Relaxed);
        entry
            .stack_size
            .store(base.saturating_sub(limit + page), Ordering::Relaxed);
        entry.label.clear();
        entry.start.store(limit, Ordering::Release);
        HIGH_WATER.fetch_max(index + 1, Ordering::Release);
        NEXT.store(index + 1, Ordering::Relaxed);
        return Some(GuardRegistration { index });
    }
    None
}

impl GuardRegistration {
    /// Names who runs on this stack, for the overflow message (cut to 112 bytes).
    pub(crate) fn set_label(&self, label: fmt::Arguments<'_>) {
        TABLE[self.index].label.set(label);
    }

    /// [`set_label`](Self::set_label) with the label given as pieces to join: no
    /// formatting machinery, for a label set on every request.
    pub(crate) fn set_label_parts(&self, parts: &[&str]) {
        TABLE[self.index].label.set_parts(parts);
    }

    /// The label last set (empty if none), for the stall warning.
    pub(crate) fn label(&self) -> String {
        TABLE[self.index].label.to_string_lossy()
    }

    /// Forgets the label (a new coroutine starts on the stack).
    pub(crate) fn clear_label(&self) {
        TABLE[self.index].label.clear();
    }
}

impl Drop for GuardRegistration {
    fn drop(&mut self) {
        TABLE[self.index].start.store(0, Ordering::Release);
    }
}

/// Installs the process's fault handler (once) and gives this thread an alternate
/// signal stack if it has none, so the handler can run when the stack is exhausted.
pub(crate) fn watch_this_thread() -> io::Result<()> {
    INSTALL.call_once(install);
    ALT_STACK.with(|alt| {
        let mut alt = alt.borrow_mut();
        if alt.is_none() {
            *alt = AltStack::ensure()?;
        }
        Ok(())
    })
}

thread_local! {
    /// The alternate signal stack this module gave the thread, if it needed one.
    static ALT_STACK: RefCell<Option<AltStack>> = const { RefCell::new(None) };
}

/// An alternate signal stack mapped for this thread; disabled and unmapped at thread exit.
struct AltStack {
    base: *mut libc::c_void,
}

impl AltStack {
    /// Maps and enables one when the thread has none (std gives its threads one).
    fn ensure() -> io::Result<Option<AltStack>> {
        // SAFETY: a zeroed stack_t is a valid out-parameter; a null new stack only reads.
        let mut current: libc::stack_t = unsafe { std::mem::zeroed() };
        // SAFETY: as above; both pointers are valid for the call.
        if unsafe { libc::sigaltstack(ptr::null(), &mut current) } != 0 {
            return Err(io::Error::last_os_error());
        }
        if current.ss_flags & libc::SS_DISABLE == 0 {
            return Ok(None);
        }
        // SAFETY: a fresh anonymous private mapping; no existing memory is touched.
        let base = unsafe {
            libc::mmap(
                ptr::null_mut(),
                ALT_STACK_SIZE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let stack = libc::stack_t {
            ss_sp: base,
            ss_flags: 0,
            ss_size: ALT_STACK_SIZE,
        };
        // SAFETY: `stack` describes the mapping just made, which lives until `drop`
        // disables it again.
        if unsafe { libc::sigaltstack(&stack, ptr::null_mut()) } != 0 {
            let error = io::Error::last_os_error();
            // SAFETY: unmapping the mapping made above, which nothing else uses.
            unsafe { libc::munmap(base, ALT_STACK_SIZE) };
            return Err(error);
        }
        Ok(Some(AltStack { base }))
    }
}

impl Drop for AltStack {
    fn drop(&mut self) {
        let disable = libc::stack_t {
            ss_sp: ptr::null_mut(),
            ss_flags: libc::SS_DISABLE,
            ss_size: 0,
        };
        // SAFETY: disabling the thread's alternate stack, then unmapping ours, which no
        // handler can be running on (we are in ordinary thread-exit code).
        unsafe {
            libc::sigaltstack(&disable, ptr::null_mut());
            libc::munmap(self.base, ALT_STACK_SIZE);
        }
    }
}

/// The system page size (the guard page's length).
fn page_size() -> usize {
    static PAGE: AtomicUsize = AtomicUsize::new(0);
    match PAGE.load(Ordering::Relaxed) {
        0 => {
            // SAFETY: sysconf has no preconditions.
            let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) })
                .unwrap_or(4096)
                .max(4096);
            PAGE.store(page, Ordering::Relaxed);
            page
        }
        page => page,
    }
}

/// Saves the current `SIGSEGV` and `SIGBUS` handlers and installs ours.
fn install() {
    page_size();
    for (index, signal) in [libc::SIGSEGV, libc::SIGBUS].into_iter().enumerate() {
        // SAFETY: a zeroed sigaction is a valid out-parameter.
        let mut previous: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: reading the current action into a valid struct.
        if unsafe { libc::sigaction(signal, ptr::null(), &mut previous) } != 0 {
            log::warn!("stack guard: cannot read the handler of signal {signal}");
            continue;
        }
        let _ = PREVIOUS[index].set(Previous(previous));
        // SAFETY: zeroed is a valid sigaction (empty mask); fields set below.
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        action.sa_sigaction = on_fault as *const () as usize;
        action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
        // SAFETY: `on_fault` is an `extern "C"` SA_SIGINFO handler that only makes
        // async-signal-safe calls.
        if unsafe { libc::sigaction(signal, &action, ptr::null_mut()) } != 0 {
            log::warn!("stack guard: cannot install the handler of signal {signal}");
        }
    }
}

/// The fault handler; see the module docs.
extern "C" fn on_fault(
    signal: libc::c_int,
    info: *mut libc::siginfo_t,
    context: *mut libc::c_void,
) {
    // SAFETY: the kernel passes a valid siginfo_t to an SA_SIGINFO handler.
    let address = unsafe { (*info).si_addr() } as usize;
    match find(address) {
        Some(entry) => {
            report(signal, entry);
            reset_to_default(signal);
        }
        None => forward(signal, info, context),
    }
}

/// The registered guard page holding `address`.
fn find(address: usize) -> Option<&'static Entry> {
    let high = HIGH_WATER.load(Ordering::Acquire).min(SLOTS);
    TABLE[..high].iter().find(|entry| {
        let start = entry.start.load(Ordering::Acquire);
        start > FILLING && address >= start && address < entry.end.load(Ordering::Relaxed)
    })
}

/// Hands a fault that is not ours to the handler installed before, or the default.
fn forward(signal: libc::c_int, info: *mut libc::siginfo_t, context: *mut libc::c_void) {
    let index = usize::from(signal == libc::SIGBUS);
    let Some(Previous(previous)) = PREVIOUS[index].get() else {
        reset_to_default(signal);
        return;
    };
    let handler = previous.sa_sigaction;
    if handler == libc::SIG_DFL || handler == libc::SIG_IGN {
        reset_to_default(signal);
    } else if previous.sa_flags & libc::SA_SIGINFO != 0 {
        // SAFETY: with SA_SIGINFO the saved value is a three-argument handler.
        let handler: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
            unsafe { std::mem::transmute(handler) };
        handler(signal, info, context);
    } else {
        // SAFETY: without SA_SIGINFO the saved value is a one-argument handler.
        let handler: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(handler) };
        handler(signal);
    }
}

/// Restores the default action: returning re-runs the faulting instruction, which then
/// kills the process with `signal`.
fn reset_to_default(signal: libc::c_int) {
    // SAFETY: zeroed is SIG_DFL with an empty mask; sigaction is async-signal-safe.
    unsafe {
        let action: libc::sigaction = std::mem::zeroed();
        libc::sigaction(signal, &action, ptr::null_mut());
    }
}

/// Writes the overflow message to stderr, without allocating or locking.
fn report(signal: libc::c_int, entry: &Entry) {
    let mut message = Message {
        bytes: [0; 768],
        len: 0,
    };
    message.push(b"\nmixserve: a coroutine overflowed its stack of ");
    message.push_number(entry.stack_size.load(Ordering::Relaxed));
    message.push(b" bytes");
    let mut label = [0; LABEL_MAX];
    let label_len = entry.label.read(&mut label);
    if label_len > 0 {
        message.push(b" (");
        message.push(&label[..label_len]);
        message.push(b")");
    }
    message.push(if signal == libc::SIGBUS {
        b"; the process dies of SIGBUS.\n"
    } else {
        b"; the process dies of SIGSEGV.\n"
    });
    message.push(
        b"mixserve: give coroutines more stack with Scheduled::stack_size (or \
          RuntimeConfig::stack_size), or keep deep recursion and large local arrays off \
          coroutine stacks (use the heap, or a thread).\n",
    );
    let mut written = 0;
    while written < message.len {
        // SAFETY: writing initialised bytes of a local buffer to fd 2; write(2) is
        // async-signal-safe.
        let n = unsafe {
            libc::write(
                libc::STDERR_FILENO,
                message.bytes[written..message.len].as_ptr().cast(),
                message.len - written,
            )
        };
        match usize::try_from(n) {
            Ok(n) if n > 0 => written += n,
            _ => break,
        }
    }
}

/// A message built in a fixed buffer (no allocation in a signal handler).
struct Message {
    bytes: [u8; 768],
    len: usize,
}

impl Message {
    fn push(&mut self, text: &[u8]) {
        let take = text.len().min(self.bytes.len() - self.len);
        self.bytes[self.len..self.len + take].copy_from_slice(&text[..take]);
        self.len += take;
    }

    fn push_number(&mut self, mut number: usize) {
        let mut digits = [0u8; 20];
        let mut at = digits.len();
        loop {
            at -= 1;
            digits[at] = b'0' + (number % 10) as u8;
            number /= 10;
            if number == 0 {
                break;
            }
        }
        self.push(&digits[at..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_guard_pages_are_found_until_dropped() {
        let page = page_size();
        let limit = 0x7000_0000_0000;
        let guard = register(limit, limit + page + 65536).unwrap();
        guard.set_label(format_args!("connection from {}", "127.0.0.1:9"));
        let entry = find(limit + 10).expect("inside the guard page");
        assert_eq!(entry.stack_size.load(Ordering::Relaxed), 65536);
        assert_eq!(guard.label(), "connection from 127.0.0.1:9");
        assert!(
            find(limit + page).is_none(),
            "the stack itself is not the guard"
        );
        drop(guard);
        assert!(find(limit + 10).is_none());
    }

    #[test]
    fn numbers_fit() {
        let mut message = Message {
            bytes: [0; 768],
            len: 0,
        };
        message.push_number(0);
        message.push(b" ");
        message.push_number(65536);
        assert_eq!(&message.bytes[..message.len], b"0 65536");
    }
}

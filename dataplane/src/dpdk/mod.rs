//! Safe wrappers over DPDK (feature `dpdk`): the only `unsafe` outside
//! `ffi/`, each block with the reason it is sound.
//!
//! - [`Eal`]: `rte_eal_init` from the config's `eal_args`, once per process.
//! - [`Mempool`], [`Mbuf`], [`Burst`]: packet buffers, owned in Rust (freed
//!   on drop unless handed to a port).
//! - [`Port`]: configure, start, promiscuous mode, link, MAC, stats, rx/tx
//!   bursts.
//! - [`launch`] / [`wait_all`]: run a closure on a worker lcore.
//! - [`prefetch`]: `rte_prefetch0`, for the poll loop's look a burst ahead.
//!
//! Every failing `rte_*` call becomes a [`DpdkError`] naming the call, with
//! the `rte_strerror` text.

mod mbuf;
mod port;

use std::ffi::{c_char, c_void, CStr, CString};
use std::sync::atomic::{AtomicBool, Ordering};

use dpdk_sys as sys;

pub use mbuf::{Burst, Mbuf, Mempool, BURST};
pub use port::{Link, Port, PortStats};

/// Asks the CPU to bring the cache line holding `addr` into all cache
/// levels (`rte_prefetch0`; x86-64 `prefetcht0`, nothing elsewhere). A hint:
/// the address is never dereferenced and a prefetch never faults, so any
/// address is sound; a poll loop prefetches, a burst ahead, what each
/// packet's handling will read.
#[inline(always)]
pub fn prefetch(addr: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetcht0 reads nothing architecturally and cannot fault, so
    // it is sound for any address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(addr.cast())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = addr;
}

/// A failed DPDK call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{call}: {text} ({code})")]
pub struct DpdkError {
    /// The `rte_*` function that failed, e.g. `rte_eth_dev_configure`.
    pub call: &'static str,
    /// Positive errno value: from the negative return code, else `rte_errno`; our own checks use 22
    /// (EINVAL), 19 (ENODEV) or 114 (EALREADY).
    pub code: i32,
    /// `rte_strerror(code)`, or our own message for a check made before calling DPDK.
    pub text: String,
}

impl DpdkError {
    /// The error of a call that returned a negative errno (or -1 with
    /// `rte_errno` set, when `code` is -1).
    pub(crate) fn from_code(call: &'static str, code: i32) -> DpdkError {
        let code = if code == -1 { rte_errno() } else { code.abs() };
        DpdkError {
            call,
            code,
            text: strerror(code),
        }
    }

    /// The error of a call that returned NULL and set `rte_errno`.
    pub(crate) fn last(call: &'static str) -> DpdkError {
        let code = rte_errno();
        DpdkError {
            call,
            code,
            text: strerror(code),
        }
    }
}

fn rte_errno() -> i32 {
    // SAFETY: reads the calling thread's (per-lcore) errno variable.
    unsafe { sys::sbc_rte_errno() }
}

fn strerror(code: i32) -> String {
    // SAFETY: rte_strerror always returns a valid NUL-terminated string
    // (static, or a per-thread buffer for unknown codes) that we copy at once.
    unsafe { CStr::from_ptr(sys::rte_strerror(code)) }
        .to_string_lossy()
        .into_owned()
}

/// `Ok(v)` for a non-negative return, the error otherwise.
pub(crate) fn check(call: &'static str, rc: i32) -> Result<i32, DpdkError> {
    if rc < 0 {
        Err(DpdkError::from_code(call, rc))
    } else {
        Ok(rc)
    }
}

static EAL_STARTED: AtomicBool = AtomicBool::new(false);

/// The initialised Environment Abstraction Layer. There is one per process:
/// `rte_eal_init` cannot run twice, even after a cleanup.
#[derive(Debug)]
pub struct Eal {
    _private: (),
}

impl Eal {
    /// Initialises EAL with `args` (without the program name), e.g.
    /// `["--no-huge", "--no-pci", "-m", "512", "--file-prefix", "sbc", "--vdev", "net_null0"]`.
    pub fn init<S: AsRef<str>>(args: &[S]) -> Result<Eal, DpdkError> {
        if EAL_STARTED.swap(true, Ordering::SeqCst) {
            return Err(DpdkError {
                call: "rte_eal_init",
                code: libc_ealready(),
                text: "EAL is already initialised in this process".into(),
            });
        }
        let mut owned = vec![CString::new("sbc").unwrap_or_default()];
        for a in args {
            owned.push(CString::new(a.as_ref()).map_err(|_| DpdkError {
                call: "rte_eal_init",
                code: 22,
                text: format!("argument {:?} contains NUL", a.as_ref()),
            })?);
        }
        // EAL may permute argv and write into the strings (some options are
        // split in place): hand it leaked, mutable copies (once per process).
        let mut argv: Vec<*mut c_char> = owned.into_iter().map(CString::into_raw).collect();
        let argc = i32::try_from(argv.len()).unwrap_or(i32::MAX);
        // SAFETY: argv holds argc valid, writable NUL-terminated strings that
        // are never freed; EAL may reorder the array and edit the strings.
        let rc = unsafe { sys::rte_eal_init(argc, argv.as_mut_ptr()) };
        check("rte_eal_init", rc)?;
        Ok(Eal { _private: () })
    }

    /// Worker lcores (the main lcore excluded), in order.
    pub fn workers(&self) -> Vec<u32> {
        let mut out = Vec::new();
        // SAFETY: EAL is initialised (we exist); this only reads its lcore table.
        let mut id = unsafe { sys::rte_get_next_lcore(u32::MAX, 1, 0) };
        while id < sys::RTE_MAX_LCORE {
            out.push(id);
            // SAFETY: as above.
            id = unsafe { sys::rte_get_next_lcore(id, 1, 0) };
        }
        out
    }

    /// TSC cycles (for busy-cycle accounting).
    pub fn cycles(&self) -> u64 {
        // SAFETY: reads the time stamp counter.
        unsafe { sys::sbc_rdtsc() }
    }
}

impl Drop for Eal {
    fn drop(&mut self) {
        // SAFETY: the lcores were waited for by whoever launched them (the
        // poll loop joins before its Eal goes); cleanup releases hugepage and
        // device resources once.
        unsafe {
            sys::rte_eal_mp_wait_lcore();
            sys::rte_eal_cleanup();
        }
    }
}

fn libc_ealready() -> i32 {
    114 // EALREADY on Linux
}

type Job = Box<dyn FnOnce() -> i32 + Send>;

unsafe extern "C" fn trampoline(arg: *mut c_void) -> i32 {
    // SAFETY: `arg` is the Box<Job> leaked by `launch`, handed over exactly once.
    let job: Box<Job> = unsafe { Box::from_raw(arg.cast::<Job>()) };
    job()
}

/// Runs `job` on worker `lcore`; its return value comes back from [`wait`].
pub fn launch(
    _eal: &Eal,
    lcore: u32,
    job: impl FnOnce() -> i32 + Send + 'static,
) -> Result<(), DpdkError> {
    let boxed: Box<Job> = Box::new(Box::new(job));
    let arg = Box::into_raw(boxed).cast::<c_void>();
    // SAFETY: trampoline matches lcore_function_t and takes ownership of
    // `arg`; on failure the lcore never runs it, so we take it back.
    let rc = unsafe { sys::rte_eal_remote_launch(Some(trampoline), arg, lcore) };
    if rc < 0 {
        // SAFETY: not launched: the box is still ours.
        drop(unsafe { Box::from_raw(arg.cast::<Job>()) });
        return Err(DpdkError::from_code("rte_eal_remote_launch", rc));
    }
    Ok(())
}

/// Waits for worker `lcore` to finish; its job's return value.
pub fn wait(_eal: &Eal, lcore: u32) -> i32 {
    // SAFETY: waits on EAL's per-lcore state; no memory is shared.
    unsafe { sys::rte_eal_wait_lcore(lcore) }
}

/// Waits for every worker lcore.
pub fn wait_all(_eal: &Eal) {
    // SAFETY: as `wait`.
    unsafe { sys::rte_eal_mp_wait_lcore() }
}

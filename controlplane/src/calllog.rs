//! One log line per step of a call, with `tracing` (target `sbc::call`):
//! routed (Call-ID, tenant, gateway), failed over, answered, ended (result,
//! final code, who ended it, tries, setup, duration). The engine hands the
//! steps and records over its rings; nothing is logged on the packet path.

use sbc_dataplane::call::{CallRecord, CallStep};
use sbc_dataplane::Side;

/// `inbound` or `outbound` for a call whose caller is on `side`.
fn direction(side: Side) -> &'static str {
    crate::api::model::Direction::of(side).name()
}

/// Logs one step of a call.
pub fn step(s: &CallStep) {
    match s {
        CallStep::Routed {
            call,
            call_id,
            tenant,
            callee_call_id,
            caller_side,
            to,
        } => tracing::info!(
            target: "sbc::call",
            call, call_id = %call_id, callee_call_id = %callee_call_id,
            tenant = tenant.as_deref().unwrap_or("-"),
            direction = direction(*caller_side), gateway = %to,
            "call routed"
        ),
        CallStep::FailedOver {
            call,
            from,
            code,
            to,
        } => tracing::info!(
            target: "sbc::call",
            call, gateway = %from, code, next = %to,
            "call failed over"
        ),
        CallStep::Answered { call, setup_ms } => tracing::info!(
            target: "sbc::call",
            call, setup_ms,
            "call answered"
        ),
    }
}

/// Logs the end of a call from its record.
pub fn ended(r: &CallRecord) {
    tracing::info!(
        target: "sbc::call",
        call = r.call,
        call_id = %r.caller_call_id,
        tenant = r.tenant.as_deref().unwrap_or("-"),
        direction = direction(r.caller_side),
        gateway = %if r.caller_side == Side::Private { r.callee_addr } else { r.caller_addr },
        result = r.result.name(),
        code = r.final_code,
        ended_by = r.ended_by.map_or("-", |e| e.name()),
        attempts = r.attempts,
        setup_ms = r.setup_ms.unwrap_or(0),
        duration_ms = r.duration_ms,
        "call ended"
    );
}

//! Per-tenant admission (Kamailio's pike/htable limits as the old stack
//! scripted them): live calls below `max_concurrent`, and a token from a
//! `max_cps` bucket.

use super::{Ms, SipEngine};

impl SipEngine {
    /// Per-tenant admission: live calls below `max_concurrent` and a token
    /// from the `max_cps` bucket (capacity `max_cps`, refilled continuously).
    pub(super) fn admit(&mut self, tenant_id: &str, now: Ms) -> bool {
        let Some(t) = self.snapshot.tenant(tenant_id) else {
            return true;
        };
        let (cps, max_live) = (f64::from(t.max_cps), t.max_concurrent);
        let load = self
            .loads
            .entry(tenant_id.to_string())
            .or_insert(TenantLoad {
                tokens: cps,
                last: now,
                active: 0,
            });
        load.tokens =
            (load.tokens + (now.saturating_sub(load.last)) as f64 * cps / 1000.0).min(cps);
        load.last = now;
        if load.active >= max_live || load.tokens < 1.0 {
            return false;
        }
        load.tokens -= 1.0;
        load.active += 1;
        true
    }

    /// A call admitted for `tenant_id` has ended: its slot is free again.
    pub(super) fn release_slot(&mut self, tenant_id: &str) {
        if let Some(load) = self.loads.get_mut(tenant_id) {
            load.active = load.active.saturating_sub(1);
        }
    }

    /// A call of `tenant_id` restored from the journal holds a slot again
    /// (its limits may leave it over `max_concurrent`: new calls wait).
    pub(super) fn restore_slot(&mut self, tenant_id: &str, now: Ms) {
        let Some(t) = self.snapshot.tenant(tenant_id) else {
            return;
        };
        let cps = f64::from(t.max_cps);
        self.loads
            .entry(tenant_id.to_string())
            .or_insert(TenantLoad {
                tokens: cps,
                last: now,
                active: 0,
            })
            .active += 1;
    }

    /// Live calls per tenant, as the limits count them.
    pub fn tenant_calls(&self, tenant_id: &str) -> u32 {
        self.loads.get(tenant_id).map_or(0, |l| l.active)
    }
}

/// Admission state of one tenant.
#[derive(Debug, Clone, Copy)]
pub(super) struct TenantLoad {
    tokens: f64,
    last: Ms,
    active: u32,
}

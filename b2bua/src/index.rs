//! Where SIP identifiers lead: which call or supervisor leg a transaction or a
//! dialog belongs to, and the requests waiting for the other side's answer. Every
//! entry is added with the call's (or monitor's) own record of it, and removed when
//! that transaction or dialog ends, so an idle B2BUA has an empty index
//! ([`Index::sizes`] is the leak check).

use crate::{CallId, MonitorId, Side};
use rsip::Request;
use sip::TxId;
use std::collections::HashMap;

/// What a server transaction of a call is.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ServerRole {
    Initial,
    Reinvite,
    /// An in-dialog request relayed to the other side.
    Relayed,
}

/// What a client transaction of a call is.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ClientRole {
    /// The B leg INVITE of attempt `.0`.
    Initial(u32),
    Reinvite,
    /// Relays the response to server tx `.0` on the other side.
    Relay(TxId),
    /// BYE or CANCEL while ending.
    Ending,
    /// A session refresh the edge sent on a leg (`true`: a re-INVITE, else UPDATE).
    Refresh(Side, bool),
    /// A transfer's NOTIFY to the transferor (its answer changes nothing).
    Notify,
}

/// What a client transaction towards a supervisor's phone is.
#[derive(Debug, Clone, Copy)]
pub(crate) enum MonitorRole {
    /// The INVITE (indexed until the monitor is gone: 2xx retransmissions arrive on it).
    Invite,
    /// BYE or CANCEL while ending.
    End,
    /// The re-INVITE moving a consultation's target onto the call's B port.
    Move,
}

/// Whose a client transaction is.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ClientTx {
    Call(CallId, ClientRole),
    Monitor(MonitorId, MonitorRole),
}

impl ClientTx {
    /// An INVITE, whose 2xx ends the transaction only for the core (the dialog layer
    /// still sees retransmissions).
    pub(crate) fn is_invite(self) -> bool {
        matches!(
            self,
            ClientTx::Call(
                _,
                ClientRole::Initial(_) | ClientRole::Reinvite | ClientRole::Refresh(_, true)
            ) | ClientTx::Monitor(_, MonitorRole::Invite | MonitorRole::Move)
        )
    }
}

/// Whose a dialog is: a call's side, or a supervisor's leg.
#[derive(Debug, Clone, Copy)]
pub(crate) enum DialogOwner {
    Call(CallId, Side),
    Monitor(MonitorId),
    /// The agent's leg of a call being transferred, aside until the target answers.
    Transferor(CallId),
}

/// A dialog as the edge keys it: Call-ID and the edge's own tag.
pub(crate) type DialogKey = (String, String);

#[derive(Debug, Default)]
pub(crate) struct Index {
    server: HashMap<TxId, (CallId, ServerRole)>,
    client: HashMap<TxId, ClientTx>,
    /// Requests waiting for the other side's answer (relayed INFO, re-INVITE), by
    /// their server transaction.
    relayed: HashMap<TxId, Request>,
    dialogs: HashMap<DialogKey, DialogOwner>,
}

impl Index {
    pub(crate) fn server(&self, tx: &TxId) -> Option<(CallId, ServerRole)> {
        self.server.get(tx).copied()
    }

    pub(crate) fn add_server(&mut self, tx: TxId, call: CallId, role: ServerRole) {
        self.server.insert(tx, (call, role));
    }

    pub(crate) fn remove_server(&mut self, tx: &TxId) {
        self.server.remove(tx);
    }

    /// A relayed request's server transaction and the request, until the other
    /// side answers ([`Index::answered`] hands the request back to be replied to).
    pub(crate) fn add_relayed(&mut self, tx: TxId, call: CallId, role: ServerRole, req: Request) {
        self.server.insert(tx, (call, role));
        self.relayed.insert(tx, req);
    }

    /// Server transaction `tx` is answered: forget it; the request, if it waited
    /// for the other side.
    pub(crate) fn answered(&mut self, tx: &TxId) -> Option<Request> {
        self.server.remove(tx);
        self.relayed.remove(tx)
    }

    pub(crate) fn client(&self, tx: &TxId) -> Option<ClientTx> {
        self.client.get(tx).copied()
    }

    pub(crate) fn add_client(&mut self, tx: TxId, call: CallId, role: ClientRole) {
        self.client.insert(tx, ClientTx::Call(call, role));
    }

    pub(crate) fn add_monitor_client(&mut self, tx: TxId, monitor: MonitorId, role: MonitorRole) {
        self.client.insert(tx, ClientTx::Monitor(monitor, role));
    }

    pub(crate) fn remove_client(&mut self, tx: &TxId) -> Option<ClientTx> {
        self.client.remove(tx)
    }

    pub(crate) fn dialog(&self, call_id: &str, tag: &str) -> Option<DialogOwner> {
        // Lookups by borrowed parts would need a custom key type; dialogs are looked
        // up once per in-dialog request, so one key allocation is fine.
        self.dialogs
            .get(&(call_id.to_string(), tag.to_string()))
            .copied()
    }

    pub(crate) fn add_dialog(&mut self, key: DialogKey, owner: DialogOwner) {
        self.dialogs.insert(key, owner);
    }

    /// Dialog `d` (keyed by its Call-ID and the edge's tag) belongs to `owner`
    /// now, whoever had it before.
    pub(crate) fn own_dialog(&mut self, d: &sip::dialog::Dialog, owner: DialogOwner) {
        self.add_dialog((d.call_id.clone(), d.local_tag.clone()), owner);
    }

    pub(crate) fn remove_dialog(&mut self, call_id: &str, tag: &str) {
        self.dialogs.remove(&(call_id.to_string(), tag.to_string()));
    }

    /// Dialogs of supervisor legs (leak checks).
    pub(crate) fn monitor_dialogs(&self) -> usize {
        self.dialogs
            .values()
            .filter(|o| matches!(o, DialogOwner::Monitor(_)))
            .count()
    }

    /// Entries per table (dialogs, server transactions, client transactions,
    /// relayed requests): all zero when no call or monitor is up.
    pub(crate) fn sizes(&self) -> [usize; 4] {
        [
            self.dialogs.len(),
            self.server.len(),
            self.client.len(),
            self.relayed.len(),
        ]
    }
}

#[cfg(test)]
#[path = "index_tests.rs"]
mod tests;

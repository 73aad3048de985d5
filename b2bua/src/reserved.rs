//! Reserved data: headers of the trunk's INVITE named by `[[reserved_data]]`
//! become fields of the call. A value that is empty, too long or carries a control
//! character is dropped (and counted), never cut or passed on: it cannot inject a
//! header into the agent's leg or a line into the recording's metadata. Values are
//! customer data: they are not logged.

use crate::B2bua;
use rsip::{Header, Request};
use tracing::warn;

/// The raw value of the first header named `name` (case-insensitive), whatever
/// type the parser gave it.
fn raw_header(req: &Request, name: &str) -> Option<String> {
    req.headers.iter().find_map(|h: &Header| {
        let line = h.to_string();
        let (n, v) = line.split_once(':')?;
        n.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

impl B2bua {
    /// The reserved data fields of a new call from its INVITE, in config order.
    pub(crate) fn reserved_data(&mut self, req: &Request, call: &str) -> Vec<(String, String)> {
        let snap = self.snap.clone();
        let mut out = Vec::new();
        for r in &snap.config.reserved_data {
            let Some(raw) = raw_header(req, &r.header) else {
                continue;
            };
            match r.check(&raw) {
                Ok(v) => out.push((r.field.clone(), v.to_string())),
                Err(e) => {
                    self.stats.reserved_refused += 1;
                    warn!(%call, field = %r.field, header = %r.header, error = %e, "reserved data header refused");
                }
            }
        }
        out
    }

    /// The headers the agent's leg carries the call's reserved data in.
    pub(crate) fn reserved_headers(&self, data: &[(String, String)]) -> Vec<Header> {
        data.iter()
            .filter_map(|(field, value)| {
                let r = self
                    .snap
                    .config
                    .reserved_data
                    .iter()
                    .find(|r| &r.field == field)?;
                Some(Header::Other(r.agent_header(), value.clone()))
            })
            .collect()
    }
}

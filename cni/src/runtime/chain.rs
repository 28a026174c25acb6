//! Running a network configuration list's plugins (spec 1.1 section 3): ADD in order with
//! each result as the next plugin's `prevResult`, DEL in reverse with the cached result,
//! CHECK in order with the cached result, STATUS and GC for the whole network.

use std::collections::BTreeMap;

use super::{Attachment, CniRuntime, Error, Result};
use crate::invoke::{self, Invocation};
use crate::spec::{CniResult, Command, ErrorCode, NetConfList, ValidAttachment, Version};

impl CniRuntime {
    /// Attaches a container to the network: runs every plugin in order and caches the final
    /// result. If a plugin fails, the whole chain is DELeted in reverse (the spec's advice for
    /// a failed ADD, so nothing half-configured is left) before the ADD error is returned.
    pub fn add(&self, list: &NetConfList, attachment: &Attachment) -> Result<CniResult> {
        attachment.validate(&list.name)?;
        attachment.require_netns(&list.name)?;
        let mut prev: Option<CniResult> = None;
        for index in 0..list.plugins.len() {
            match self.run(list, index, Command::Add, attachment, prev.as_ref()) {
                Ok(result) => prev = result,
                Err(err) => {
                    self.tear_down_failed_add(list, attachment, prev.as_ref());
                    return Err(err);
                }
            }
        }
        let result = prev.unwrap_or_default();
        if let Err(err) = self.write_cached(list, attachment, &result) {
            // Without its cache entry the attachment could not be checked, and DEL would run
            // without prevResult: better to fail the ADD cleanly now.
            self.tear_down_failed_add(list, attachment, Some(&result));
            return Err(err);
        }
        Ok(result)
    }

    fn tear_down_failed_add(&self, list: &NetConfList, attachment: &Attachment, partial: Option<&CniResult>) {
        for err in self.del_chain(list, attachment, partial) {
            tracing::warn!("cleaning up after a failed ADD: {err}");
        }
        if let Err(err) = self.remove_cached(&list.name, attachment) {
            tracing::warn!("cleaning up after a failed ADD: {err}");
        }
    }

    /// Detaches a container: runs every plugin in reverse order, even after one fails, with
    /// the cached result as `prevResult` when there is one. Safe to repeat: with no cache entry
    /// or a vanished netns the plugins are still asked to release what they hold. The cache
    /// entry is removed once every plugin succeeded; after a failure it stays, so the retry
    /// gets the same `prevResult`.
    pub fn del(&self, list: &NetConfList, attachment: &Attachment) -> Result<()> {
        attachment.validate(&list.name)?;
        let cached = self.read_cached(&list.name, attachment).unwrap_or_else(|err| {
            tracing::warn!("deleting without prevResult: {err}");
            None
        });
        let mut attachment = attachment.clone();
        let mut prev = None;
        if let Some(cached) = cached {
            // After a restart the caller may no longer know the pod's port mappings, but
            // portmap needs them to find its rules: use those the ADD had.
            if attachment.capability_args.is_empty() {
                attachment.capability_args = cached.attachment.capability_args;
            }
            prev = cached.result;
        }
        let errors = self.del_chain(list, &attachment, prev.as_ref());
        if !errors.is_empty() {
            return Err(combine(list, "DEL", errors));
        }
        self.remove_cached(&list.name, &attachment)
    }

    /// DEL of every plugin in reverse; the failures, in the order they happened.
    fn del_chain(&self, list: &NetConfList, attachment: &Attachment, prev: Option<&CniResult>) -> Vec<Error> {
        (0..list.plugins.len())
            .rev()
            .filter_map(|index| self.run(list, index, Command::Del, attachment, prev).err())
            // Code 3: the plugin does not know the container, so there is nothing to clean up.
            .filter(|err| err.cni_code() != Some(ErrorCode::UnknownContainer))
            .inspect(|err| tracing::warn!("{err}"))
            .collect()
    }

    /// Checks an attachment against its cached ADD result, plugin by plugin in order. A list
    /// with `disableCheck` is not checked (the spec forbids calling CHECK for it).
    pub fn check(&self, list: &NetConfList, attachment: &Attachment) -> Result<()> {
        if list.disable_check {
            return Ok(());
        }
        attachment.validate(&list.name)?;
        attachment.require_netns(&list.name)?;
        let prev = self.read_cached(&list.name, attachment)?.and_then(|c| c.result).ok_or_else(|| Error::NoCachedResult {
            network: list.name.clone(),
            container_id: attachment.container_id.clone(),
            ifname: attachment.ifname.clone(),
        })?;
        for index in 0..list.plugins.len() {
            self.run(list, index, Command::Check, attachment, Some(&prev))?;
        }
        Ok(())
    }

    /// Whether the network can take ADDs (STATUS, spec 1.1): every plugin in order, the first
    /// failure returned. Lists older than 1.1 have no STATUS and count as ready.
    pub fn status(&self, list: &NetConfList) -> Result<()> {
        if list.cni_version < Version::V1_1_0 {
            return Ok(());
        }
        for index in 0..list.plugins.len() {
            let stdin = list.plugin_stdin(index, &BTreeMap::new(), None);
            self.exec(list, index, Command::Status, None, &stdin)?;
        }
        Ok(())
    }

    /// Garbage-collects the network, given the attachments still in use. First every cached
    /// attachment of the network not in `valid` is DELeted (with the configuration it was
    /// added with), which cleans up after any plugin version; then, for 1.1 lists without
    /// `disableGC`, every plugin gets GC with `cni.dev/valid-attachments`. Best effort: all
    /// steps run, the failures are returned together.
    pub fn gc(&self, list: &NetConfList, valid: &[ValidAttachment]) -> Result<()> {
        let mut errors = Vec::new();
        for cached in self.cached_attachments(&list.name)? {
            if valid.iter().any(|v| cached.attachment.matches(v)) {
                continue;
            }
            let config = cached.config.as_ref().filter(|c| c.name == list.name).unwrap_or(list);
            tracing::info!(network = %list.name, container = %cached.attachment.container_id, "deleting stale attachment");
            if let Err(err) = self.del(config, &cached.attachment) {
                errors.push(err);
            }
        }
        if list.cni_version >= Version::V1_1_0 && !list.disable_gc {
            let valid = serde_json::to_value(valid).expect("valid attachments serialise");
            for index in 0..list.plugins.len() {
                let mut stdin = list.plugin_stdin(index, &BTreeMap::new(), None);
                stdin["cni.dev/valid-attachments"] = valid.clone();
                if let Err(err) = self.exec(list, index, Command::Gc, None, &stdin) {
                    errors.push(err);
                }
            }
        }
        if errors.is_empty() { Ok(()) } else { Err(combine(list, "GC", errors)) }
    }

    /// Runs plugin `index` for an attachment, with its stdin derived from the list.
    fn run(
        &self,
        list: &NetConfList,
        index: usize,
        command: Command,
        attachment: &Attachment,
        prev: Option<&CniResult>,
    ) -> Result<Option<CniResult>> {
        let stdin = list.plugin_stdin(index, &attachment.capability_args, prev);
        self.exec(list, index, command, Some(attachment), &stdin)
    }

    /// Runs plugin `index` with `stdin`; for ADD, reads its result.
    fn exec(
        &self,
        list: &NetConfList,
        index: usize,
        command: Command,
        attachment: Option<&Attachment>,
        stdin: &serde_json::Value,
    ) -> Result<Option<CniResult>> {
        let plugin = list.plugins[index]["type"].as_str().expect("plugin types are checked in parse");
        let fail = |source| Error::Plugin { network: list.name.clone(), plugin: plugin.to_string(), command: command.as_str(), source };
        let inv = Invocation {
            command,
            container_id: attachment.map_or("", |a| a.container_id.as_str()),
            netns: attachment.and_then(Attachment::netns),
            ifname: attachment.map_or("", |a| a.ifname.as_str()),
            args: attachment.map_or(&[], |a| a.args.as_slice()),
            path: &self.plugin_dirs,
        };
        let binary = invoke::find_plugin(plugin, &self.plugin_dirs).map_err(fail)?;
        let out = invoke::exec(&binary, &inv, stdin.to_string().as_bytes()).map_err(fail)?;
        if command != Command::Add {
            return Ok(None);
        }
        let bad = |source| Error::BadResult { network: list.name.clone(), plugin: plugin.to_string(), source };
        let value: serde_json::Value =
            serde_json::from_slice(&out).map_err(|e| bad(crate::spec::Error::decode(format!("result is not JSON: {e}"))))?;
        Ok(Some(CniResult::from_json(&value).map_err(bad)?.1))
    }
}

/// One failure as itself, several as one error listing them.
fn combine(list: &NetConfList, command: &'static str, mut errors: Vec<Error>) -> Error {
    if errors.len() == 1 {
        errors.remove(0)
    } else {
        Error::Several { network: list.name.clone(), command, errors }
    }
}

// Config versions for the admin API: a version is the tenant's exported document (secrets as
// references); a rollback applies a stored document with the import path, behind the store's
// publish fence so every replica loads the whole change at once.

use std::path::PathBuf;

use keygate_admin::{BoxFuture, ConfigVersions, RollbackError, RollbackOutcome};
use keygate_store::{ConfigVersion, Store};

use crate::config_io;

#[derive(Debug)]
pub struct Versions {
    /// For `secret = { file = … }` references, which stored versions never contain.
    pub base_dir: PathBuf,
    /// The operator's policy for tenant routes: a rollback is checked like an admin API write.
    pub policy: crate::tenant_objects::Policy,
}

impl ConfigVersions for Versions {
    fn record<'a>(
        &'a self,
        store: &'a Store,
        tenant: &'a str,
        comment: &'a str,
    ) -> BoxFuture<'a, Result<Option<ConfigVersion>, String>> {
        Box::pin(async move {
            let doc = config_io::tenant_document(store, tenant).await.map_err(|e| format!("{e:#}"))?;
            store.add_config_version(tenant, comment, &doc).await.map_err(|e| e.to_string())
        })
    }

    fn rollback<'a>(
        &'a self,
        store: &'a Store,
        tenant: &'a str,
        document: &'a str,
        comment: &'a str,
        dry_run: bool,
    ) -> BoxFuture<'a, Result<RollbackOutcome, RollbackError>> {
        Box::pin(async move {
            let invalid = |e: anyhow::Error| RollbackError::Invalid(format!("{e:#}"));
            let doc = config_io::parse_document(document).map_err(invalid)?;
            // Validation and planning write nothing; a document that cannot be applied (e.g. it
            // names a key whose secret was deleted since) stops here.
            let prepared = config_io::prepare(store, doc, &self.base_dir, true, Some(&self.policy))
                .await
                .map_err(invalid)?;
            let mut out = RollbackOutcome {
                plan: prepared.lines.clone(),
                summary: prepared.summary.clone(),
                warnings: prepared.warnings.clone(),
                version: None,
            };
            if dry_run {
                return Ok(out);
            }
            if !prepared.is_noop() {
                if !store
                    .begin_publish(config_io::PUBLISH_FENCE_SECS)
                    .await
                    .map_err(|e| RollbackError::Failed(e.to_string()))?
                {
                    return Err(RollbackError::Busy);
                }
                let applied = config_io::apply_prepared(store, prepared).await;
                // Lowered whatever happened: replicas then load what is in the store.
                let ended = store.end_publish().await;
                applied.map_err(|e| RollbackError::Failed(format!("{e:#}")))?;
                ended.map_err(|e| RollbackError::Failed(e.to_string()))?;
            }
            out.version = self.record(store, tenant, comment).await.map_err(RollbackError::Failed)?;
            Ok(out)
        })
    }
}

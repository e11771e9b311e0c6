//! The SSO providers of this server as the host's SSO endpoints see them:
//! the `sso-provider` plugins (`plugins::sso`), and which identity provider
//! each stands for, asked once every plugin has answered and kept from then
//! on (a plugin pinned to an instance that is not up yet answers later).
//!
//! May call: `plugins::sso`.

use tokio::sync::RwLock;

use crate::plugins::sso::{SsoProvider, SsoProviders};

#[derive(Debug, Default)]
pub struct SsoLogins {
    plugins: SsoProviders,
    known: RwLock<Option<Vec<SsoProvider>>>,
}

impl SsoLogins {
    pub fn new(plugins: SsoProviders) -> Self {
        Self { plugins, known: RwLock::new(None) }
    }

    /// Whether any SSO plugin is configured.
    pub fn enabled(&self) -> bool {
        !self.plugins.is_empty()
    }

    /// The identity providers, in configuration order (a plugin that fails
    /// to say which it is, is left out until it does).
    pub async fn providers(&self) -> Vec<SsoProvider> {
        if let Some(known) = self.known.read().await.as_ref() {
            return known.clone();
        }
        let providers = self.plugins.identity_providers().await;
        if providers.len() == self.plugins.len() {
            *self.known.write().await = Some(providers.clone());
        }
        providers
    }

    /// The provider with `id`.
    pub async fn provider(&self, id: &str) -> Option<SsoProvider> {
        self.providers().await.into_iter().find(|provider| provider.info.id == id)
    }
}

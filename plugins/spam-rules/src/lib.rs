//! The reference spam-checking plugin. So far it only describes itself; its
//! rules (message patterns, blocked users and servers, invite and room
//! policies, media limits) arrive with the spam-checker role.

use weft_plugin_sdk::{Plugin, PluginInfo};

struct SpamRules;

impl Plugin for SpamRules {
    fn describe() -> PluginInfo {
        PluginInfo::new("spam-rules", env!("CARGO_PKG_VERSION"))
    }
}

weft_plugin_sdk::export_plugin!(SpamRules);

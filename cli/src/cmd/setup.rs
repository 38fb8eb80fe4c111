//! Getting started and the shell: `troc init`, `troc id`, `troc completions`, `troc man`.
//!
//! `troc init` never touches an existing identity (exit 5), and never replaces an existing
//! troc.toml: it writes one only when there is none.

use anyhow::Context;
use serde_json::json;
use troc_node::keystore::{self, KeystoreError};

use super::Ctx;
use crate::args::{self, CompletionsArgs, InitArgs, ManArgs};
use crate::config;

/// The identity as JSON: PeerId, short form, public key.
pub fn identity_json(id: &troc_protocol::Identity) -> serde_json::Value {
    json!({
        "peer_id": id.peer_id().to_base58(),
        "short": id.public().short(),
        "public_key": hex::encode(id.public().as_bytes()),
    })
}

pub fn init(ctx: &Ctx, args: &InitArgs) -> anyhow::Result<()> {
    let home = &ctx.home;
    let key = keystore::key_path(home);
    if key.exists() {
        return Err(KeystoreError::AlreadyExists { path: key }).context("could not create the identity");
    }
    let config_path = config::config_path(home);
    let fields_given = args.name.is_some() || args.community.is_some() || args.location.is_some();
    if config_path.exists() && fields_given {
        return Err(crate::exit::CliError::ConfigExists { path: config_path }.into());
    }
    let id = keystore::create(home).context("could not create the identity")?;
    let wrote_config = if config_path.exists() {
        false
    } else {
        let text = config::render(args.name.as_deref(), args.community.as_deref(), args.location.as_deref());
        config::create(home, &text)?;
        true
    };
    let settings = config::load(home)?;
    if ctx.json {
        ctx.print_json(&json!({
            "home": home,
            "identity": identity_json(&id),
            "config": config_path,
            "profile": {
                "name": settings.name,
                "community": settings.community,
                "location": settings.location,
            },
        }));
    } else {
        outln!("Created identity {} ({}) in {}", id.peer_id(), id.public().short(), home.display());
        if wrote_config {
            let mut set = Vec::new();
            if let Some(n) = &settings.name {
                set.push(format!("name {n}"));
            }
            if let Some(c) = &settings.community {
                set.push(format!("community {c}"));
            }
            if let Some(l) = &settings.location {
                set.push(format!("location {l}"));
            }
            let what = if set.is_empty() { String::new() } else { format!(" ({})", set.join(", ")) };
            outln!("Wrote {}{what}", config_path.display());
        } else {
            outln!("Kept the existing {}", config_path.display());
        }
        outln!("Next: `troc up` runs your node.");
    }
    Ok(())
}

pub fn id(ctx: &Ctx) -> anyhow::Result<()> {
    let id = keystore::load(&ctx.home).context("could not load the identity")?;
    if ctx.json {
        ctx.print_json(&identity_json(&id));
    } else {
        outln!("peer id:    {}", id.peer_id());
        outln!("short:      {}", id.public().short());
        outln!("public key: {}", hex::encode(id.public().as_bytes()));
    }
    Ok(())
}

pub fn completions(args: &CompletionsArgs) -> anyhow::Result<()> {
    let mut cmd = args::command();
    clap_complete::generate(args.shell, &mut cmd, "troc", &mut std::io::stdout());
    Ok(())
}

pub fn man(args: &ManArgs) -> anyhow::Result<()> {
    let cmd = args::command();
    match &args.dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("could not create {}", dir.display()))?;
            clap_mangen::generate_to(cmd, dir)
                .with_context(|| format!("could not write the man pages to {}", dir.display()))?;
        }
        None => {
            clap_mangen::Man::new(cmd).render(&mut std::io::stdout()).context("could not print the man page")?;
        }
    }
    Ok(())
}

//! Each trigger's settings, checked as Spin's HTTP and Redis triggers
//! check theirs at start.

use anyhow::{anyhow, bail, Context, Result};
use std::collections::BTreeMap;

use super::ids;
use super::schema::{
    ComponentDecl, HttpSettings, HttpTrigger, PrivateRoute, RawHttpTrigger, RawRedisTrigger,
    RawRoute, RedisSettings, RedisTrigger,
};
use super::template::Template;
use crate::routes::Route;

pub(super) fn check_http_settings(settings: Option<&toml::Table>) -> Result<()> {
    let Some(table) = settings else {
        return Ok(());
    };
    let s: HttpSettings = table
        .clone()
        .try_into()
        .map_err(|e| anyhow!("invalid metadata value for \"http\": {e}"))?;
    match s.base.as_deref() {
        None | Some("/") => Ok(()),
        Some(_) => bail!(
            "This application is using the deprecated trigger 'base' field. The base must be \
             prepended to each [[trigger.http]]'s 'route'."
        ),
    }
}

fn trigger_component(
    value: Option<&toml::Value>,
    components: &BTreeMap<String, ComponentDecl>,
) -> Result<String> {
    let Some(value) = value else {
        bail!("missing field `component`");
    };
    let Some(id) = value.as_str() else {
        bail!("inline components (`component = {{ ... }}`) are a Spin feature aies-host does not provide: name a [component.<id>]");
    };
    ids::kebab(id).map_err(|e| anyhow!("component id {id:?}: {e}"))?;
    if !components.contains_key(id) {
        bail!("no such component {id:?}");
    }
    Ok(id.to_string())
}

pub(super) fn http_trigger(
    table: &toml::Table,
    components: &BTreeMap<String, ComponentDecl>,
) -> Result<HttpTrigger> {
    let t: RawHttpTrigger = table
        .clone()
        .try_into()
        .map_err(|e| anyhow!("[[trigger.http]]: {e}"))?;
    let name = if t.id.is_empty() {
        t.component
            .as_ref()
            .and_then(|c| c.as_str())
            .unwrap_or("?")
            .to_string()
    } else {
        t.id.clone()
    };
    let context = || format!("[[trigger.http]] of `{name}`");
    if !t.components.is_empty() || !t.dependencies.is_empty() {
        bail!("{}: trigger `components` and `dependencies` (middleware) are a Spin feature aies-host does not provide", context());
    }
    match (&t.component, &t.static_response) {
        (Some(_), Some(_)) => {
            bail!("Triggers must specify either component or static_response - {name} has both")
        }
        (None, None) => {
            bail!("Triggers must specify either component or static_response - {name} has neither")
        }
        (None, Some(_)) => bail!(
            "{}: `static_response` is a Spin feature aies-host does not provide",
            context()
        ),
        (Some(_), None) => {}
    }
    if let Some(executor) = &t.executor {
        if executor.get("type").and_then(|v| v.as_str()) != Some("spin") {
            bail!(
                "{}: only the `spin` executor runs here (WAGI is not provided)",
                context()
            );
        }
    }
    let component = trigger_component(t.component.as_ref(), components).with_context(context)?;
    let route = match t.route {
        None => bail!("{}: missing field `route`", context()),
        Some(RawRoute::Private(PrivateRoute { private: true })) => None,
        Some(RawRoute::Private(PrivateRoute { private: false })) => bail!(
            "route must be a string pattern or '{{ private = true }}': '{name}' has {{ private = false }}"
        ),
        Some(RawRoute::Path(p)) => {
            let route = Route::parse(&p).map_err(|e| {
                anyhow!("Error parsing route {p} associated with component {component}: {e}")
            })?;
            Some(route.to_string())
        }
    };
    Ok(HttpTrigger { component, route })
}

pub(super) fn redis_default_address(settings: Option<&toml::Table>) -> Result<Option<String>> {
    let Some(table) = settings else {
        return Ok(None);
    };
    let s: RedisSettings = table
        .clone()
        .try_into()
        .map_err(|e| anyhow!("invalid metadata value for \"redis\": {e}"))?;
    Ok(Some(s.address))
}

pub(super) fn redis_trigger(
    table: &toml::Table,
    default_address: Option<&str>,
    components: &BTreeMap<String, ComponentDecl>,
) -> Result<RedisTrigger> {
    let t: RawRedisTrigger = table
        .clone()
        .try_into()
        .map_err(|e| anyhow!("[[trigger.redis]]: {e}"))?;
    let component =
        trigger_component(Some(&t.component), components).context("[[trigger.redis]]")?;
    let context = || format!("[[trigger.redis]] of `{component}`");
    if !t.components.is_empty() || !t.dependencies.is_empty() {
        bail!("{}: this trigger should not have dependencies", context());
    }
    let address = t
        .address
        .or(default_address.map(str::to_string))
        .filter(|a| !a.trim().is_empty())
        .with_context(|| {
            format!(
                "{}: no address: set `address` here or [application.trigger.redis] address",
                context()
            )
        })?;
    Template::parse(&address).with_context(context)?;
    Template::parse(&t.channel).with_context(context)?;
    Ok(RedisTrigger {
        component,
        channel: t.channel,
        address,
    })
}
